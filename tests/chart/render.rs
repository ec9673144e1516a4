//! `helm lint --strict` and `helm template`, checked on the parsed output: here lint, the CRD and
//! which objects each certificate mode renders, and the helpers every topic shares; the webhook
//! configurations, the Deployment, RBAC, the policy ConfigMap and the values schema each have a
//! file under `render/`.

use std::collections::BTreeSet;

use base64::Engine;
use serde_json::{Value, json};
use wfe_admission::config::Config;
use wfe_admission::policy::match_conditions;

use crate::helm::{Helm, Manifests, chart_dir, path_str, repo};
use crate::{Case, Ctx};

#[path = "render/deployment.rs"]
mod deployment;
#[path = "render/monitoring.rs"]
mod monitoring;
#[path = "render/policy.rs"]
mod policy;
#[path = "render/rbac.rs"]
mod rbac;
#[path = "render/values.rs"]
mod values;
#[path = "render/webhooks.rs"]
mod webhooks;

// Helpers one topic's file shares with another's.
use policy::policy_config;
use rbac::{g, grants};
use webhooks::the_webhook;

pub fn cases() -> Vec<Case> {
    macro_rules! case {
        ($module:ident :: $f:ident) => {
            Case {
                name: concat!("render::", stringify!($f)),
                run: $module::$f,
            }
        };
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
        case!(webhooks::webhooks_match_status_updates_with_the_right_settings),
        case!(webhooks::webhook_values_reach_both_configurations),
        case!(webhooks::ca_bundle_and_injection_per_mode),
        case!(webhooks::webhook_url_replaces_the_service),
        case!(webhooks::self_managed_webhooks_install_failing_open_and_disarm_on_uninstall),
        case!(webhooks::own_service_account_skips_only_the_mutating_webhook),
        case!(webhooks::validating_webhook_skips_only_undeniable_updates),
        case!(webhooks::mutating_webhook_skips_only_writes_combining_keeps),
        case!(webhooks::mutating_condition_only_where_the_api_server_accepts_it),
        case!(deployment::deployment_is_hardened_probed_and_spread),
        case!(deployment::deployment_flags_per_mode),
        case!(deployment::deployment_flags_exist_in_the_binary),
        case!(deployment::network_ports_and_tls_values_reach_the_pod),
        case!(deployment::client_auth_mounts_the_ca_and_requires_client_certificates),
        case!(deployment::service_and_pdb_select_the_pods),
        case!(rbac::rbac_is_least_privilege_per_mode),
        case!(rbac::status_write_rbac_only_for_the_status_manager),
        case!(policy::policy_configmap_is_the_webhook_default_with_the_release_identity),
        case!(policy::policy_values_reach_the_webhook_config),
        case!(policy::extra_resources_are_guarded_everywhere),
        case!(policy::an_own_policy_from_a_values_file_is_what_the_rendered_pod_serves),
        case!(policy::upgrade_lint_hook_lints_the_new_policy_against_the_installed_one),
        case!(values::schema_rejects_wrong_values_naming_them),
        case!(values::optional_servicemonitor_and_networkpolicy),
        case!(monitoring::prometheus_rule_alerts_select_what_is_exported),
        case!(monitoring::grafana_dashboard_queries_select_what_is_exported),
        case!(values::names_follow_the_release),
        case!(values::chart_readme_names_every_top_level_value),
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
            &[
                "Job/wfe-admission-disarm",
                "Role/wfe-admission",
                "RoleBinding/wfe-admission",
            ],
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
