//! Rows through the real kube-apiserver (tests/e2e/control-plane): status-update latency and
//! throughput with (a) no admission, (b) the phase transitions as a CRD CEL rule on `oldSelf`,
//! (c) our two webhooks, served in this process and registered by URL with the chart's match
//! conditions, (d) the same without any match condition, (e) a mutating webhook that only
//! echoes the uid (the floor of any webhook call), and (f) (c) without the mutating webhook's
//! match condition. Each mode has its own copy of the CRD under its own group, so their updates
//! can be interleaved.

use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use base64::Engine as _;
use kube::Client;
use kube::api::{Api, ApiResource, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::DynamicObject;
use serde_json::{Value, json};

use super::control_plane;
use super::fixtures::{self, Size};
use wfe_admission::config::Config;
use wfe_admission::policy::match_conditions;

pub const K8S_VERSION: &str = "v1.37.2";
const NAMESPACE: &str = "kubernaut-system";

/// The cached control-plane binaries, when build.sh has run on this machine.
pub fn cached_binaries() -> Option<PathBuf> {
    let base = std::env::var_os("WFE_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/wfe-admission"))
        })?;
    let dir = base.join(format!("k8s-{K8S_VERSION}"));
    (dir.join("kube-apiserver").is_file() && dir.join("etcd").is_file()).then_some(dir)
}

/// A started control plane and what the kube-apiserver rows need from it; stopped on drop.
pub struct BenchCluster {
    plane: control_plane::ControlPlane,
    pub url: String,
    pub ca_file: PathBuf,
    pub kubeconfig: PathBuf,
    pub controller_token: String,
    pub start_ms: f64,
}

impl BenchCluster {
    pub fn start(repo: &Path, bin_dir: &Path) -> anyhow::Result<Self> {
        let started = Instant::now();
        let plane = control_plane::ControlPlane::start(repo, bin_dir, "bench")?;
        let start_ms = started.elapsed().as_secs_f64() * 1e3;
        Ok(Self {
            url: plane.var("KUBE_APISERVER_URL")?.to_string(),
            ca_file: PathBuf::from(plane.var("KUBE_CA_FILE")?),
            kubeconfig: PathBuf::from(plane.var("KUBECONFIG")?),
            controller_token: plane.var("WFE_TOKEN_CONTROLLER")?.to_string(),
            start_ms,
            plane,
        })
    }

    pub fn workdir(&self) -> &Path {
        self.plane.path()
    }

    pub async fn admin(&self) -> anyhow::Result<Client> {
        let file = Kubeconfig::read_from(&self.kubeconfig)?;
        let config =
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await?;
        Ok(Client::try_from(config)?)
    }

    pub fn controller(&self) -> anyhow::Result<Client> {
        let mut config = kube::Config::new(self.url.parse()?);
        config.root_cert_file = Some(self.ca_file.clone());
        config.default_namespace = NAMESPACE.into();
        config.headers.push((
            axum::http::header::AUTHORIZATION,
            format!("Bearer {}", self.controller_token).parse()?,
        ));
        Ok(Client::try_from(config)?)
    }

    pub fn ca_pem(&self) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(&self.ca_file)?)
    }
}

/// One of the admission modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    None,
    Cel,
    /// Our two webhooks as the chart installs them, each with its match condition: the
    /// progress write reaches neither.
    Webhooks,
    /// (c) without any match condition: every status update calls both webhooks. Measured
    /// beside (c) to show what the conditions buy.
    WebhooksAlways,
    /// One mutating webhook, registered like ours, that only echoes the request's uid: what
    /// any webhook costs the API server, the floor under a write that reaches /mutate.
    Floor,
    /// (c) without the mutating match condition: the progress write reaches /mutate, as any
    /// write that needs combining does.
    MutateAlways,
}

impl Mode {
    pub const ALL: [Mode; 6] = [
        Mode::None,
        Mode::Cel,
        Mode::Webhooks,
        Mode::WebhooksAlways,
        Mode::Floor,
        Mode::MutateAlways,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Mode::None => "(a) no admission",
            Mode::Cel => "(b) CRD CEL transition rule",
            Mode::Webhooks => "(c) wfe-admission webhooks",
            Mode::WebhooksAlways => "(d) = (c) without the match conditions",
            Mode::Floor => "(e) a mutating webhook that only echoes the uid",
            Mode::MutateAlways => "(f) = (c) without the mutating match condition",
        }
    }

    pub fn group(self) -> &'static str {
        match self {
            Mode::None => "plain.bench.kubernaut.ai",
            Mode::Cel => "cel.bench.kubernaut.ai",
            Mode::Webhooks => "kubernaut.ai",
            Mode::WebhooksAlways => "always.bench.kubernaut.ai",
            Mode::Floor => "floor.bench.kubernaut.ai",
            Mode::MutateAlways => "mutate.bench.kubernaut.ai",
        }
    }

    pub fn resource(self) -> ApiResource {
        ApiResource {
            group: self.group().into(),
            version: "v1alpha1".into(),
            api_version: format!("{}/v1alpha1", self.group()),
            kind: "WorkflowExecution".into(),
            plural: "workflowexecutions".into(),
        }
    }
}

/// The phase transition rule in CEL (an absent phase is Pending / keeps the old one).
pub const CEL_RULE: &str = "!has(self.phase) || self.phase == (has(oldSelf.phase) ? oldSelf.phase : 'Pending') || ((!has(oldSelf.phase) || oldSelf.phase == 'Pending') && self.phase in ['Running', 'Failed']) || (has(oldSelf.phase) && oldSelf.phase == 'Running' && self.phase in ['Completed', 'Failed'])";

fn ssa() -> PatchParams {
    PatchParams::apply("wfe-bench").force()
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: if group.is_empty() {
            version.into()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.into(),
        plural: plural.into(),
    }
}

async fn apply(client: &Client, ar: &ApiResource, object: Value) -> anyhow::Result<()> {
    let name = object["metadata"]["name"]
        .as_str()
        .ok_or_else(|| anyhow!("object without a name"))?
        .to_string();
    let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
    api.patch(&name, &ssa(), &Patch::Apply(&object))
        .await
        .with_context(|| format!("apply {} {name}", ar.kind))?;
    Ok(())
}

/// Installs a CRD per mode and the RBAC that lets the controller write the bench groups.
pub async fn install(admin: &Client, repo: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(repo.join("tests/e2e/manifests/crd.yaml"))?;
    let base: Value = serde_saphyr::from_str(&text).context("crd.yaml")?;
    let crd_ar = resource(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
    );
    for mode in Mode::ALL {
        let mut crd = base.clone();
        crd["metadata"] = json!({"name": format!("workflowexecutions.{}", mode.group())});
        crd["spec"]["group"] = json!(mode.group());
        crd["apiVersion"] = json!("apiextensions.k8s.io/v1");
        crd["kind"] = json!("CustomResourceDefinition");
        if mode == Mode::Cel {
            let status = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
                ["status"];
            status["x-kubernetes-validations"] = json!([{
                "rule": CEL_RULE,
                "message": "illegal phase transition",
                "reason": "FieldValueForbidden",
            }]);
        }
        apply(admin, &crd_ar, crd).await?;
    }
    let rbac = |kind, plural| resource("rbac.authorization.k8s.io", "v1", kind, plural);
    apply(
        admin,
        &rbac("ClusterRole", "clusterroles"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "wfe-bench"},
            "rules": [{"apiGroups": Mode::ALL.map(Mode::group),
                "resources": ["workflowexecutions", "workflowexecutions/status"],
                "verbs": ["get", "list", "watch", "create", "update", "patch"]}]}),
    )
    .await?;
    apply(
        admin,
        &rbac("ClusterRoleBinding", "clusterrolebindings"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "wfe-bench"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "wfe-bench"},
            "subjects": [{"kind": "User", "name": fixtures::CONTROLLER}]}),
    )
    .await?;
    // Wait until every group is served.
    let deadline = Instant::now() + Duration::from_secs(30);
    for mode in Mode::ALL {
        let api: Api<DynamicObject> =
            Api::namespaced_with(admin.clone(), NAMESPACE, &mode.resource());
        loop {
            match api.list(&Default::default()).await {
                Ok(_) => break,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => return Err(anyhow!("{} not served: {e}", mode.group())),
            }
        }
    }
    Ok(())
}

/// Creates `name` in `mode`'s group (as admin) and puts its status in Running (as controller).
pub async fn create_object(
    admin: &Client,
    controller: &Client,
    mode: Mode,
    name: &str,
) -> anyhow::Result<DynamicObject> {
    let ar = mode.resource();
    let mut object = fixtures::object(Size::Small, Value::Null);
    if let Some(m) = object.as_object_mut() {
        m.remove("status");
    }
    object["apiVersion"] = json!(ar.api_version);
    object["metadata"] = json!({"name": name, "namespace": NAMESPACE});
    let obj: DynamicObject = serde_json::from_value(object)?;
    let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), NAMESPACE, &ar);
    let created = match api.create(&PostParams::default(), &obj).await {
        Ok(o) => o,
        Err(kube::Error::Api(e)) if e.code == 409 => api.get(name).await?,
        Err(e) => return Err(e.into()),
    };
    let mut with_status = created;
    with_status.data["status"] = fixtures::statuses(fixtures::Case::Progress, Size::Small).0;
    let capi: Api<DynamicObject> = Api::namespaced_with(controller.clone(), NAMESPACE, &ar);
    let mut current = with_status.clone();
    for _ in 0..3 {
        match capi
            .replace_status(name, &PostParams::default(), &current)
            .await
        {
            Ok(o) => return Ok(o),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let mut fresh = capi.get_status(name).await?;
                fresh.data["status"] = with_status.data["status"].clone();
                current = fresh;
            }
            Err(e) => return Err(anyhow!("initial status of {name} in {}: {e}", mode.group())),
        }
    }
    Err(anyhow!("initial status of {name}: conflicts"))
}

/// One status update as the controller (a progress write, phase unchanged). Returns the stored
/// object for the next write.
async fn update(
    api: &Api<DynamicObject>,
    mut object: DynamicObject,
    i: u64,
) -> anyhow::Result<DynamicObject> {
    let name = object.metadata.name.clone().unwrap_or_default();
    let status = &mut object.data["status"];
    status["executionStatus"]["completedTasks"] = json!(i % 4);
    status["executionStatus"]["message"] = json!(format!("progress report {i}"));
    if let Some(c) = status["conditions"].get_mut(2) {
        c["message"] = json!(format!("progress report {i}"));
    }
    match api
        .replace_status(&name, &PostParams::default(), &object)
        .await
    {
        Ok(o) => Ok(o),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(api.get_status(&name).await?),
        Err(e) => Err(anyhow!("status update of {name}: {e}")),
    }
}

/// `n` updates of each object in turn, one at a time: update `i` goes through the objects
/// starting at `i % len`, so that no mode always follows the same one. Interleaving single
/// updates, not runs of them, lets a burst of load on this VM hit every mode alike. Returns
/// each object's latencies in nanoseconds.
pub async fn interleaved(
    controller: &Client,
    objects: &mut [(Mode, DynamicObject)],
    n: u64,
) -> anyhow::Result<Vec<Vec<u64>>> {
    let apis: Vec<Api<DynamicObject>> = objects
        .iter()
        .map(|(mode, _)| Api::namespaced_with(controller.clone(), NAMESPACE, &mode.resource()))
        .collect();
    let mut latencies = vec![Vec::with_capacity(n as usize); objects.len()];
    for i in 0..n {
        for k in 0..objects.len() {
            let at = (i as usize + k) % objects.len();
            let object = objects[at].1.clone();
            let t = Instant::now();
            objects[at].1 = update(&apis[at], object, i).await?;
            latencies[at].push(t.elapsed().as_nanos() as u64);
        }
    }
    Ok(latencies)
}

#[path = "../../../tests/support/kubernaut_writes.rs"]
mod kubernaut_writes;

/// The real mix: for each lifecycle of tests/data/kubernaut/writes.yaml, the controller's writes
/// that the policy allows as sent, in order (the orchestrator's, the operators' and the illegal
/// moves left out).
pub fn real_mix(repo: &Path) -> anyhow::Result<Vec<Vec<kubernaut_writes::Write>>> {
    let data = kubernaut_writes::load_from(repo).map_err(|e| anyhow!(e))?;
    let mix: Vec<Vec<kubernaut_writes::Write>> = data
        .lifecycles
        .into_iter()
        .map(|l| {
            l.writes
                .into_iter()
                .filter(|w| {
                    w.writer == kubernaut_writes::Who::Controller
                        && w.expect.denied.is_none()
                        && w.expect.changed.is_empty()
                })
                .collect::<Vec<_>>()
        })
        .filter(|l| !l.is_empty())
        .collect();
    if mix.is_empty() {
        return Err(anyhow!("no controller writes in the kubernaut data"));
    }
    Ok(mix)
}

/// The real mix offline: each write as (the status before, or none yet; the status it sends),
/// each lifecycle from a new object, each write stored as sent.
pub fn real_mix_pairs(repo: &Path) -> anyhow::Result<Vec<(Option<Value>, Value)>> {
    let start = jiff::Timestamp::now();
    let mut pairs = Vec::new();
    for lifecycle in real_mix(repo)? {
        let mut stored: Option<serde_json::Map<String, Value>> = None;
        for w in &lifecycle {
            let before = stored.clone().unwrap_or_default();
            let sent = w.sent(&before, w.clock(start));
            pairs.push((stored.map(Value::Object), Value::Object(sent.clone())));
            stored = Some(sent);
        }
    }
    Ok(pairs)
}

/// Latencies of one replay in nanoseconds: each write's, and the lifecycle's (their sum).
pub struct Replayed {
    pub writes: Vec<u64>,
    pub lifecycle: u64,
}

/// Replays one lifecycle on a new object `name` of `mode`'s group as the controller does it:
/// change the stored status, PUT it with the read resourceVersion, read again on a 409.
pub async fn replay_lifecycle(
    admin: &Client,
    controller: &Client,
    mode: Mode,
    name: &str,
    lifecycle: &[kubernaut_writes::Write],
) -> anyhow::Result<Replayed> {
    let ar = mode.resource();
    let created = Api::<DynamicObject>::namespaced_with(admin.clone(), NAMESPACE, &ar);
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": ar.api_version, "kind": "WorkflowExecution",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": lifecycle_spec(),
    }))?;
    let mut object = created.create(&PostParams::default(), &object).await?;
    let api = Api::<DynamicObject>::namespaced_with(controller.clone(), NAMESPACE, &ar);
    let mut out = Replayed {
        writes: Vec::with_capacity(lifecycle.len()),
        lifecycle: 0,
    };
    for w in lifecycle {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let stored = object
                .data
                .get("status")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            object.data["status"] = Value::Object(w.body(&stored, jiff::Timestamp::now()));
            let t = Instant::now();
            let result = api
                .replace_status(name, &PostParams::default(), &object)
                .await;
            let took = t.elapsed().as_nanos() as u64;
            match result {
                Ok(stored) => {
                    out.writes.push(took);
                    out.lifecycle += took;
                    object = stored;
                    break;
                }
                Err(kube::Error::Api(e)) if e.code == 409 && attempt < 5 => {
                    object = api.get_status(name).await?;
                }
                Err(e) => return Err(anyhow!("{name} in {}, {}: {e}", mode.group(), w.what)),
            }
        }
    }
    let _ = created.delete(name, &Default::default()).await;
    Ok(out)
}

fn lifecycle_spec() -> Value {
    json!({
        "remediationRequestRef": {"apiVersion": "kubernaut.ai/v1alpha1",
            "kind": "RemediationRequest", "name": "rr-bench", "namespace": NAMESPACE},
        "targetResource": "payments/deployment/api",
        "workflowRef": {"workflowId": "restart-deployment", "workflowName": "restart-deployment",
            "actionType": "RestartPod", "version": "v1",
            "executionBundle": "ghcr.io/kubernaut/workflows/restart:v1", "executionEngine": "job"},
    })
}

/// Updates per second with one writer per object, all objects at once, for `window`.
pub async fn throughput(
    controller: &Client,
    mode: Mode,
    objects: Vec<DynamicObject>,
    window: Duration,
) -> anyhow::Result<(f64, Vec<DynamicObject>)> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(controller.clone(), NAMESPACE, &mode.resource());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for object in objects {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let mut object = object;
            let mut n = 0u64;
            while start.elapsed() < window {
                object = update(&api, object, n).await?;
                n += 1;
            }
            Ok::<_, anyhow::Error>((n, object))
        }));
    }
    let mut total = 0;
    let mut objects = Vec::new();
    for t in tasks {
        let (n, o) = t.await??;
        total += n;
        objects.push(o);
    }
    Ok((total as f64 / start.elapsed().as_secs_f64(), objects))
}

/// Checks that mode (b) really guards the transitions: an illegal dry-run move (Running ->
/// Pending) must be refused by the CEL rule.
pub async fn check_cel_rule(controller: &Client, object: &DynamicObject) -> anyhow::Result<()> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(controller.clone(), NAMESPACE, &Mode::Cel.resource());
    let name = object.metadata.name.clone().unwrap_or_default();
    let mut illegal = api.get_status(&name).await?;
    illegal.data["status"]["phase"] = json!("Pending");
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    match api.replace_status(&name, &dry_run, &illegal).await {
        Err(kube::Error::Api(e)) if e.message.contains("illegal phase transition") => Ok(()),
        Err(e) => Err(anyhow!(
            "the CEL rule did not refuse Running → Pending: {e}"
        )),
        Ok(_) => Err(anyhow!("the CEL rule let Running → Pending through")),
    }
}

/// Registers our webhooks for (c), (d) and (f) at `https://127.0.0.1:port` and (e)'s at
/// `echo_port`, then waits until the API server calls ours (an illegal dry-run move is denied).
pub async fn register_webhooks(
    admin: &Client,
    controller: &Client,
    (port, echo_port): (u16, u16),
    ca_pem: &str,
    probe: &DynamicObject,
) -> anyhow::Result<()> {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let hook = |path: &str, name: &str, mode: Mode| {
        let port = if mode == Mode::Floor { echo_port } else { port };
        json!({"name": name, "admissionReviewVersions": ["v1"], "sideEffects": "NoneOnDryRun",
            "failurePolicy": "Fail", "matchPolicy": "Equivalent", "timeoutSeconds": 5,
            "clientConfig": {"url": format!("https://127.0.0.1:{port}{path}"), "caBundle": ca},
            "rules": [{"apiGroups": [mode.group()], "apiVersions": ["*"],
                "operations": ["UPDATE"], "resources": ["workflowexecutions/status"], "scope": "Namespaced"}]})
    };
    let (mut mutating, mut validating) = (Vec::new(), Vec::new());
    let config = webhook_config();
    // The chart's conditions: its own account skips /mutate; /mutate only for writes combining
    // may change; /validate only for updates it may deny.
    let mutate_conditions = json!([
        {"name": "not-wfe-admission-itself",
            "expression": "request.userInfo.username != 'system:serviceaccount:wfe-system:wfe-admission'"},
        {"name": match_conditions::MUTATE_MATCH_CONDITION,
            "expression": match_conditions::mutate_match_condition(&config)
                .context("the bench policy has no controller to recognise")?}]);
    let validate_conditions = json!([{"name": match_conditions::VALIDATE_MATCH_CONDITION,
        "expression": match_conditions::validate_match_condition(&config)}]);
    for mode in [
        Mode::Webhooks,
        Mode::WebhooksAlways,
        Mode::Floor,
        Mode::MutateAlways,
    ] {
        for (path, name) in hooks(mode) {
            let mut h = hook(path, name, mode);
            let conditions = match (mode, path) {
                (Mode::Webhooks, "/mutate") => Some(&mutate_conditions),
                (Mode::Webhooks | Mode::MutateAlways, "/validate") => Some(&validate_conditions),
                _ => None,
            };
            if let Some(c) = conditions {
                h["matchConditions"] = c.clone();
            }
            if path == "/validate" {
                validating.push(h);
            } else {
                h["reinvocationPolicy"] = json!("IfNeeded");
                mutating.push(h);
            }
        }
    }
    for (kind, plural, webhooks) in [
        (
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            mutating,
        ),
        (
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            validating,
        ),
    ] {
        let ar = resource("admissionregistration.k8s.io", "v1", kind, plural);
        let config = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
            "metadata": {"name": "wfe-bench"}, "webhooks": webhooks});
        apply(admin, &ar, config).await?;
    }
    let api: Api<DynamicObject> =
        Api::namespaced_with(controller.clone(), NAMESPACE, &Mode::Webhooks.resource());
    let name = probe.metadata.name.clone().unwrap_or_default();
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut illegal = api.get_status(&name).await?;
        illegal.data["status"]["phase"] = json!("Pending");
        match api.replace_status(&name, &dry_run, &illegal).await {
            Err(kube::Error::Api(e)) if e.message.contains("Running → Pending") => return Ok(()),
            _ if Instant::now() > deadline => {
                return Err(anyhow!("the webhooks were not called within 30 s"));
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// The sum of a Prometheus metric's series whose labels contain `filter` (the e2e scenarios read
/// the webhook's counters with it too).
pub fn series_total(text: &str, metric: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(metric) && l[metric.len()..].starts_with(['{', ' ']) && l.contains(filter)
        })
        .filter_map(|l| l.rsplit(' ').next())
        .filter_map(|v| v.parse::<f64>().ok())
        .sum()
}

/// Two scrapes of one metrics endpoint, before and after the measured updates.
#[derive(Debug, Clone, Copy)]
pub struct Scrapes<'a> {
    pub before: &'a str,
    pub after: &'a str,
}

impl<'a> Scrapes<'a> {
    pub fn between(before: &'a str, after: &'a str) -> Self {
        Self { before, after }
    }

    /// How much the series of `metric` whose labels contain `filter` grew between the scrapes.
    pub fn grew(&self, metric: &str, filter: &str) -> f64 {
        series_total(self.after, metric, filter) - series_total(self.before, metric, filter)
    }

    /// Mean in milliseconds of the histogram `name`'s observations between the scrapes; `None`
    /// when there were none.
    pub fn mean_ms(&self, name: &str, filter: &str) -> Option<f64> {
        let count = self.grew(&format!("{name}_count"), filter);
        let sum = self.grew(&format!("{name}_sum"), filter);
        (count > 0.0).then(|| sum / count * 1e3)
    }
}

pub const APISERVER_WEBHOOK_METRIC: &str = "apiserver_admission_webhook_admission_duration_seconds";

/// The webhooks (endpoint, registered name) that serve `mode`'s group: none for (a), (b).
pub fn hooks(mode: Mode) -> Vec<(&'static str, &'static str)> {
    match mode {
        Mode::Webhooks => vec![
            ("/mutate", "mutate.wfe-admission.kubernaut.ai"),
            ("/validate", "validate.wfe-admission.kubernaut.ai"),
        ],
        Mode::WebhooksAlways => vec![
            ("/mutate", "mutate-always.wfe-admission.kubernaut.ai"),
            ("/validate", "validate-always.wfe-admission.kubernaut.ai"),
        ],
        Mode::Floor => vec![("/echo", "echo.bench.kubernaut.ai")],
        Mode::MutateAlways => vec![
            ("/mutate", "mutate-f.wfe-admission.kubernaut.ai"),
            ("/validate", "validate-f.wfe-admission.kubernaut.ai"),
        ],
        Mode::None | Mode::Cel => Vec::new(),
    }
}

/// The policy of the in-process webhook: the default, also guarding (d)'s and (f)'s groups.
pub fn webhook_config() -> Config {
    let mut config = Config::default();
    for mode in [Mode::WebhooksAlways, Mode::MutateAlways] {
        let mut also = config.resource.clone();
        also.group = mode.group().into();
        config.extra_resources.push(also);
    }
    config
}

/// The API server's metrics text.
pub async fn apiserver_metrics(admin: &Client) -> String {
    let Ok(request) = axum::http::Request::get("/metrics").body(Vec::new()) else {
        return String::new();
    };
    admin.request_text(request).await.unwrap_or_default()
}

/// Deletes the webhook configurations (the control plane is thrown away anyway).
pub async fn unregister_webhooks(admin: &Client) {
    for (kind, plural) in [
        (
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
        ),
        (
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
        ),
    ] {
        let api: Api<DynamicObject> = Api::all_with(
            admin.clone(),
            &resource("admissionregistration.k8s.io", "v1", kind, plural),
        );
        let _ = api.delete("wfe-bench", &Default::default()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "\
wfe_admission_requests_total{endpoint=\"mutate\",outcome=\"allowed\"} 10
wfe_admission_requests_total{endpoint=\"mutate\",outcome=\"patched\"} 2
wfe_admission_requests_total{endpoint=\"validate\",outcome=\"allowed\"} 5
wfe_admission_request_duration_seconds_sum{endpoint=\"mutate\"} 0.5
wfe_admission_request_duration_seconds_count{endpoint=\"mutate\"} 10
";
    const AFTER: &str = "\
wfe_admission_requests_total{endpoint=\"mutate\",outcome=\"allowed\"} 16
wfe_admission_requests_total{endpoint=\"mutate\",outcome=\"patched\"} 4
wfe_admission_requests_total{endpoint=\"validate\",outcome=\"allowed\"} 9
wfe_admission_request_duration_seconds_sum{endpoint=\"mutate\"} 0.9
wfe_admission_request_duration_seconds_count{endpoint=\"mutate\"} 18
";

    #[test]
    fn scrapes_give_growth_and_means_of_the_matching_series_only() {
        let s = Scrapes {
            before: BEFORE,
            after: AFTER,
        };
        let mutate = "endpoint=\"mutate\"";
        assert_eq!(s.grew("wfe_admission_requests_total", mutate), 8.0);
        assert_eq!(
            s.grew(
                "wfe_admission_requests_total",
                "endpoint=\"mutate\",outcome=\"patched\""
            ),
            2.0
        );
        // `_sum` and `_count` are other metrics than their prefix.
        assert_eq!(
            s.grew("wfe_admission_request_duration_seconds", mutate),
            0.0
        );
        let mean = s
            .mean_ms("wfe_admission_request_duration_seconds", mutate)
            .expect("observations");
        assert!((mean - 50.0).abs() < 1e-9, "{mean}");
        assert_eq!(
            s.mean_ms(
                "wfe_admission_request_duration_seconds",
                "endpoint=\"validate\""
            ),
            None
        );
    }
}
