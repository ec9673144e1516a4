//! The policy ConfigMap, read back with the webhook's own config loader.

use super::*;

pub(super) fn policy_config(m: &Manifests) -> Config {
    let cm = m
        .of_kind("ConfigMap")
        .into_iter()
        .find(|c| c["data"].get("policy.yaml").is_some())
        .expect("policy ConfigMap");
    let text = cm["data"]["policy.yaml"].as_str().expect("text");
    Config::from_yaml(text)
        .unwrap_or_else(|e| panic!("the webhook rejects the rendered policy: {e}\n{text}"))
}

pub(super) fn policy_configmap_is_the_webhook_default_with_the_release_identity(ctx: &mut Ctx) {
    for (release, ns, user) in [
        (
            RELEASE,
            NS,
            "system:serviceaccount:wfe-system:wfe-admission",
        ),
        (
            "edge",
            "tenant-a",
            "system:serviceaccount:tenant-a:edge-wfe-admission",
        ),
    ] {
        for mode in MODES {
            let m = ctx.helm().render(release, ns, &mode_values(mode));
            let config = policy_config(&m);
            let mut want = Config::default();
            want.writers
                .get_mut("webhook")
                .expect("webhook writer")
                .users = vec![user.to_string()];
            // Rendered whole, so that a map entry removed in the values stays removed.
            want.replace_maps = true;
            assert_eq!(
                config, want,
                "{release}/{ns} {mode}: rendered policy differs from the built-in one"
            );
        }
    }
    let m = ctx.helm().render(
        RELEASE,
        NS,
        &json!({"serviceAccount": {"name": "admission-sa"}}),
    );
    assert_eq!(
        policy_config(&m).writers["webhook"].users,
        vec!["system:serviceaccount:wfe-system:admission-sa".to_string()]
    );
    assert_eq!(m.one("ServiceAccount")["metadata"]["name"], "admission-sa");
}

pub(super) fn policy_values_reach_the_webhook_config(ctx: &mut Ctx) {
    let m = render(
        ctx,
        &json!({"policy": {
            "blockClearance": {"minReasonWords": 3},
            "events": {"rejectionCondition": true, "corrections": false},
            "writers": {
                "executor": {"users": ["system:serviceaccount:*:workflowexecution-executor"]},
                "webhook": {"users": ["system:serviceaccount:ops:custom-webhook"]},
                "auditor": {"groups": ["auditors"]},
            },
            "fields": {"ephemeralCredentialIDs": ["executor", "auditor"]},
            "conditions": {"removable": ["TokenTTLInsufficient"], "owners": {"AuditRecorded": ["auditor"]}},
            "phase": {"transitions": {"Pending": ["Running"]}},
            // The orchestrator's Pending → Failed is no longer in the table: its moves go too.
            "moves": {"orchestrator": [{"from": ["Running"], "to": "Failed", "fields": ["failureReason"]}]},
        }}),
    );
    let c = policy_config(&m);
    assert_eq!(c.block_clearance.min_reason_words, 3);
    assert!(c.events.rejection_condition);
    assert!(!c.events.corrections);
    assert!(c.events.denials, "unset keys keep their values");
    assert_eq!(
        c.writers["executor"].users,
        vec!["system:serviceaccount:*:workflowexecution-executor".to_string()]
    );
    assert_eq!(
        c.writers["webhook"].users,
        vec!["system:serviceaccount:ops:custom-webhook".to_string()]
    );
    assert_eq!(c.writers["auditor"].groups, vec!["auditors".to_string()]);
    assert!(
        c.writers["operator"].any_other_user,
        "maps merge with the defaults"
    );
    assert_eq!(
        c.fields["ephemeralCredentialIDs"],
        vec!["executor".to_string(), "auditor".to_string()]
    );
    assert_eq!(c.fields["phase"], vec!["controller".to_string()]);
    assert_eq!(
        c.conditions.removable,
        vec!["TokenTTLInsufficient".to_string()]
    );
    assert_eq!(
        c.conditions.owners["AuditRecorded"],
        vec!["auditor".to_string()]
    );
    assert_eq!(c.conditions.owners["Ready"], vec!["controller".to_string()]);
    assert_eq!(c.phase.transitions["Pending"], vec!["Running".to_string()]);
    assert_eq!(
        c.phase.transitions["Running"],
        vec!["Completed".to_string(), "Failed".to_string()]
    );
    // A null removes a default key: the executor folds into the controller.
    let m = render(
        ctx,
        &json!({"policy": {"writers": {"executor": null}, "fields": {"ephemeralCredentialIDs": ["controller"]}}}),
    );
    let c = policy_config(&m);
    assert!(
        !c.writers.contains_key("executor"),
        "{:?}",
        c.writers.keys()
    );
    assert_eq!(
        c.fields["ephemeralCredentialIDs"],
        vec!["controller".to_string()]
    );
}

pub(super) fn extra_resources_are_guarded_everywhere(ctx: &mut Ctx) {
    let extra = json!({"group": "batch.example.com", "version": "v1", "kind": "Run", "resource": "runs", "scope": "Namespaced"});
    let m = render(
        ctx,
        &json!({"policy": {"extraResources": [extra], "events": {"rejectionCondition": true}}}),
    );
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let rules = the_webhook(m.one(kind))["rules"]
            .as_array()
            .expect("rules")
            .clone();
        assert_eq!(rules.len(), 2, "{kind}");
        assert_eq!(
            rules[1],
            json!({"apiGroups": ["batch.example.com"], "apiVersions": ["*"], "operations": ["UPDATE"],
                   "resources": ["runs/status"], "scope": "Namespaced"})
        );
    }
    let have = grants(&m);
    for want in g(
        "cluster",
        "batch.example.com",
        "runs",
        &["get", "list", "watch"],
        "",
    )
    .into_iter()
    .chain(g(
        "cluster",
        "batch.example.com",
        "runs/status",
        &["get", "update"],
        "",
    )) {
        assert!(have.contains(&want), "missing {want:?}");
    }
    let c = policy_config(&m);
    assert_eq!(c.extra_resources.len(), 1);
    let r = &c.extra_resources[0];
    assert_eq!(
        (
            r.group.as_str(),
            r.version.as_str(),
            r.kind.as_str(),
            r.resource.as_str(),
            r.subresource.as_str()
        ),
        ("batch.example.com", "v1", "Run", "runs", "status")
    );
}

/// A policy of one's own, the supported way: a values file with a `policy:` key, as an admin
/// passes it with `-f`. The binary started with exactly the rendered Deployment's args (only
/// addresses and in-pod paths made local) and the rendered ConfigMap serves that policy.
pub(super) fn an_own_policy_from_a_values_file_is_what_the_rendered_pod_serves(ctx: &mut Ctx) {
    use crate::cluster::{Webhook, free_port, local_args};
    use std::net::SocketAddr;
    use wfe_bench::fixtures::{CONTROLLER, Size, object, status_update_review};

    let my_policy_values = "\
policy:
  phase:
    values: [Pending, Running, Paused, Completed, Failed]
    transitions:
      Pending: [Running, Failed]
      Running: [Paused, Completed, Failed]
      Paused: [Running, Failed]
";
    let own: Value = serde_saphyr::from_str(my_policy_values).expect("values file");
    let m = render(ctx, &merged(mode_values("provided"), &own));
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    let rendered = m.one("ConfigMap")["data"]["policy.yaml"]
        .as_str()
        .expect("policy.yaml");
    std::fs::write(&policy, rendered).expect("write policy");
    let certs = dir.path().join("certs");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wfe-admission"))
        .args(["certs", "--host", "127.0.0.1", "--days", "1", "--out"])
        .arg(&certs)
        .output()
        .expect("certs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = free_port();
    let probe = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let args = local_args(
        m.one("Deployment"),
        &[
            ("--listen", format!("127.0.0.1:{port}")),
            ("--probe-listen", probe.to_string()),
            ("--config", policy.display().to_string()),
            ("--tls-cert", certs.join("tls.crt").display().to_string()),
            ("--tls-key", certs.join("tls.key").display().to_string()),
        ],
    );
    // No cluster here: without credentials the webhook answers and records no Events.
    let nowhere = dir.path().join("no-kubeconfig");
    let webhook = Webhook::start(&args, &nowhere, dir.path().join("webhook.log"), probe);

    let user = json!({"username": CONTROLLER, "groups": ["system:serviceaccounts"]});
    let ask = |from: &str, to: &str| -> Value {
        let review = status_update_review(
            "own-policy",
            user.clone(),
            object(Size::Small, json!({"phase": from})),
            object(Size::Small, json!({"phase": to})),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let client = reqwest::Client::builder()
                .no_proxy()
                .danger_accept_invalid_certs(true)
                .build()
                .expect("client");
            client
                .post(format!("https://127.0.0.1:{port}/validate"))
                .json(&review)
                .send()
                .await
                .expect("POST /validate")
                .json::<Value>()
                .await
                .expect("review")
        })["response"]
            .clone()
    };
    let paused = ask("Running", "Paused");
    assert_eq!(paused["allowed"], true, "{paused}\n{}", webhook.log_text());
    let denied = ask("Paused", "Completed");
    assert_eq!(denied["allowed"], false, "{denied}");
    let message = denied["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("illegal phase transition Paused → Completed")
            && message.contains("Running")
            && message.contains("Failed"),
        "{message}"
    );
}

/// `upgradeLint`: a pre-upgrade Job lints the policy the upgrade renders (a hook ConfigMap)
/// against the installed one (the live policy ConfigMap) and the stored objects.
pub(super) fn upgrade_lint_hook_lints_the_new_policy_against_the_installed_one(ctx: &mut Ctx) {
    let values = json!({"upgradeLint": {"enabled": true},
        "policy": {"conditions": {"owners": {"Paused": ["operator"]}}}});
    let m = render(ctx, &values);
    let installed = m.get("ConfigMap", "wfe-admission-policy");
    let candidate = m.get("ConfigMap", "wfe-admission-policy-next");
    assert_eq!(
        candidate["data"]["policy.yaml"], installed["data"]["policy.yaml"],
        "the hook lints another policy than the upgrade installs"
    );
    assert_eq!(
        candidate["metadata"]["annotations"]["helm.sh/hook"],
        "pre-upgrade"
    );
    let job = m.get("Job", "wfe-admission-lint");
    let annotations = &job["metadata"]["annotations"];
    assert_eq!(annotations["helm.sh/hook"], "pre-upgrade");
    // The candidate ConfigMap (weight -1) exists before the Job (weight 0) runs.
    assert!(annotations.get("helm.sh/hook-weight").is_none(), "{job}");
    assert_eq!(job["spec"]["backoffLimit"], 0);
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "wfe-admission");
    let volumes: Vec<(&str, &str)> = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(|v| {
            let name = v["name"].as_str().expect("name");
            (name, v["configMap"]["name"].as_str().expect("a ConfigMap"))
        })
        .collect();
    assert_eq!(
        volumes,
        [
            ("candidate", "wfe-admission-policy-next"),
            ("installed", "wfe-admission-policy")
        ]
    );
    let container = &pod["containers"][0];
    let args = strs(&container["args"]);
    assert_eq!(
        args,
        [
            "lint",
            "--config=/policy/candidate/policy.yaml",
            "--against=/policy/installed/policy.yaml",
            "--cluster",
            "--only-new"
        ]
    );
    // The Job's own command on the two rendered files, as the pod would see them.
    let dir = tempfile::tempdir().expect("tempdir");
    for (volume, cm) in [("candidate", candidate), ("installed", installed)] {
        let folder = dir.path().join(volume);
        std::fs::create_dir_all(&folder).expect("mkdir");
        let text = cm["data"]["policy.yaml"].as_str().expect("policy.yaml");
        std::fs::write(folder.join("policy.yaml"), text).expect("write");
    }
    let local: Vec<String> = [&args[..3], &args[4..]]
        .concat()
        .iter()
        .map(|a| a.replace("/policy/", &format!("{}/", dir.path().display())))
        .collect();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wfe-admission"))
        .args(&local)
        .output()
        .expect("run lint");
    assert!(out.status.success(), "{out:?}");
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_wfe-admission"))
        .args(["lint", "--help"])
        .output()
        .expect("lint --help");
    assert!(String::from_utf8_lossy(&help.stdout).contains("--cluster"));

    let m = render(ctx, &json!({}));
    assert!(
        m.of_kind("Job")
            .iter()
            .all(|j| j["metadata"]["annotations"]["helm.sh/hook"] != "pre-upgrade"),
        "a lint hook by default"
    );
    assert_eq!(m.of_kind("ConfigMap").len(), 1);
}
