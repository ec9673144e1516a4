//! `helm lint --strict` and `helm template`, checked on the parsed output: which objects each
//! certificate mode renders, the webhook configurations, the Deployment's hardening and flags,
//! least-privilege RBAC, the policy ConfigMap (parsed by the webhook's own config loader) and
//! the values schema.

use std::collections::BTreeSet;

use base64::Engine;
use serde_json::{Value, json};
use wfe_admission::config::Config;
use wfe_admission::policy::review;

use crate::helm::{Helm, Manifests, chart_dir, path_str, repo};
use crate::{Case, Ctx};

pub fn cases() -> Vec<Case> {
    macro_rules! case {
        ($f:ident) => {
            Case {
                name: concat!("render::", stringify!($f)),
                run: $f,
            }
        };
    }
    vec![
        case!(lint_strict_passes_for_defaults_and_every_mode),
        case!(lint_strict_fails_on_a_schema_violation),
        case!(crd_template_is_the_e2e_manifest_and_is_kept),
        case!(crds_install_false_renders_no_crd),
        case!(objects_rendered_per_certificate_mode),
        case!(cert_manager_issuers_and_certificates),
        case!(webhooks_match_status_updates_with_the_right_settings),
        case!(webhook_values_reach_both_configurations),
        case!(ca_bundle_and_injection_per_mode),
        case!(webhook_url_replaces_the_service),
        case!(own_service_account_skips_only_the_mutating_webhook),
        case!(validating_webhook_skips_only_undeniable_updates),
        case!(deployment_is_hardened_probed_and_spread),
        case!(deployment_flags_per_mode),
        case!(deployment_flags_exist_in_the_binary),
        case!(service_and_pdb_select_the_pods),
        case!(rbac_is_least_privilege_per_mode),
        case!(status_write_rbac_only_for_the_status_manager),
        case!(policy_configmap_is_the_webhook_default_with_the_release_identity),
        case!(policy_values_reach_the_webhook_config),
        case!(extra_resources_are_guarded_everywhere),
        case!(schema_rejects_wrong_values_naming_them),
        case!(optional_servicemonitor_and_networkpolicy),
        case!(names_follow_the_release),
    ]
}

pub const RELEASE: &str = "wfe-admission";
pub const NS: &str = "wfe-system";
pub const MODES: [&str; 3] = ["self-managed", "cert-manager", "provided"];

/// A CA certificate in PEM, as an admin would paste it into certificates.provided.caBundle.
pub fn test_ca_pem() -> String {
    let hosts = vec!["127.0.0.1".to_string()];
    wfe_admission::certgen::generate(&hosts, wfe_admission::certgen::Validity::days(1))
        .expect("certificates")
        .ca_cert
}

/// Values selecting `mode` (provided mode with a Secret name and a real CA bundle).
pub fn mode_values(mode: &str) -> Value {
    match mode {
        "provided" => json!({"certificates": {"mode": "provided", "provided": {
            "secretName": "wfe-admission-provided-tls", "caBundle": test_ca_pem()}}}),
        other => json!({"certificates": {"mode": other}}),
    }
}

/// Deep-merges `extra` into `base` (objects merge, everything else replaces).
pub fn merged(mut base: Value, extra: &Value) -> Value {
    fn merge(a: &mut Value, b: &Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
            (a, b) => *a = b.clone(),
        }
    }
    merge(&mut base, extra);
    base
}

fn render(ctx: &mut Ctx, values: &Value) -> Manifests {
    ctx.helm().render(RELEASE, NS, values)
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_else(|| panic!("not a string: {s}")))
        .collect()
}

fn container(m: &Manifests) -> &Value {
    let d = m.one("Deployment");
    let containers = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1, "one container");
    &containers[0]
}

pub fn deployment_args(m: &Manifests) -> Vec<String> {
    strs(&container(m)["args"])
        .into_iter()
        .map(String::from)
        .collect()
}

fn lint(helm: &Helm, values: &Value) -> (bool, String) {
    let file = helm.values_file(values);
    let chart = chart_dir();
    let out = helm
        .run(&[
            "lint",
            "--strict",
            path_str(&chart),
            "--namespace",
            NS,
            "--values",
            path_str(&file),
        ])
        .expect("helm lint");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn lint_strict_passes_for_defaults_and_every_mode(ctx: &mut Ctx) {
    let everything = json!({
        "serviceMonitor": {"enabled": true},
        "networkPolicy": {"enabled": true, "webhookFrom": [{"ipBlock": {"cidr": "10.0.0.1/32"}}]},
        "webhook": {"url": "https://wfe.example.com:8443", "matchConditions": [
            {"name": "labelled", "expression": "'wfe' in object.metadata.labels"}]},
        "policy": {"events": {"rejectionCondition": true},
                   "extraResources": [{"group": "example.com", "version": "v1", "kind": "Run", "resource": "runs"}]},
        "podAntiAffinity": "hard",
    });
    let mut variants = vec![("defaults".to_string(), json!({}))];
    for mode in MODES {
        variants.push((mode.to_string(), mode_values(mode)));
        variants.push((
            format!("{mode} + every option"),
            merged(mode_values(mode), &everything),
        ));
    }
    let helm = ctx.helm();
    for (name, values) in variants {
        let (ok, text) = lint(helm, &values);
        assert!(ok, "helm lint --strict ({name}) failed:\n{text}");
        assert!(
            text.contains("1 chart(s) linted, 0 chart(s) failed"),
            "({name}) {text}"
        );
        assert!(
            !text.contains("[WARNING]") && !text.contains("[ERROR]"),
            "({name}) {text}"
        );
    }
}

fn lint_strict_fails_on_a_schema_violation(ctx: &mut Ctx) {
    let (ok, text) = lint(
        ctx.helm(),
        &json!({"webhook": {"failurePolicy": "Sometimes"}}),
    );
    assert!(!ok, "lint accepted failurePolicy Sometimes:\n{text}");
    assert!(text.contains("/webhook/failurePolicy"), "{text}");
}

fn crd_template_is_the_e2e_manifest_and_is_kept(ctx: &mut Ctx) {
    let e2e_path = repo().join("tests/e2e/manifests/crd.yaml");
    let e2e_text = std::fs::read_to_string(&e2e_path).expect("e2e crd");
    let chart_text =
        std::fs::read_to_string(chart_dir().join("files/crd.yaml")).expect("chart crd");
    assert!(
        e2e_text == chart_text,
        "charts/wfe-admission/files/crd.yaml differs from tests/e2e/manifests/crd.yaml: \
         copy one onto the other (cp tests/e2e/manifests/crd.yaml charts/wfe-admission/files/crd.yaml)"
    );
    let manifest: Value = serde_saphyr::from_str(&e2e_text).expect("parse e2e crd");
    let m = render(ctx, &json!({}));
    let crd = m.get(
        "CustomResourceDefinition",
        "workflowexecutions.kubernaut.ai",
    );
    assert_eq!(
        crd["spec"], manifest["spec"],
        "spec differs from the e2e manifest"
    );
    assert_eq!(crd["apiVersion"], manifest["apiVersion"]);
    let meta = &crd["metadata"];
    assert_eq!(meta["annotations"]["helm.sh/resource-policy"], "keep");
    assert_eq!(meta["labels"]["app.kubernetes.io/managed-by"], "Helm");
    assert!(meta.get("namespace").is_none(), "a CRD is cluster scoped");
    // The CRD's own names are those the webhook guards.
    assert_eq!(crd["spec"]["group"], "kubernaut.ai");
    assert_eq!(crd["spec"]["names"]["plural"], "workflowexecutions");
    let versions = crd["spec"]["versions"].as_array().expect("versions");
    assert!(
        versions
            .iter()
            .any(|v| v["name"] == "v1alpha1" && v["subresources"]["status"] == json!({})),
        "v1alpha1 with a status subresource"
    );
    let m = render(ctx, &json!({"crds": {"keep": false}}));
    let crd = m.one("CustomResourceDefinition");
    assert!(
        crd["metadata"]["annotations"]
            .get("helm.sh/resource-policy")
            .is_none(),
        "crds.keep=false still keeps: {}",
        crd["metadata"]
    );
}

fn crds_install_false_renders_no_crd(ctx: &mut Ctx) {
    for mode in MODES {
        let m = render(
            ctx,
            &merged(mode_values(mode), &json!({"crds": {"install": false}})),
        );
        assert!(
            !m.has("CustomResourceDefinition"),
            "{mode}: crds.install=false rendered {:?}",
            m.ids()
        );
        assert!(m.has("Deployment"));
    }
}

fn objects_rendered_per_certificate_mode(ctx: &mut Ctx) {
    let common = [
        "ClusterRole/wfe-admission",
        "ClusterRoleBinding/wfe-admission",
        "ConfigMap/wfe-admission-policy",
        "CustomResourceDefinition/workflowexecutions.kubernaut.ai",
        "Deployment/wfe-admission",
        "MutatingWebhookConfiguration/wfe-admission",
        "PodDisruptionBudget/wfe-admission",
        "Service/wfe-admission",
        "ServiceAccount/wfe-admission",
        "ValidatingWebhookConfiguration/wfe-admission",
    ];
    let per_mode: [(&str, &[&str]); 3] = [
        (
            "self-managed",
            &["Role/wfe-admission", "RoleBinding/wfe-admission"],
        ),
        (
            "cert-manager",
            &[
                "Certificate/wfe-admission-ca",
                "Certificate/wfe-admission-serving",
                "Issuer/wfe-admission-ca",
                "Issuer/wfe-admission-selfsigned",
            ],
        ),
        ("provided", &[]),
    ];
    for (mode, extra) in per_mode {
        let m = render(ctx, &mode_values(mode));
        let mut want: Vec<String> = common.iter().chain(extra).map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(m.ids(), want, "objects of mode {mode}");
        for d in &m.docs {
            let kind = d["kind"].as_str().unwrap_or_default();
            let cluster_scoped = [
                "ClusterRole",
                "ClusterRoleBinding",
                "CustomResourceDefinition",
                "MutatingWebhookConfiguration",
                "ValidatingWebhookConfiguration",
            ]
            .contains(&kind);
            if cluster_scoped {
                assert!(
                    d["metadata"].get("namespace").is_none(),
                    "{kind} has a namespace"
                );
            } else {
                assert_eq!(d["metadata"]["namespace"], NS, "{kind} namespace");
            }
            let labels = &d["metadata"]["labels"];
            assert_eq!(labels["app.kubernetes.io/name"], "wfe-admission", "{kind}");
            assert_eq!(labels["app.kubernetes.io/instance"], RELEASE, "{kind}");
            assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm", "{kind}");
            assert_eq!(labels["helm.sh/chart"], "wfe-admission-0.1.0", "{kind}");
        }
        // The chart never renders a Secret: the webhook, cert-manager or the admin owns it.
        assert!(!m.has("Secret"), "{mode} renders a Secret");
    }
}

fn cert_manager_issuers_and_certificates(ctx: &mut Ctx) {
    let m = render(ctx, &mode_values("cert-manager"));
    let selfsigned = m.get("Issuer", "wfe-admission-selfsigned");
    assert_eq!(selfsigned["spec"], json!({"selfSigned": {}}));
    let ca = m.get("Certificate", "wfe-admission-ca");
    assert_eq!(ca["apiVersion"], "cert-manager.io/v1");
    assert_eq!(ca["spec"]["isCA"], true);
    assert_eq!(ca["spec"]["issuerRef"]["name"], "wfe-admission-selfsigned");
    assert_eq!(ca["spec"]["issuerRef"]["kind"], "Issuer");
    let ca_issuer = m.get("Issuer", "wfe-admission-ca");
    assert_eq!(
        ca_issuer["spec"]["ca"]["secretName"],
        ca["spec"]["secretName"]
    );
    let serving = m.get("Certificate", "wfe-admission-serving");
    assert_eq!(serving["spec"]["issuerRef"]["name"], "wfe-admission-ca");
    assert_eq!(serving["spec"]["issuerRef"]["kind"], "Issuer");
    let dns = strs(&serving["spec"]["dnsNames"]);
    for name in [
        "wfe-admission",
        "wfe-admission.wfe-system",
        "wfe-admission.wfe-system.svc",
        "wfe-admission.wfe-system.svc.cluster.local",
    ] {
        assert!(dns.contains(&name), "dnsNames {dns:?} lack {name}");
    }
    assert!(strs(&serving["spec"]["usages"]).contains(&"server auth"));
    // The Deployment mounts the Secret cert-manager writes.
    let d = m.one("Deployment");
    let volumes = d["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes");
    let certs = volumes
        .iter()
        .find(|v| v["name"] == "certs")
        .expect("certs volume");
    assert_eq!(certs["secret"]["secretName"], serving["spec"]["secretName"]);

    // An existing issuer replaces the chart's own CA chain.
    let m = render(
        ctx,
        &merged(
            mode_values("cert-manager"),
            &json!({"certificates": {"certManager": {"issuerRef": {
                "name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}}}}),
        ),
    );
    assert_eq!(
        m.of_kind("Issuer").len() + m.of_kind("Certificate").len(),
        1,
        "{:?}",
        m.ids()
    );
    let serving = m.get("Certificate", "wfe-admission-serving");
    assert_eq!(
        serving["spec"]["issuerRef"],
        json!({"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"})
    );
}

fn the_webhook(config: &Value) -> &Value {
    let hooks = config["webhooks"].as_array().expect("webhooks");
    assert_eq!(
        hooks.len(),
        1,
        "one webhook in {}",
        config["metadata"]["name"]
    );
    &hooks[0]
}

fn webhooks_match_status_updates_with_the_right_settings(ctx: &mut Ctx) {
    for mode in MODES {
        let m = render(ctx, &mode_values(mode));
        let service = m.one("Service");
        for (kind, path) in [
            ("MutatingWebhookConfiguration", "/mutate"),
            ("ValidatingWebhookConfiguration", "/validate"),
        ] {
            let w = the_webhook(m.one(kind));
            assert_eq!(w["admissionReviewVersions"], json!(["v1"]), "{mode} {kind}");
            assert_eq!(w["sideEffects"], "NoneOnDryRun", "{mode} {kind}");
            assert_eq!(w["matchPolicy"], "Equivalent", "{mode} {kind}");
            assert_eq!(w["failurePolicy"], "Fail", "{mode} {kind}");
            assert_eq!(w["timeoutSeconds"], 10, "{mode} {kind}");
            assert_eq!(
                w["rules"],
                json!([{
                    "apiGroups": ["kubernaut.ai"],
                    "apiVersions": ["*"],
                    "operations": ["UPDATE"],
                    "resources": ["workflowexecutions/status"],
                    "scope": "Namespaced",
                }]),
                "{mode} {kind}"
            );
            assert_eq!(w["namespaceSelector"], json!({}), "{mode} {kind}");
            assert_eq!(w["objectSelector"], json!({}), "{mode} {kind}");
            assert_eq!(
                w["clientConfig"]["service"],
                json!({"name": "wfe-admission", "namespace": NS, "path": path, "port": 443}),
                "{mode} {kind}"
            );
            assert!(w["clientConfig"].get("url").is_none());
            // The Service the webhook calls has that port.
            assert_eq!(service["metadata"]["name"], "wfe-admission");
            let ports = service["spec"]["ports"].as_array().expect("ports");
            assert!(
                ports
                    .iter()
                    .any(|p| p["port"] == 443 && p["targetPort"] == "https")
            );
            let reinvocation = w.get("reinvocationPolicy");
            if kind.starts_with("Mutating") {
                assert_eq!(reinvocation, Some(&json!("IfNeeded")));
            } else {
                assert_eq!(
                    reinvocation, None,
                    "validating webhooks have no reinvocation"
                );
            }
        }
    }
}

fn webhook_values_reach_both_configurations(ctx: &mut Ctx) {
    let selector = json!({"matchExpressions": [{"key": "kubernaut.ai/guarded", "operator": "NotIn", "values": ["false"]}]});
    let objects = json!({"matchLabels": {"app.kubernetes.io/part-of": "kubernaut"}});
    let m = render(
        ctx,
        &json!({"webhook": {
            "failurePolicy": "Ignore", "timeoutSeconds": 3,
            "namespaceSelector": selector, "objectSelector": objects,
            "annotations": {"example.com/owner": "platform"}}}),
    );
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let config = m.one(kind);
        let w = the_webhook(config);
        assert_eq!(w["failurePolicy"], "Ignore", "{kind}");
        assert_eq!(w["timeoutSeconds"], 3, "{kind}");
        assert_eq!(w["namespaceSelector"], selector, "{kind}");
        assert_eq!(w["objectSelector"], objects, "{kind}");
        assert_eq!(
            config["metadata"]["annotations"]["example.com/owner"],
            "platform"
        );
    }
}

fn ca_bundle_and_injection_per_mode(ctx: &mut Ctx) {
    let pem = test_ca_pem();
    let b64 = base64::engine::general_purpose::STANDARD;
    for mode in MODES {
        let values = match mode {
            "provided" => merged(
                mode_values(mode),
                &json!({"certificates": {"provided": {"caBundle": pem}}}),
            ),
            _ => mode_values(mode),
        };
        let m = render(ctx, &values);
        for kind in [
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
        ] {
            let config = m.one(kind);
            let w = the_webhook(config);
            let ca = w["clientConfig"].get("caBundle");
            let inject = config["metadata"]["annotations"].get("cert-manager.io/inject-ca-from");
            match mode {
                "provided" => {
                    let decoded = b64
                        .decode(ca.and_then(Value::as_str).expect("caBundle"))
                        .expect("caBundle is base64");
                    assert_eq!(
                        String::from_utf8(decoded).expect("utf-8").trim(),
                        pem.trim()
                    );
                    assert!(inject.is_none());
                }
                "cert-manager" => {
                    assert!(ca.is_none(), "cert-manager injects the caBundle");
                    assert_eq!(inject, Some(&json!("wfe-system/wfe-admission-serving")));
                    m.get("Certificate", "wfe-admission-serving");
                }
                _ => {
                    // self-managed: the webhook writes it; the chart must leave it out so
                    // that an upgrade does not wipe it.
                    assert!(ca.is_none(), "self-managed renders a caBundle");
                    assert!(inject.is_none());
                }
            }
        }
    }
    // A caBundle given as base64 is used as is; garbage fails with the value named.
    let encoded = b64.encode(&pem);
    let m = render(
        ctx,
        &merged(
            mode_values("provided"),
            &json!({"certificates": {"provided": {"caBundle": encoded}}}),
        ),
    );
    assert_eq!(
        the_webhook(m.one("ValidatingWebhookConfiguration"))["clientConfig"]["caBundle"],
        encoded
    );
    let err = ctx
        .helm()
        .template(
            RELEASE,
            NS,
            &merged(
                mode_values("provided"),
                &json!({"certificates": {"provided": {"caBundle": "bm90IGEgY2VydA=="}}}),
            ),
        )
        .expect_err("a caBundle that is no certificate must fail");
    assert!(err.contains("certificates.provided.caBundle"), "{err}");
}

fn webhook_url_replaces_the_service(ctx: &mut Ctx) {
    for mode in MODES {
        let m = render(
            ctx,
            &merged(
                mode_values(mode),
                &json!({"webhook": {"url": "https://127.0.0.1:9443/"}}),
            ),
        );
        for (kind, path) in [
            ("MutatingWebhookConfiguration", "/mutate"),
            ("ValidatingWebhookConfiguration", "/validate"),
        ] {
            let cc = &the_webhook(m.one(kind))["clientConfig"];
            assert_eq!(
                cc["url"],
                format!("https://127.0.0.1:9443{path}"),
                "{mode} {kind}"
            );
            assert!(cc.get("service").is_none(), "{mode} {kind}: {cc}");
            assert_eq!(
                cc.get("caBundle").is_some(),
                mode == "provided",
                "{mode} {kind}"
            );
        }
    }
}

fn own_service_account_skips_only_the_mutating_webhook(ctx: &mut Ctx) {
    let me = "system:serviceaccount:wfe-system:wfe-admission";
    let exclusion = json!({"name": "not-wfe-admission-itself",
        "expression": format!("request.userInfo.username != '{me}'")});
    let m = render(ctx, &json!({}));
    assert_eq!(
        the_webhook(m.one("MutatingWebhookConfiguration"))["matchConditions"],
        json!([exclusion])
    );
    assert_eq!(
        the_webhook(m.one("ValidatingWebhookConfiguration"))["matchConditions"],
        json!([validating_condition()]),
        "the validating webhook must see the webhook's own writes"
    );
    // The excluded account is the policy's webhook writer.
    let config = policy_config(&m);
    assert_eq!(config.writers["webhook"].users, vec![me.to_string()]);

    // An admin's conditions go to both, after the exclusion.
    let mine = json!({"name": "labelled", "expression": "'wfe' in object.metadata.labels"});
    let m = render(ctx, &json!({"webhook": {"matchConditions": [mine]}}));
    assert_eq!(
        the_webhook(m.one("MutatingWebhookConfiguration"))["matchConditions"],
        json!([exclusion, mine])
    );
    assert_eq!(
        the_webhook(m.one("ValidatingWebhookConfiguration"))["matchConditions"],
        json!([validating_condition(), mine])
    );
    let m = render(ctx, &json!({"webhook": {"excludeSelfFromMutating": false}}));
    assert!(
        the_webhook(m.one("MutatingWebhookConfiguration"))
            .get("matchConditions")
            .is_none()
    );
}

/// The validating webhook's built-in condition, as the webhook's code writes it for the
/// default policy (what the bench and the e2e harness register).
fn validating_condition() -> Value {
    json!({"name": review::VALIDATE_MATCH_CONDITION,
        "expression": review::validate_match_condition(&Config::default())})
}

fn validating_webhook_skips_only_undeniable_updates(ctx: &mut Ctx) {
    let m = render(ctx, &json!({}));
    assert_eq!(
        the_webhook(m.one("ValidatingWebhookConfiguration"))["matchConditions"],
        json!([validating_condition()]),
        "the chart must render the same condition as policy::review::validate_match_condition"
    );
    // Off: every status update reaches /validate again; the mutating webhook never had it.
    let m = render(
        ctx,
        &json!({"webhook": {"validatingMatchCondition": false}}),
    );
    assert!(
        the_webhook(m.one("ValidatingWebhookConfiguration"))
            .get("matchConditions")
            .is_none()
    );
    let mutating = the_webhook(m.one("MutatingWebhookConfiguration"));
    assert_eq!(
        mutating["matchConditions"].as_array().map(Vec::len),
        Some(1)
    );
}

fn deployment_is_hardened_probed_and_spread(ctx: &mut Ctx) {
    let chart: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(chart_dir().join("Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("parse Chart.yaml");
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["appVersion"], "0.1.0");
    for mode in MODES {
        let m = render(ctx, &mode_values(mode));
        let d = m.one("Deployment");
        assert_eq!(d["spec"]["replicas"], 2, "{mode}");
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], "wfe-admission");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let c = container(&m);
        assert_eq!(
            c["image"],
            format!(
                "ghcr.io/kubernaut/wfe-admission:{}",
                chart["appVersion"].as_str().expect("appVersion")
            )
        );
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        let sc = &c["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true, "{mode}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{mode}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{mode}");
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{mode}");
        assert!(sc["capabilities"].get("add").is_none());
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
        assert!(c["resources"]["requests"]["cpu"].is_string());
        assert!(c["resources"]["limits"]["memory"].is_string());
        let ports: Vec<(String, i64)> = c["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap_or_default().to_string(),
                    p["containerPort"].as_i64().unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(
            ports,
            vec![
                ("https".to_string(), 8443),
                ("http-probes".to_string(), 8080)
            ]
        );
        for (probe, path) in [("livenessProbe", "/livez"), ("readinessProbe", "/readyz")] {
            assert_eq!(c[probe]["httpGet"]["path"], path, "{probe}");
            assert_eq!(c[probe]["httpGet"]["port"], "http-probes", "{probe}");
            assert!(c[probe]["httpGet"].get("scheme").is_none(), "plain HTTP");
        }
        let env = c["env"].as_array().expect("env");
        for (name, field) in [
            ("POD_NAME", "metadata.name"),
            ("POD_NAMESPACE", "metadata.namespace"),
        ] {
            let e = env
                .iter()
                .find(|e| e["name"] == name)
                .unwrap_or_else(|| panic!("no env {name}"));
            assert_eq!(e["valueFrom"]["fieldRef"]["fieldPath"], field);
        }
        // The policy is a directory mount (no subPath), so ConfigMap updates reach the pod.
        let mounts = c["volumeMounts"].as_array().expect("mounts");
        let policy = mounts
            .iter()
            .find(|v| v["name"] == "policy")
            .expect("policy mount");
        assert_eq!(policy["mountPath"], "/etc/wfe-admission");
        assert!(policy.get("subPath").is_none());
        let volumes = pod["volumes"].as_array().expect("volumes");
        let cm = volumes
            .iter()
            .find(|v| v["name"] == "policy")
            .expect("policy volume");
        assert_eq!(cm["configMap"]["name"], "wfe-admission-policy");
        let certs = mounts.iter().find(|v| v["name"] == "certs");
        if mode == "self-managed" {
            assert!(certs.is_none(), "self-managed mounts no Secret");
            assert!(!volumes.iter().any(|v| v["name"] == "certs"));
        } else {
            let certs = certs.expect("certs mount");
            assert_eq!(certs["mountPath"], "/certs");
            assert!(
                certs.get("subPath").is_none(),
                "a subPath mount never sees a rotation"
            );
            let secret = volumes
                .iter()
                .find(|v| v["name"] == "certs")
                .expect("certs volume");
            let want = if mode == "provided" {
                "wfe-admission-provided-tls"
            } else {
                "wfe-admission-tls"
            };
            assert_eq!(secret["secret"]["secretName"], want);
        }
        // Soft anti-affinity over nodes by default.
        let soft = &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
            [0];
        assert_eq!(
            soft["podAffinityTerm"]["topologyKey"],
            "kubernetes.io/hostname"
        );
        assert_eq!(
            soft["podAffinityTerm"]["labelSelector"]["matchLabels"],
            d["spec"]["selector"]["matchLabels"]
        );
    }
    let m = render(
        ctx,
        &json!({"podAntiAffinity": "hard", "replicaCount": 3,
        "image": {"digest": format!("sha256:{}", "ab".repeat(32))}}),
    );
    let d = m.one("Deployment");
    assert_eq!(d["spec"]["replicas"], 3);
    let hard = &d["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        [0];
    assert_eq!(hard["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(
        container(&m)["image"],
        format!("ghcr.io/kubernaut/wfe-admission@sha256:{}", "ab".repeat(32))
    );
    let m = render(ctx, &json!({"podAntiAffinity": "none"}));
    assert!(
        m.one("Deployment")["spec"]["template"]["spec"]
            .get("affinity")
            .is_none()
    );
}

fn deployment_flags_per_mode(ctx: &mut Ctx) {
    let common = [
        "serve",
        "--listen=0.0.0.0:8443",
        "--probe-listen=0.0.0.0:8080",
        "--config=/etc/wfe-admission/policy.yaml",
        "--log-format=json",
        "--log=info",
        "--shutdown-delay=5s",
        "--shutdown-grace=20s",
    ];
    for mode in MODES {
        let m = render(ctx, &mode_values(mode));
        let args = deployment_args(&m);
        let extra: &[&str] = match mode {
            "self-managed" => &[
                "--cert-mode=self-managed",
                "--cert-secret=wfe-admission-tls",
                "--service-name=wfe-admission",
                "--webhook-configurations=wfe-admission",
                "--cert-validity=8760h",
                "--cert-renew-before=720h",
                "--cert-check-interval=1h",
            ],
            _ => &["--tls-cert=/certs/tls.crt", "--tls-key=/certs/tls.key"],
        };
        let want: Vec<String> = common.iter().chain(extra).map(|s| s.to_string()).collect();
        assert_eq!(args, want, "{mode}");
        // The file --config names is the ConfigMap's key; the configurations it names exist.
        assert!(m.one("ConfigMap")["data"].get("policy.yaml").is_some());
        if mode == "self-managed" {
            assert_eq!(
                m.one("MutatingWebhookConfiguration")["metadata"]["name"],
                "wfe-admission"
            );
            assert_eq!(
                m.one("ValidatingWebhookConfiguration")["metadata"]["name"],
                "wfe-admission"
            );
            assert_eq!(m.one("Service")["metadata"]["name"], "wfe-admission");
        }
    }
    let m = render(
        ctx,
        &json!({"log": {"level": "debug", "format": "text"},
        "shutdown": {"delay": "15s", "grace": "40s"},
        "extraArgs": ["--max-body-bytes=1048576"],
        "certificates": {"selfManaged": {"secretName": "my-webhook-pair"}}}),
    );
    let args = deployment_args(&m);
    for want in [
        "--log=debug",
        "--log-format=text",
        "--max-body-bytes=1048576",
        "--cert-secret=my-webhook-pair",
        "--shutdown-delay=15s",
        "--shutdown-grace=40s",
    ] {
        assert!(args.contains(&want.to_string()), "{want} not in {args:?}");
    }
}

/// Every flag the chart passes is one that `wfe-admission serve` knows.
fn deployment_flags_exist_in_the_binary(ctx: &mut Ctx) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wfe-admission"))
        .args(["serve", "--help"])
        .output()
        .expect("run wfe-admission serve --help");
    assert!(out.status.success(), "serve --help failed");
    let help = String::from_utf8_lossy(&out.stdout);
    let known: BTreeSet<&str> = help
        .split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '[')
        .filter(|w| w.starts_with("--"))
        .collect();
    let mut used = BTreeSet::new();
    for mode in MODES {
        for arg in deployment_args(&render(ctx, &mode_values(mode))) {
            if let Some(flag) = arg.strip_prefix("--") {
                used.insert(format!("--{}", flag.split('=').next().unwrap_or_default()));
            }
        }
    }
    assert!(used.len() >= 10, "{used:?}");
    let missing: Vec<&String> = used
        .iter()
        .filter(|f| !known.contains(f.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "serve does not know {missing:?}; it knows {known:?}"
    );
    // POD_NAMESPACE (downward API) is the env of --namespace, which the self-managed Secret uses.
    assert!(
        help.contains("POD_NAMESPACE"),
        "serve --help names no POD_NAMESPACE"
    );
}

fn service_and_pdb_select_the_pods(ctx: &mut Ctx) {
    let m = render(ctx, &json!({}));
    let d = m.one("Deployment");
    let selector = &d["spec"]["selector"]["matchLabels"];
    let pod_labels = d["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .expect("labels");
    for (k, v) in selector.as_object().expect("selector") {
        assert_eq!(pod_labels.get(k), Some(v), "pod labels lack {k}");
    }
    assert_eq!(&m.one("Service")["spec"]["selector"], selector);
    let pdb = m.one("PodDisruptionBudget");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], selector);
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert!(pdb["spec"].get("minAvailable").is_none());
    let m = render(
        ctx,
        &json!({"podDisruptionBudget": {"minAvailable": 1, "maxUnavailable": null}}),
    );
    let pdb = m.one("PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert!(pdb["spec"].get("maxUnavailable").is_none());
    let err = ctx
        .helm()
        .template(
            RELEASE,
            NS,
            &json!({"podDisruptionBudget": {"minAvailable": 1}}),
        )
        .expect_err("both minAvailable and maxUnavailable must fail");
    assert!(err.contains("podDisruptionBudget"), "{err}");
    let m = render(ctx, &json!({"podDisruptionBudget": {"enabled": false}}));
    assert!(!m.has("PodDisruptionBudget"));
}

/// (where, apiGroup, resource, verb, resourceNames) for every rule of every (Cluster)Role.
fn grants(m: &Manifests) -> BTreeSet<(String, String, String, String, String)> {
    let mut out = BTreeSet::new();
    for role in m
        .of_kind("ClusterRole")
        .into_iter()
        .chain(m.of_kind("Role"))
    {
        let scope = match role["metadata"]["namespace"].as_str() {
            Some(ns) => ns.to_string(),
            None => "cluster".into(),
        };
        for rule in role["rules"].as_array().expect("rules") {
            let names = rule
                .get("resourceNames")
                .map(|n| strs(n).join(","))
                .unwrap_or_default();
            for group in strs(&rule["apiGroups"]) {
                for resource in strs(&rule["resources"]) {
                    for verb in strs(&rule["verbs"]) {
                        out.insert((
                            scope.clone(),
                            group.to_string(),
                            resource.to_string(),
                            verb.to_string(),
                            names.clone(),
                        ));
                    }
                }
            }
        }
    }
    out
}

fn g(
    scope: &str,
    group: &str,
    resource: &str,
    verbs: &[&str],
    names: &str,
) -> Vec<(String, String, String, String, String)> {
    verbs
        .iter()
        .map(|v| {
            (
                scope.into(),
                group.into(),
                resource.into(),
                (*v).into(),
                names.into(),
            )
        })
        .collect()
}

fn base_grants() -> Vec<(String, String, String, String, String)> {
    let mut want = g(
        "cluster",
        "events.k8s.io",
        "events",
        &["create", "patch"],
        "",
    );
    want.extend(g("cluster", "", "events", &["create", "patch"], ""));
    want.extend(g(
        "cluster",
        "kubernaut.ai",
        "workflowexecutions",
        &["get", "list", "watch"],
        "",
    ));
    want
}

fn rbac_is_least_privilege_per_mode(ctx: &mut Ctx) {
    for mode in MODES {
        let m = render(ctx, &mode_values(mode));
        let mut want = base_grants();
        if mode == "self-managed" {
            want.extend(g(
                "cluster",
                "admissionregistration.k8s.io",
                "mutatingwebhookconfigurations",
                &["get", "update"],
                "wfe-admission",
            ));
            want.extend(g(
                "cluster",
                "admissionregistration.k8s.io",
                "validatingwebhookconfigurations",
                &["get", "update"],
                "wfe-admission",
            ));
            want.extend(g(
                NS,
                "",
                "secrets",
                &["get", "update"],
                "wfe-admission-tls",
            ));
            want.extend(g(NS, "", "secrets", &["create"], ""));
        }
        let want: BTreeSet<_> = want.into_iter().collect();
        assert_eq!(grants(&m), want, "RBAC of mode {mode}");
        // No wildcard anywhere.
        for role in m
            .of_kind("ClusterRole")
            .into_iter()
            .chain(m.of_kind("Role"))
        {
            assert!(
                !role["rules"].to_string().contains("\"*\""),
                "wildcard in {role}"
            );
        }
        // Bindings tie the roles to the chart's service account, and nothing else.
        let sa = json!([{"kind": "ServiceAccount", "name": "wfe-admission", "namespace": NS}]);
        let crb = m.one("ClusterRoleBinding");
        assert_eq!(crb["subjects"], sa);
        assert_eq!(
            crb["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "wfe-admission"})
        );
        if mode == "self-managed" {
            let rb = m.one("RoleBinding");
            assert_eq!(rb["subjects"], sa);
            assert_eq!(rb["roleRef"]["kind"], "Role");
            assert_eq!(rb["roleRef"]["name"], "wfe-admission");
        }
    }
    let m = render(ctx, &json!({"rbac": {"create": false}}));
    assert!(
        grants(&m).is_empty() && !m.has("ClusterRoleBinding"),
        "{:?}",
        m.ids()
    );
}

fn status_write_rbac_only_for_the_status_manager(ctx: &mut Ctx) {
    let status = g(
        "cluster",
        "kubernaut.ai",
        "workflowexecutions/status",
        &["get", "update"],
        "",
    );
    for (values, writes) in [
        (json!({}), false),
        (
            json!({"policy": {"events": {"rejectionCondition": true}}}),
            true,
        ),
        (json!({"statusManager": {"enabled": true}}), true),
        (
            json!({"policy": {"events": {"rejectionCondition": false}}, "statusManager": {"enabled": false}}),
            false,
        ),
    ] {
        for mode in MODES {
            let m = render(ctx, &merged(mode_values(mode), &values));
            let have = grants(&m);
            for s in &status {
                assert_eq!(have.contains(s), writes, "{mode} {values}: {s:?}");
            }
            assert!(
                !have.iter().any(|(_, _, r, v, _)| r == "workflowexecutions"
                    && !["get", "list", "watch"].contains(&v.as_str())),
                "the main resource is read only: {have:?}"
            );
        }
    }
}

fn policy_config(m: &Manifests) -> Config {
    let cm = m
        .of_kind("ConfigMap")
        .into_iter()
        .find(|c| c["data"].get("policy.yaml").is_some())
        .expect("policy ConfigMap");
    let text = cm["data"]["policy.yaml"].as_str().expect("text");
    Config::from_yaml(text)
        .unwrap_or_else(|e| panic!("the webhook rejects the rendered policy: {e}\n{text}"))
}

fn policy_configmap_is_the_webhook_default_with_the_release_identity(ctx: &mut Ctx) {
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

fn policy_values_reach_the_webhook_config(ctx: &mut Ctx) {
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

fn extra_resources_are_guarded_everywhere(ctx: &mut Ctx) {
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

fn schema_rejects_wrong_values_naming_them(ctx: &mut Ctx) {
    let bad: Vec<(Value, &str)> = vec![
        (
            json!({"certificates": {"mode": "vault"}}),
            "/certificates/mode",
        ),
        (
            json!({"webhook": {"failurePolicy": "Sometimes"}}),
            "/webhook/failurePolicy",
        ),
        (
            json!({"webhook": {"timeoutSeconds": 0}}),
            "/webhook/timeoutSeconds",
        ),
        (
            json!({"webhook": {"timeoutSeconds": 31}}),
            "/webhook/timeoutSeconds",
        ),
        (
            json!({"webhook": {"failurepolicy": "Fail"}}),
            "failurepolicy",
        ),
        (
            json!({"webhook": {"url": "http://127.0.0.1:8443"}}),
            "/webhook/url",
        ),
        (
            json!({"webhook": {"matchConditions": [{"name": "x"}]}}),
            "/webhook/matchConditions/0",
        ),
        (json!({"replicaCount": 0}), "/replicaCount"),
        (json!({"replicaCount": "two"}), "/replicaCount"),
        (json!({"replicas": 2}), "replicas"),
        (json!({"podAntiAffinity": "always"}), "/podAntiAffinity"),
        (
            json!({"image": {"pullPolicy": "Sometimes"}}),
            "/image/pullPolicy",
        ),
        (
            json!({"policy": {"blockClearance": {"minReasonWords": "lots"}}}),
            "/policy/blockClearance/minReasonWords",
        ),
        (
            json!({"policy": {"writers": {"ops": {"user": ["alice"]}}}}),
            "/policy/writers/ops",
        ),
        (
            json!({"policy": {"events": {"rejectionConditon": true}}}),
            "rejectionConditon",
        ),
        (
            json!({"certificates": {"mode": "provided"}}),
            "/certificates/provided/secretName",
        ),
        (json!({"crds": {"install": "yes"}}), "/crds/install"),
        (
            json!({"certificates": {"selfManaged": {"renewBefore": "30 days"}}}),
            "/certificates/selfManaged/renewBefore",
        ),
    ];
    for (values, needle) in bad {
        let err = ctx
            .helm()
            .template(RELEASE, NS, &values)
            .err()
            .unwrap_or_else(|| panic!("helm template accepted {values}"));
        assert!(
            err.contains("don't meet the specifications of the schema"),
            "{values}: not a schema error:\n{err}"
        );
        assert!(
            err.contains(needle),
            "{values}: the error does not name {needle}:\n{err}"
        );
    }
    // The same shapes with good values pass: the schema is not simply strict about everything.
    render(
        ctx,
        &json!({"replicaCount": 1, "webhook": {"timeoutSeconds": 30, "failurePolicy": "Ignore",
        "url": "https://wfe.example.com:8443/hooks", "matchConditions": [{"name": "x", "expression": "true"}]},
        "policy": {"writers": {"ops": {"users": ["alice"]}}}}),
    );
}

fn optional_servicemonitor_and_networkpolicy(ctx: &mut Ctx) {
    let m = render(ctx, &json!({}));
    assert!(
        !m.has("ServiceMonitor") && !m.has("NetworkPolicy"),
        "{:?}",
        m.ids()
    );
    let peer = json!({"ipBlock": {"cidr": "10.0.0.10/32"}});
    let m = render(
        ctx,
        &json!({"serviceMonitor": {"enabled": true, "labels": {"release": "prometheus"}, "interval": "15s"},
                "networkPolicy": {"enabled": true, "webhookFrom": [peer],
                    "metricsNamespaceSelector": {"matchLabels": {"team": "observability"}}}}),
    );
    let sm = m.one("ServiceMonitor");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
    let endpoint = &sm["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], "http-metrics");
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["interval"], "15s");
    let service = m.one("Service");
    let ports = service["spec"]["ports"].as_array().expect("ports");
    assert!(
        ports
            .iter()
            .any(|p| p["name"] == "http-metrics" && p["port"] == 8080)
    );
    assert_eq!(
        sm["spec"]["selector"]["matchLabels"],
        service["spec"]["selector"]
    );
    let np = m.one("NetworkPolicy");
    assert_eq!(
        np["spec"]["podSelector"]["matchLabels"],
        m.one("Deployment")["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress"]));
    let ingress = np["spec"]["ingress"].as_array().expect("ingress");
    assert_eq!(ingress.len(), 2);
    assert_eq!(
        ingress[0]["ports"],
        json!([{"port": "https", "protocol": "TCP"}])
    );
    assert_eq!(ingress[0]["from"], json!([peer]));
    assert_eq!(
        ingress[1]["ports"],
        json!([{"port": "http-probes", "protocol": "TCP"}])
    );
    assert_eq!(
        ingress[1]["from"],
        json!([{"namespaceSelector": {"matchLabels": {"team": "observability"}}}])
    );
    // Without peers, 8443 is open to any source (the API server's address is cluster specific).
    let m = render(ctx, &json!({"networkPolicy": {"enabled": true}}));
    let ingress = &m.one("NetworkPolicy")["spec"]["ingress"];
    assert!(ingress[0].get("from").is_none(), "{ingress}");
    assert_eq!(
        ingress[1]["from"],
        json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}])
    );
    // `{}` opens 8080 to every namespace.
    let m = render(
        ctx,
        &json!({"networkPolicy": {"enabled": true, "metricsNamespaceSelector": {}}}),
    );
    assert_eq!(
        m.one("NetworkPolicy")["spec"]["ingress"][1]["from"],
        json!([{"namespaceSelector": {}}])
    );
}

fn names_follow_the_release(ctx: &mut Ctx) {
    let m = ctx.helm().render("edge", "tenant-a", &json!({}));
    for id in [
        "Deployment/edge-wfe-admission",
        "MutatingWebhookConfiguration/edge-wfe-admission",
        "ValidatingWebhookConfiguration/edge-wfe-admission",
        "ClusterRole/edge-wfe-admission",
        "ConfigMap/edge-wfe-admission-policy",
        "ServiceAccount/edge-wfe-admission",
    ] {
        assert!(
            m.ids().contains(&id.to_string()),
            "{id} not in {:?}",
            m.ids()
        );
    }
    let w = the_webhook(m.one("MutatingWebhookConfiguration"));
    assert_eq!(w["clientConfig"]["service"]["name"], "edge-wfe-admission");
    assert_eq!(w["clientConfig"]["service"]["namespace"], "tenant-a");
    assert_eq!(
        w["matchConditions"][0]["expression"],
        "request.userInfo.username != 'system:serviceaccount:tenant-a:edge-wfe-admission'"
    );
    let args = deployment_args(&m);
    assert!(args.contains(&"--webhook-configurations=edge-wfe-admission".to_string()));
    assert!(args.contains(&"--service-name=edge-wfe-admission".to_string()));
    assert!(args.contains(&"--cert-secret=edge-wfe-admission-tls".to_string()));
    let m = ctx
        .helm()
        .render("edge", "tenant-a", &json!({"fullnameOverride": "wfe"}));
    assert!(
        m.ids().contains(&"Deployment/wfe".to_string()),
        "{:?}",
        m.ids()
    );
}
