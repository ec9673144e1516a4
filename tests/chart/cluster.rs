//! `helm install` of every certificate mode into a real kube-apiserver (tests/e2e/control-plane),
//! the objects the API server accepted, least privilege checked with SubjectAccessReviews, and
//! the webhook binary run locally with the chart's flags, policy and RBAC (it impersonates the
//! chart's service account) against the installed webhook configurations.
//!
//! No kubelet runs there, so pods never start: the webhook runs as a child process of this test
//! and the API server reaches it through `webhook.url`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use base64::Engine;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, ObjectMeta, PostParams};
use kube::core::GroupVersionKind;
use serde_json::{Value, json};

use crate::helm::{Helm, Manifests, chart_dir, path_str, repo};
use crate::render::{merged, mode_values};
use crate::{Case, Ctx};
use wfe_admission::config::Config;
use wfe_admission::policy::match_conditions::{
    MUTATE_MATCH_CONDITION, VALIDATE_MATCH_CONDITION, mutate_match_condition,
    validate_match_condition,
};
use wfe_bench::control_plane::{self, ControlPlane};

pub fn cases() -> Vec<Case> {
    macro_rules! case {
        ($f:ident) => {
            Case {
                name: concat!("cluster::", stringify!($f)),
                run: $f,
            }
        };
    }
    // In this order: each install is uninstalled before the next (they share the release name,
    // so the kept CRD is adopted by the next install).
    vec![
        case!(install_with_a_schema_violation_fails_and_creates_nothing),
        case!(install_cert_manager_mode),
        case!(install_self_managed_mode_and_run_it_with_the_chart_rbac),
        case!(install_provided_mode_and_guard_status_end_to_end),
        case!(install_with_defaults_beside_a_crd_kubernaut_installed),
        case!(upgrade_lint_stops_an_upgrade_that_strands_a_stored_object),
        Case {
            name: "cluster::install_upgrade_and_uninstall_refuse_no_write",
            run: window::install_upgrade_and_uninstall_refuse_no_write,
        },
        // Control planes of their own, of older releases.
        case!(install_before_kubernetes_1_33_leaves_the_mutating_condition_out),
    ]
}

/// Kubernetes releases that refuse the mutating condition's two-variable comprehensions in a new
/// configuration (an API server compiles new expressions in the CEL of one minor below its own,
/// and they came with 1.32's): the chart's floor, and the newest such release.
const BEFORE_TWO_VARIABLE_COMPREHENSIONS: [&str; 2] = ["v1.30.14", "v1.32.13"];

/// A real API server of each refuses the mutating condition, and the chart, which once failed
/// the whole install on it, installs there without it (every write then reaches /mutate) and
/// keeps the validating one.
fn install_before_kubernetes_1_33_leaves_the_mutating_condition_out(ctx: &mut Ctx) {
    for version in BEFORE_TWO_VARIABLE_COMPREHENSIONS {
        let cluster = Cluster::start_release(version).expect("a control plane");
        install_without_the_mutating_condition(ctx.helm(), &cluster, version);
    }
}

fn install_without_the_mutating_condition(helm: &Helm, cluster: &Cluster, version: &str) {
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    let configs: Api<MutatingWebhookConfiguration> = Api::all(cluster.admin.clone());
    let condition = mutate_match_condition(&Config::default()).expect("a controller");
    let probe: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": "wfe-condition-probe"},
        "webhooks": [{
            "name": "probe.wfe-admission.kubernaut.ai",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Ignore",
            "clientConfig": {"url": "https://127.0.0.1:9/mutate"},
            "rules": [{"apiGroups": ["kubernaut.ai"], "apiVersions": ["*"],
                "operations": ["UPDATE"], "resources": ["workflowexecutions/status"]}],
            "matchConditions": [{"name": MUTATE_MATCH_CONDITION, "expression": condition}],
        }],
    }))
    .expect("a configuration");
    let refused = match cluster.block_on(configs.create(&PostParams::default(), &probe)) {
        Ok(_) => panic!("Kubernetes {version} accepted the mutating condition"),
        Err(e) => format!("{e:?}"),
    };
    assert!(
        refused.contains("undeclared reference to 'all'"),
        "{version}: {refused}"
    );

    let release = cluster.install(helm, &json!({}));
    let manifest = release.manifest();
    let names = |kind: &str| -> Vec<String> {
        stored_match_conditions(cluster, &manifest, kind)
            .iter()
            .filter_map(|c| c["name"].as_str().map(String::from))
            .collect()
    };
    let mutating = names("MutatingWebhookConfiguration");
    assert!(
        !mutating.iter().any(|n| n == MUTATE_MATCH_CONDITION),
        "{version}: {mutating:?}"
    );
    assert_eq!(
        names("ValidatingWebhookConfiguration"),
        [VALIDATE_MATCH_CONDITION],
        "{version}"
    );
}

const RELEASE: &str = "wfe-admission";
/// A namespace that bootstrap.sh grants nothing to, so the SubjectAccessReviews of the release's
/// service account see the chart's RBAC alone.
const NS: &str = "wfe-chart";
const SA_USER: &str = "system:serviceaccount:wfe-chart:wfe-admission";
const SA_GROUPS: [&str; 3] = [
    "system:serviceaccounts",
    "system:serviceaccounts:wfe-chart",
    "system:authenticated",
];
const WFE_NS: &str = "default";

#[path = "cluster/hooks.rs"]
mod hooks;
#[path = "cluster/local.rs"]
mod local;
#[path = "cluster/plane.rs"]
mod plane;
#[path = "cluster/window.rs"]
mod window;

pub(crate) use local::{Webhook, free_port, local_args};
use local::{ca_bundles, poll, start_release_pod};
pub use plane::Cluster;

/// An installed release; `helm uninstall` on drop unless the case already did.
struct Release<'c> {
    cluster: &'c Cluster,
    helm_bin: &'c Helm,
    installed: bool,
    notes: String,
}

impl Release<'_> {
    /// What helm sent to the API server.
    fn manifest(&self) -> Manifests {
        let out = self.cluster.helm(
            self.helm_bin,
            &["get", "manifest", RELEASE, "--namespace", NS],
        );
        assert!(out.status.success(), "helm get manifest failed");
        Manifests::parse(&String::from_utf8_lossy(&out.stdout)).expect("parse manifest")
    }

    /// `helm upgrade --reuse-values` of the chart with `extra` arguments.
    fn upgrade_args<'a>(chart: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec![
            "upgrade",
            RELEASE,
            path_str(chart),
            "--namespace",
            NS,
            "--reuse-values",
        ];
        all.extend_from_slice(extra);
        all
    }

    fn upgrade(&self, args: &[&str]) {
        let chart = chart_dir();
        let out = self
            .cluster
            .helm(self.helm_bin, &Self::upgrade_args(&chart, args));
        assert!(
            out.status.success(),
            "helm upgrade failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `helm upgrade --reuse-values -f VALUES`, standing in for its hook Jobs.
    fn upgrade_running_hooks(&self, values: &Value) -> (std::process::Output, Vec<hooks::RanJob>) {
        let file = self.helm_bin.values_file(values);
        let chart = chart_dir();
        let extra = ["-f", path_str(&file), "--timeout", "60s"];
        hooks::helm_running_hooks(
            self.cluster,
            self.helm_bin,
            &Self::upgrade_args(&chart, &extra),
        )
    }

    fn uninstall(&mut self) {
        self.installed = false;
        let out = hooks::uninstall_running_hooks(self.cluster, self.helm_bin);
        assert!(
            out.status.success(),
            "helm uninstall failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        if self.installed {
            self.installed = false;
            let _ = hooks::uninstall_running_hooks(self.cluster, self.helm_bin);
        }
    }
}

/// The match conditions the API server stored for the release's webhook configuration `kind`.
fn stored_match_conditions(cluster: &Cluster, manifest: &Manifests, kind: &str) -> Vec<Value> {
    let stored = cluster.stored(manifest.one(kind)).expect("stored");
    stored["webhooks"][0]["matchConditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Every key and value of `want` is in `have` (lists element by element): the API server
/// stored what the chart rendered and dropped nothing. Returns the first difference.
fn subset(have: &Value, want: &Value, at: &str) -> Result<(), String> {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => {
            for (k, v) in w {
                let path = format!("{at}.{k}");
                match h.get(k) {
                    Some(hv) => subset(hv, v, &path)?,
                    // The API server omits zero values (`omitempty`): 0, false, "", {}, [].
                    None if is_zero(v) => {}
                    None => return Err(format!("{path} is missing (want {v})")),
                }
            }
            Ok(())
        }
        (Value::Array(h), Value::Array(w)) => {
            if h.len() != w.len() {
                return Err(format!(
                    "{at}: {} items stored, {} rendered",
                    h.len(),
                    w.len()
                ));
            }
            for (i, (hv, wv)) in h.iter().zip(w).enumerate() {
                subset(hv, wv, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        (h, w) if h == w => Ok(()),
        (h, w) => Err(format!("{at}: stored {h}, rendered {w}")),
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Every object of the release is stored as rendered.
fn assert_all_stored(cluster: &Cluster, release: &Release) -> Manifests {
    let manifest = release.manifest();
    assert!(manifest.docs.len() >= 10, "{:?}", manifest.ids());
    for doc in &manifest.docs {
        let id = format!(
            "{}/{}",
            doc["kind"].as_str().unwrap_or_default(),
            doc["metadata"]["name"]
        );
        let stored = cluster
            .stored(doc)
            .unwrap_or_else(|| panic!("{id} was not stored"));
        if let Err(diff) = subset(&stored, doc, "") {
            panic!("{id} differs from what the chart rendered: {diff}");
        }
    }
    manifest
}

/// The base grants every mode has, and what no mode may have.
fn assert_base_rbac(cluster: &Cluster) {
    let can = |verb, group, resource, ns, name| cluster.sa_can(verb, group, resource, ns, name);
    for (group, verb) in [
        ("events.k8s.io", "create"),
        ("events.k8s.io", "patch"),
        ("", "create"),
        ("", "patch"),
    ] {
        assert!(
            can(verb, group, "events", Some(WFE_NS), None),
            "{verb} {group} events"
        );
    }
    for verb in ["get", "list", "watch"] {
        assert!(
            can(
                verb,
                "kubernaut.ai",
                "workflowexecutions",
                Some(WFE_NS),
                None
            ),
            "{verb} wfe"
        );
    }
    for (verb, group, resource) in [
        ("delete", "events.k8s.io", "events"),
        ("update", "kubernaut.ai", "workflowexecutions"),
        ("delete", "kubernaut.ai", "workflowexecutions"),
        ("create", "kubernaut.ai", "workflowexecutions"),
        ("get", "", "configmaps"),
        ("list", "", "secrets"),
        ("get", "", "pods"),
    ] {
        assert!(
            !can(verb, group, resource, Some(WFE_NS), None),
            "{verb} {group}/{resource} must be denied"
        );
        assert!(
            !can(verb, group, resource, Some(NS), None),
            "{verb} {group}/{resource} in {NS} must be denied"
        );
    }
    assert!(!can(
        "list",
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        None,
        None
    ));
    assert!(!can(
        "delete",
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
        None,
        Some(RELEASE)
    ));
}

fn install_with_a_schema_violation_fails_and_creates_nothing(ctx: &mut Ctx) {
    let (helm, cluster) = ctx.cluster();
    let out = cluster.try_install(helm, &json!({"webhook": {"timeoutSeconds": 45}}));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "helm install accepted timeoutSeconds 45"
    );
    assert!(stderr.contains("/webhook/timeoutSeconds"), "{stderr}");
    let list = cluster.helm(helm, &["list", "--all", "--namespace", NS, "--short"]);
    assert!(list.status.success());
    assert_eq!(
        String::from_utf8_lossy(&list.stdout).trim(),
        "",
        "a release was recorded"
    );
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": RELEASE, "namespace": NS}});
    assert!(
        cluster.stored(&deployment).is_none(),
        "a Deployment was created"
    );
}

fn install_cert_manager_mode(ctx: &mut Ctx) {
    let (helm, cluster) = ctx.cluster();
    let values = merged(
        mode_values("cert-manager"),
        &json!({"serviceMonitor": {"enabled": true}, "prometheusRule": {"enabled": true},
                "grafanaDashboard": {"enabled": true}, "networkPolicy": {"enabled": true}}),
    );
    let mut release = cluster.install(helm, &values);
    // NOTES.txt tells the admin how to check the wiring and where rejections and corrections
    // show up.
    for needle in [
        "wfe-admission verify",
        "kubectl get events -A --field-selector reason=IllegalPhaseTransition",
        "kubectl get events -A --field-selector reason=StatusFieldRestored",
        "Callers: not authenticated",
        "wfe_admission_client_auth_required",
    ] {
        assert!(
            release.notes.contains(needle),
            "NOTES lack {needle}:\n{}",
            release.notes
        );
    }
    let manifest = assert_all_stored(cluster, &release);
    for kind in [
        "Certificate",
        "Issuer",
        "ServiceMonitor",
        "PrometheusRule",
        "NetworkPolicy",
        "CustomResourceDefinition",
    ] {
        assert!(
            manifest.has(kind),
            "{kind} not installed: {:?}",
            manifest.ids()
        );
    }
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let stored = cluster.stored(manifest.one(kind)).expect("stored");
        assert_eq!(
            stored["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            "wfe-chart/wfe-admission-serving"
        );
    }
    assert_base_rbac(cluster);
    let can = |verb, group, resource, ns, name| cluster.sa_can(verb, group, resource, ns, name);
    assert!(!can(
        "update",
        "kubernaut.ai",
        "workflowexecutions/status",
        Some(WFE_NS),
        None
    ));
    assert!(
        !can("get", "", "secrets", Some(NS), Some("wfe-admission-tls")),
        "cert-manager mode reads no Secret"
    );
    assert!(!can(
        "update",
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        None,
        Some(RELEASE)
    ));

    // Uninstall removes the release's objects but keeps the CRD (and so every WorkflowExecution).
    release.uninstall();
    for doc in &manifest.docs {
        let kind = doc["kind"].as_str().unwrap_or_default();
        let stored = cluster.stored(doc);
        if kind == "CustomResourceDefinition" {
            assert!(stored.is_some(), "helm uninstall deleted the CRD");
        } else {
            assert!(
                stored.is_none(),
                "{kind} {} survived helm uninstall",
                doc["metadata"]["name"]
            );
        }
    }
}

fn install_self_managed_mode_and_run_it_with_the_chart_rbac(ctx: &mut Ctx) {
    let (helm, cluster) = ctx.cluster();
    let release = cluster.install(helm, &mode_values("self-managed"));
    let manifest = assert_all_stored(cluster, &release);
    assert!(manifest.has("Role") && manifest.has("RoleBinding"));
    assert_eq!(
        ca_bundles(cluster, &manifest),
        vec![None, None],
        "the chart sets no caBundle"
    );

    assert_base_rbac(cluster);
    let can = |verb, group, resource, ns, name| cluster.sa_can(verb, group, resource, ns, name);
    let adm = "admissionregistration.k8s.io";
    for resource in [
        "mutatingwebhookconfigurations",
        "validatingwebhookconfigurations",
    ] {
        for verb in ["get", "update"] {
            assert!(
                can(verb, adm, resource, None, Some(RELEASE)),
                "{verb} own {resource}"
            );
            assert!(
                !can(verb, adm, resource, None, Some("someone-else")),
                "{verb} other {resource}"
            );
        }
        assert!(!can("delete", adm, resource, None, Some(RELEASE)));
    }
    for verb in ["get", "update"] {
        assert!(
            can(verb, "", "secrets", Some(NS), Some("wfe-admission-tls")),
            "{verb} own Secret"
        );
        assert!(
            !can(verb, "", "secrets", Some(NS), Some("other-secret")),
            "{verb} other Secret"
        );
        assert!(
            !can(verb, "", "secrets", Some(WFE_NS), Some("wfe-admission-tls")),
            "{verb} Secret elsewhere"
        );
    }
    assert!(can("create", "", "secrets", Some(NS), None));
    assert!(
        !can("create", "", "secrets", Some(WFE_NS), None),
        "create Secrets outside its namespace"
    );
    assert!(!can(
        "delete",
        "",
        "secrets",
        Some(NS),
        Some("wfe-admission-tls")
    ));
    assert!(!can(
        "update",
        "kubernaut.ai",
        "workflowexecutions/status",
        Some(WFE_NS),
        None
    ));

    // Run the webhook with the Deployment's own flags, as the service account: it must create
    // its Secret and inject the CA into both installed configurations with that RBAC alone.
    let dir = cluster.workdir("self-managed");
    let port = free_port();
    let listen = SocketAddr::from(([127, 0, 0, 1], port));
    let (webhook, args) = start_release_pod(cluster, &manifest, &dir, "local", listen, &[]);
    assert!(
        args.contains(&"--cert-mode=self-managed".to_string()),
        "{args:?}"
    );
    let policy = dir.join("policy-local.yaml");

    let secret_api: Api<Secret> = Api::namespaced(cluster.admin.clone(), NS);
    let secret = poll("the webhook's Secret", 20, || {
        cluster
            .block_on(secret_api.get_opt("wfe-admission-tls"))
            .ok()
            .flatten()
    });
    let data = secret.data.expect("Secret data");
    for key in ["tls.crt", "tls.key", "ca.crt"] {
        assert!(data.contains_key(key), "Secret lacks {key}");
    }
    let bundle = data
        .get(wfe_admission::selfcert::CA_BUNDLE)
        .map(|b| String::from_utf8(b.0.clone()).expect("utf-8"))
        .expect("CA bundle in the Secret");
    let b64 = base64::engine::general_purpose::STANDARD;
    let injected = poll("the caBundle in both configurations", 20, || {
        let all = ca_bundles(cluster, &manifest);
        all.iter().all(Option::is_some).then_some(all)
    });
    for b in &injected {
        let pem = String::from_utf8(
            b64.decode(b.as_deref().unwrap_or_default())
                .expect("base64"),
        )
        .expect("pem");
        assert_eq!(pem, bundle, "the injected caBundle is not the Secret's");
    }
    // The served certificate is for the Service's DNS name and chains to the injected bundle.
    tls_handshake(cluster, port, "wfe-admission.wfe-chart.svc", &bundle);

    // The built-in match conditions follow the policy the webhook serves: a hand edit that
    // gives executionStatus to the executor reaches the mutating condition within seconds.
    let builtin = |kind: &str, name: &str| {
        stored_match_conditions(cluster, &manifest, kind)
            .into_iter()
            .find(|c| c["name"] == name)
            .map(|c| c["expression"].clone())
    };
    let mut edited = Config::from_yaml(&stored_policy(cluster)).expect("the stored policy");
    edited
        .fields
        .insert("executionStatus".into(), vec!["executor".into()]);
    let expected = json!(mutate_match_condition(&edited).expect("a controller"));
    let (mutating, validating) = (
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    );
    assert_ne!(
        builtin(mutating, MUTATE_MATCH_CONDITION),
        Some(expected.clone())
    );
    // YAML is a superset of JSON. Swapped in whole, as a ConfigMap volume does, so that no
    // reload reads a half-written file. The deadline allows a loaded CI machine.
    let swapped = policy.with_extension("new");
    std::fs::write(&swapped, serde_json::to_string(&edited).expect("json")).expect("write policy");
    std::fs::rename(&swapped, &policy).expect("swap policy");
    poll(
        "the mutating condition to follow the edited policy",
        60,
        || (builtin(mutating, MUTATE_MATCH_CONDITION) == Some(expected.clone())).then_some(()),
    );
    assert_eq!(
        builtin(validating, VALIDATE_MATCH_CONDITION),
        Some(json!(validate_match_condition(&edited)))
    );
    assert!(
        builtin(mutating, "not-wfe-admission-itself").is_some(),
        "the own-account exclusion was dropped"
    );

    // An upgrade keeps the caBundle the webhook wrote (the chart never sets the field).
    release.upgrade(&["--set", "webhook.timeoutSeconds=5"]);
    assert_eq!(
        ca_bundles(cluster, &manifest),
        injected,
        "helm upgrade wiped the caBundle"
    );
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let stored = cluster.stored(manifest.one(kind)).expect("stored");
        assert_eq!(
            stored["webhooks"][0]["timeoutSeconds"], 5,
            "{kind} not upgraded"
        );
    }
    assert!(
        webhook.log_text().contains("wfe-admission-tls"),
        "the webhook's log does not mention its Secret:\n{}",
        webhook.log_text()
    );
    drop(webhook);
    drop(release);
    // The Secret is the webhook's, not the release's: remove it for the next install.
    cluster
        .block_on(secret_api.delete("wfe-admission-tls", &Default::default()))
        .expect("delete Secret");
}

/// A TLS handshake and one request to the webhook, resolving `host` to 127.0.0.1 and
/// trusting only `ca_pem`.
fn tls_handshake(cluster: &Cluster, port: u16, host: &str, ca_pem: &str) {
    let ca = reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes()).expect("CA bundle");
    let url = format!("https://{host}:{port}/validate");
    let response = cluster
        .block_on(async {
            let mut builder = reqwest::Client::builder()
                .no_proxy()
                .resolve(host, SocketAddr::from(([127, 0, 0, 1], port)))
                .timeout(Duration::from_secs(5));
            for c in ca {
                builder = builder.add_root_certificate(c);
            }
            let client = builder.build().expect("client");
            client
                .post(&url)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
        })
        .unwrap_or_else(|e| panic!("TLS to {url} with the injected bundle failed: {e:?}"));
    // A readable request that is no AdmissionReview: the webhook answered, over verified TLS.
    assert_eq!(response.status().as_u16(), 400);
}

/// The policy file as the installed ConfigMap holds it.
fn stored_policy(cluster: &Cluster) -> String {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "wfe-admission-policy", "namespace": NS}});
    let stored = cluster.stored(&cm).expect("policy ConfigMap");
    let text = stored["data"]["policy.yaml"]
        .as_str()
        .expect("policy.yaml")
        .to_string();
    let config = wfe_admission::config::Config::from_yaml(&text).expect("the webhook accepts it");
    assert_eq!(config.writers["webhook"].users, vec![SA_USER.to_string()]);
    text
}

fn wfe_api(client: &kube::Client) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kubernaut.ai", "v1alpha1", "WorkflowExecution"),
        "workflowexecutions",
    );
    Api::namespaced_with(client.clone(), WFE_NS, &resource)
}

/// A WorkflowExecution as the orchestrator creates it (the admin here), from the e2e sample.
fn create_wfe(cluster: &Cluster, sample: &Value, name: &str) {
    let mut object: DynamicObject = serde_json::from_value(sample.clone()).expect("sample");
    object.metadata.name = Some(name.into());
    object.metadata.namespace = Some(WFE_NS.into());
    cluster
        .block_on(wfe_api(&cluster.admin).create(&PostParams::default(), &object))
        .expect("create WorkflowExecution");
}

/// The e2e suite's sample WorkflowExecution.
fn sample() -> Value {
    serde_saphyr::from_str(
        &std::fs::read_to_string(repo().join("tests/e2e/manifests/sample-wfe.yaml"))
            .expect("sample"),
    )
    .expect("parse sample")
}

/// GET, replace the status with `f(status)`, PUT /status; the stored status or the API error.
fn put_status(
    cluster: &Cluster,
    client: &kube::Client,
    name: &str,
    f: impl FnOnce(&mut Value),
) -> Result<Value, kube::Error> {
    let api = wfe_api(client);
    cluster.block_on(async {
        let mut object = api.get(name).await?;
        let mut status = object.data.get("status").cloned().unwrap_or(json!({}));
        f(&mut status);
        object.data["status"] = status;
        let stored = api
            .replace_status(name, &PostParams::default(), &object)
            .await?;
        Ok(stored.data["status"].clone())
    })
}

fn denial(result: Result<Value, kube::Error>) -> (u16, String) {
    match result {
        Ok(status) => panic!("the write was allowed; stored status {status}"),
        Err(kube::Error::Api(s)) => (s.code, s.message.clone()),
        Err(e) => panic!("not an API error: {e}"),
    }
}

fn install_provided_mode_and_guard_status_end_to_end(ctx: &mut Ctx) {
    let (helm, cluster) = ctx.cluster();
    let dir = cluster.workdir("provided");
    // Certificates for the webhook on 127.0.0.1, as an admin would make them for `provided`.
    let certs = dir.join("certs");
    let out = Command::new(env!("CARGO_BIN_EXE_wfe-admission"))
        .args(["certs", "--host", "127.0.0.1", "--days", "2", "--out"])
        .arg(&certs)
        .output()
        .expect("wfe-admission certs");
    assert!(
        out.status.success(),
        "certs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |f: &str| std::fs::read_to_string(certs.join(f)).expect("cert file");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "wfe-admission-provided-tls", "namespace": NS},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": read("tls.crt"), "tls.key": read("tls.key")},
    }))
    .expect("secret");
    let secrets: Api<Secret> = Api::namespaced(cluster.admin.clone(), NS);
    cluster
        .block_on(secrets.create(&PostParams::default(), &secret))
        .expect("create the provided Secret");

    let port = free_port();
    let values = json!({
        "certificates": {"mode": "provided", "provided": {
            "secretName": "wfe-admission-provided-tls", "caBundle": read("ca.crt")}},
        "webhook": {"url": format!("https://127.0.0.1:{port}"), "timeoutSeconds": 5},
        "policy": {"events": {"rejectionCondition": true}},
    });
    let release = cluster.install(helm, &values);
    let manifest = assert_all_stored(cluster, &release);
    for (kind, path) in [
        ("MutatingWebhookConfiguration", "/mutate"),
        ("ValidatingWebhookConfiguration", "/validate"),
    ] {
        let stored = cluster.stored(manifest.one(kind)).expect("stored");
        let cc = &stored["webhooks"][0]["clientConfig"];
        assert_eq!(cc["url"], format!("https://127.0.0.1:{port}{path}"));
        assert!(cc["caBundle"].as_str().is_some_and(|b| !b.is_empty()));
    }
    assert_base_rbac(cluster);
    assert!(cluster.sa_can(
        "update",
        "kubernaut.ai",
        "workflowexecutions/status",
        Some(WFE_NS),
        None
    ));
    assert!(cluster.sa_can(
        "get",
        "kubernaut.ai",
        "workflowexecutions/status",
        Some(WFE_NS),
        None
    ));
    assert!(!cluster.sa_can(
        "get",
        "",
        "secrets",
        Some(NS),
        Some("wfe-admission-provided-tls")
    ));

    // The webhook, locally, with the installed policy and the Deployment's flags.
    let listen = SocketAddr::from(([127, 0, 0, 1], port));
    let files = [
        ("--tls-cert", certs.join("tls.crt").display().to_string()),
        ("--tls-key", certs.join("tls.key").display().to_string()),
    ];
    let (webhook, _) = start_release_pod(cluster, &manifest, &dir, "local", listen, &files);

    let name = "wfe-chart-e2e";
    create_wfe(cluster, &sample(), name);

    let controller = cluster.client_with_token("CONTROLLER");
    let operator = cluster.client_with_token("OPERATOR");
    let itself = cluster.client_as_sa();

    // Legal: Pending -> Running. The mutating webhook stamps startTime.
    let status = put_status(cluster, &controller, name, |s| {
        *s = json!({"phase": "Running", "executionRef": {"name": "job-1"},
            "conditions": [{"type": "ExecutionCreated", "status": "True", "reason": "Created",
                            "message": "job-1 created", "lastTransitionTime": "2026-11-27T10:00:00Z"}]});
    })
    .unwrap_or_else(|e| panic!("Pending -> Running denied: {e}\n{}", webhook.log_text()));
    assert_eq!(status["phase"], "Running");
    assert!(
        status["startTime"].is_string(),
        "the mutating webhook did not stamp startTime: {status}"
    );

    // An operator's partial write keeps what the controller owns (combined by the mutating webhook).
    let status = put_status(cluster, &operator, name, |s| {
        *s = json!({"phase": "Running"})
    })
    .unwrap_or_else(|e| panic!("operator write denied: {e}"));
    assert_eq!(
        status["executionRef"]["name"], "job-1",
        "carry-over failed: {status}"
    );
    assert_eq!(status["conditions"][0]["type"], "ExecutionCreated");

    // Legal: Running -> Completed, with completionTime and duration derived.
    let status = put_status(cluster, &controller, name, |s| {
        s["phase"] = json!("Completed")
    })
    .unwrap_or_else(|e| panic!("Running -> Completed denied: {e}"));
    assert_eq!(status["phase"], "Completed");
    assert!(
        status["completionTime"].is_string() && status["duration"].is_string(),
        "{status}"
    );

    // Illegal: Completed -> Running is denied by the installed validating webhook, with our message.
    let (code, message) = denial(put_status(cluster, &controller, name, |s| {
        s["phase"] = json!("Running")
    }));
    assert_eq!(code, 403, "{message}");
    for needle in [
        "admission webhook \"status.validate.wfe-admission.kubernaut.ai\" denied the request",
        "WorkflowExecution default/wfe-chart-e2e",
        "illegal phase transition Completed → Running",
        "system:serviceaccount:kubernaut-system:workflowexecution-controller",
        "Completed is terminal",
    ] {
        assert!(
            message.contains(needle),
            "denial lacks {needle:?}: {message}"
        );
    }
    let stored = cluster
        .block_on(wfe_api(&cluster.admin).get(name))
        .expect("get");
    assert_eq!(stored.data["status"]["phase"], "Completed");

    // The denial is an Event an admin finds by reason, recorded with the chart's RBAC.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(cluster.admin.clone(), WFE_NS);
    let event = poll("an IllegalPhaseTransition Event", 20, || {
        let list = cluster.block_on(events.list(&Default::default())).ok()?;
        list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some("IllegalPhaseTransition")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
    });
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    // policy.events.rejectionCondition: the status manager writes the latest rejection as a
    // condition (status update granted by the chart, through the validating webhook).
    let condition = poll("the AdmissionRejected condition", 20, || {
        let o = cluster.block_on(wfe_api(&cluster.admin).get(name)).ok()?;
        o.data["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "AdmissionRejected")
            .cloned()
    });
    assert_eq!(condition["status"], "True", "{condition}");

    // The webhook's own account skips the mutating webhook (no carry-over of what it leaves
    // out) but not the validating one (its illegal moves are denied too).
    let status = put_status(cluster, &itself, name, |s| {
        s.as_object_mut().expect("status").remove("executionRef");
    })
    .unwrap_or_else(|e| panic!("the webhook account's write denied: {e}"));
    assert!(
        status.get("executionRef").is_none(),
        "the mutating webhook ran for its own service account: {status}"
    );
    let (code, message) = denial(put_status(cluster, &itself, name, |s| {
        s["phase"] = json!("Running")
    }));
    assert_eq!(code, 403, "{message}");
    assert!(
        message.contains("status.validate.wfe-admission.kubernaut.ai"),
        "{message}"
    );
    assert!(message.contains(SA_USER), "{message}");
    drop(webhook);
    drop(release);
}

/// kubernaut's chart installs the CRD from its crds/ folder, so it carries no Helm ownership. A
/// default install must neither fail on it nor take it over, and must say so in its notes.
fn install_with_defaults_beside_a_crd_kubernaut_installed(ctx: &mut Ctx) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Patch, PatchParams};
    let (helm, cluster) = ctx.cluster();
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.admin.clone());
    let name = "workflowexecutions.kubernaut.ai";
    // The earlier cases' kept CRD, made to look like kubernaut's: no Helm annotations or label.
    let unowned = json!({"metadata": {
        "annotations": {"meta.helm.sh/release-name": null, "meta.helm.sh/release-namespace": null,
                        "helm.sh/resource-policy": null},
        "labels": {"app.kubernetes.io/managed-by": null}}});
    cluster
        .block_on(crds.patch(name, &PatchParams::default(), &Patch::Merge(&unowned)))
        .expect("the CRD of the earlier cases is there to disown");
    let before = cluster.block_on(crds.get(name)).expect("the CRD");

    let mut release = cluster.install(helm, &json!({}));
    assert!(
        release.notes.contains("already installed by someone else"),
        "{}",
        release.notes
    );
    let manifest = release.manifest();
    assert!(
        manifest
            .docs
            .iter()
            .all(|d| d["kind"] != "CustomResourceDefinition"),
        "the release rendered the CRD someone else owns"
    );
    let after = cluster.block_on(crds.get(name)).expect("the CRD");
    assert_eq!(
        after.metadata.annotations, before.metadata.annotations,
        "the release took the CRD over"
    );
    assert_eq!(after.spec, before.spec);
    release.uninstall();
    assert!(
        cluster
            .block_on(crds.get_opt(name))
            .expect("read")
            .is_some(),
        "helm uninstall deleted a CRD it did not own"
    );
}

/// `upgradeLint`: the pre-upgrade Job lints the candidate policy against the installed one and
/// the stored objects. A policy that leaves a Running object no way out stops the upgrade with
/// the policy unchanged and the object named; a harmless change goes through.
fn upgrade_lint_stops_an_upgrade_that_strands_a_stored_object(ctx: &mut Ctx) {
    use kube::api::{Patch, PatchParams};
    let (helm, cluster) = ctx.cluster();
    let mut release = cluster.install(helm, &json!({"upgradeLint": {"enabled": true}}));
    let name = "lint-running";
    create_wfe(cluster, &sample(), name);
    // No webhook pod runs: the self-managed configurations fail open, so the admin's write
    // needs no answer.
    cluster
        .block_on(wfe_api(&cluster.admin).patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running"}})),
        ))
        .expect("move the sample to Running");
    let policy_of = || {
        let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
            Api::namespaced(cluster.admin.clone(), NS);
        let cm = cluster
            .block_on(cms.get("wfe-admission-policy"))
            .expect("the policy ConfigMap");
        cm.data
            .unwrap_or_default()
            .remove("policy.yaml")
            .unwrap_or_default()
    };
    let before = policy_of();

    let stranding = json!({"policy": {
        "phase": {"transitions": {"Pending": ["Running", "Failed"], "Running": []}},
        "moves": {"orchestrator": [{"from": ["Pending"], "to": "Failed", "fields": ["failureReason"]}]}
    }});
    let (out, jobs) = release.upgrade_running_hooks(&stranding);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the stranding upgrade went through");
    assert!(stderr.contains("pre-upgrade hooks failed"), "{stderr}");
    let lint = jobs
        .iter()
        .find(|j| j.name == "wfe-admission-lint")
        .expect("the lint Job ran");
    let said = String::from_utf8_lossy(&lint.output.stdout);
    assert_eq!(lint.output.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "lint: stranded: {WFE_NS}/{name} is in Running, which has no legal move"
        )) && said.contains("lint: dead-end: Running"),
        "{said}"
    );
    assert_eq!(policy_of(), before, "a refused upgrade changed the policy");

    let harmless = json!({"policy": {"conditions": {"owners": {"Paused": ["operator"]}}}});
    let (out, jobs) = release.upgrade_running_hooks(&harmless);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        jobs.iter()
            .any(|j| j.name == "wfe-admission-lint" && j.output.status.success()),
        "the lint Job did not run and pass"
    );
    assert!(
        policy_of().contains("Paused"),
        "the upgrade did not change the policy"
    );
    release.uninstall();
    cluster
        .block_on(wfe_api(&cluster.admin).delete(name, &Default::default()))
        .expect("delete the sample");
}
