//! Setup, the scenario loop and teardown.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use kube::api::PostParams;
use serde_json::json;

use crate::cluster::{self, Clients};
use crate::scenarios;
use crate::webhook::Webhook;
use wfe_bench::control_plane::{self, ControlPlane};

/// Where the scenarios create their objects.
pub const NS: &str = "e2e";
const PROBE_TERMINAL: &str = "probe-completed";
const PROBE_PENDING: &str = "probe-pending";

/// User names the API server authenticates for each identity.
pub struct Users {
    pub controller: String,
    pub executor: String,
    pub operator: String,
    pub orchestrator: String,
    /// kubernaut's controller, whose executors write as it.
    pub kubernaut: String,
}

/// What every scenario gets.
pub struct Ctx {
    pub clients: Clients,
    pub users: Users,
    pub webhook: Webhook,
    /// Objects `repair` must fix, written before the webhooks existed.
    pub repair: Result<scenarios::repair::Fixture, String>,
    /// When both webhooks were first seen answering: earlier writes were made without them.
    pub guarded_since: jiff::Timestamp,
    /// For what runs outside this process (the image's webhook, the `verify` binary,
    /// kubectl): how to reach the API server, and as whom.
    pub access: Access,
}

pub struct Access {
    pub url: String,
    pub ca_file: String,
    pub webhook_token: String,
    pub operator_token: String,
    /// The admin's kubeconfig start.sh wrote (client certificate, system:masters).
    pub admin_kubeconfig: String,
    /// kubectl of the same release (build.sh).
    pub kubectl: std::path::PathBuf,
    /// The API server's audit log of WorkflowExecution writes (RequestResponse level).
    pub audit_log: std::path::PathBuf,
}

impl Access {
    /// Writes to `path` a kubeconfig that authenticates with `token` (the webhook's, the
    /// operator's).
    pub fn write_kubeconfig(&self, path: &std::path::Path, token: &str) -> Result<()> {
        use base64::Engine as _;
        let ca = std::fs::read(&self.ca_file)
            .with_context(|| format!("cannot read {}", self.ca_file))?;
        let ca = base64::engine::general_purpose::STANDARD.encode(ca);
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "e2e", "cluster": {
                "server": self.url, "certificate-authority-data": ca}}],
            "users": [{"name": "e2e", "user": {"token": token}}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "e2e"}}],
            "current-context": "e2e",
        });
        std::fs::write(path, serde_json::to_string_pretty(&config)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

pub type ScenarioFn = fn(Arc<Ctx>) -> BoxFuture<'static, Result<()>>;

pub struct Scenario {
    pub name: &'static str,
    pub limit: Duration,
    pub run: ScenarioFn,
}

#[derive(Debug, Default)]
pub struct Report {
    pub passed: usize,
    pub failed: usize,
}

fn all_failed(selected: &[Scenario], why: &anyhow::Error) -> Report {
    eprintln!("e2e: setup failed: {why:#}");
    for s in selected {
        println!("test {} ... FAILED (setup failed)", s.name);
    }
    Report {
        passed: 0,
        failed: selected.len(),
    }
}

fn repo() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Builds and starts the control plane, sets up, runs `selected`, tears down.
pub fn run(selected: Vec<Scenario>) -> Report {
    let _ = wfe_admission::install_crypto_provider();
    let (bin_dir, took) = match control_plane::build(repo()) {
        Ok(b) => b,
        Err(e) => return all_failed(&selected, &e),
    };
    println!("e2e: control-plane build took {:.1} s", took.as_secs_f64());
    let started = Instant::now();
    // Declared before the runtime, so dropped after it: stop.sh runs last, on every path.
    let mut plane = match ControlPlane::start_audited(repo(), &bin_dir, "e2e") {
        Ok(p) => p,
        Err(e) => return all_failed(&selected, &e),
    };
    println!(
        "e2e: control plane started in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        plane.path().display()
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return all_failed(&selected, &e.into()),
    };
    let started = Instant::now();
    let ctx = match runtime.block_on(setup(&plane)) {
        Ok(ctx) => Arc::new(ctx),
        Err(e) => {
            eprintln!("kube-apiserver log tail:\n{}", plane.apiserver_log_tail(30));
            return all_failed(&selected, &e);
        }
    };
    println!(
        "e2e: CRD, webhook and its configurations ready in {:.1} s (webhook on https://{})",
        started.elapsed().as_secs_f64(),
        ctx.webhook.addr
    );

    let mut report = Report::default();
    for s in selected {
        let started = Instant::now();
        let run = (s.run)(Arc::clone(&ctx));
        let outcome = runtime.block_on(async {
            AssertUnwindSafe(tokio::time::timeout(s.limit, run))
                .catch_unwind()
                .await
        });
        let took = started.elapsed().as_secs_f64();
        let failure = match outcome {
            Ok(Ok(Ok(()))) => None,
            Ok(Ok(Err(e))) => Some(format!("{e:#}")),
            Ok(Err(_)) => Some(format!("timed out after {:?}", s.limit)),
            Err(panic) => Some(panic_message(panic.as_ref())),
        };
        match failure {
            None => {
                report.passed += 1;
                println!("test {} ... ok ({took:.2} s)", s.name);
            }
            Some(why) => {
                report.failed += 1;
                println!("test {} ... FAILED ({took:.2} s)\n    {why}", s.name);
            }
        }
    }

    runtime.block_on(ctx.webhook.stop());
    drop(ctx);
    runtime.shutdown_timeout(Duration::from_secs(5));
    if report.failed > 0 {
        eprintln!("kube-apiserver log tail:\n{}", plane.apiserver_log_tail(20));
    }
    plane.stop();
    report
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(not a string)");
    format!("panicked: {text}")
}

async fn setup(plane: &ControlPlane) -> Result<Ctx> {
    let url = plane.var("KUBE_APISERVER_URL")?;
    let ca = plane.var("KUBE_CA_FILE")?;
    let token = |id: &str| plane.var(&format!("WFE_TOKEN_{id}"));
    let clients = Clients {
        admin: cluster::client(url, ca, token("ADMIN")?)?,
        controller: cluster::client(url, ca, token("CONTROLLER")?)?,
        executor: cluster::client(url, ca, token("EXECUTOR")?)?,
        operator: cluster::client(url, ca, token("OPERATOR")?)?,
        webhook: cluster::client(url, ca, token("WEBHOOK")?)?,
        orchestrator: cluster::client(url, ca, token("ORCHESTRATOR")?)?,
        kubernaut: cluster::client(url, ca, token("KUBERNAUT")?)?,
    };
    let users = Users {
        controller: plane.var("WFE_USER_CONTROLLER")?.to_string(),
        executor: plane.var("WFE_USER_EXECUTOR")?.to_string(),
        operator: plane.var("WFE_USER_OPERATOR")?.to_string(),
        orchestrator: plane.var("WFE_USER_ORCHESTRATOR")?.to_string(),
        kubernaut: plane.var("WFE_USER_KUBERNAUT")?.to_string(),
    };
    cluster::create_namespace(&clients.admin, NS).await?;
    cluster::install_crd(&clients.admin).await?;
    // Before the webhooks exist: stored states that only a write around them can produce.
    let repair = scenarios::repair::prepare(&clients.admin)
        .await
        .map_err(|e| format!("preparing the repair fixture failed: {e:#}"));
    prepare_probes(&clients.admin).await?;
    scenarios::mutate_condition::prepare(&clients.admin).await?;

    // The API server presents its webhook client certificate (start.sh's AdmissionConfiguration):
    // every scenario runs against a webhook that answers nobody else.
    let client_ca = std::path::PathBuf::from(plane.var("WFE_WEBHOOK_CLIENT_CA")?);
    let webhook = Webhook::start(clients.webhook.clone(), Some(client_ca)).await?;
    webhook.register(&clients.admin).await?;
    wait_effective(&clients).await?;
    Ok(Ctx {
        guarded_since: jiff::Timestamp::now(),
        clients,
        users,
        webhook,
        repair,
        access: Access {
            url: url.to_string(),
            ca_file: ca.to_string(),
            webhook_token: token("WEBHOOK")?.to_string(),
            operator_token: token("OPERATOR")?.to_string(),
            admin_kubeconfig: plane.var("KUBECONFIG")?.to_string(),
            kubectl: std::path::Path::new(plane.var("WFE_K8S_BIN_DIR")?).join("kubectl"),
            audit_log: plane.var("KUBE_AUDIT_LOG")?.into(),
        },
    })
}

async fn prepare_probes(admin: &kube::Client) -> Result<()> {
    let api = cluster::wfe_api(admin, NS);
    cluster::create_wfe(admin, NS, PROBE_TERMINAL).await?;
    cluster::create_wfe(admin, NS, PROBE_PENDING).await?;
    cluster::put_status(&api, PROBE_TERMINAL, |s| {
        s.insert("phase".into(), json!("Completed"));
    })
    .await
    .context("cannot write the probe's status")?;
    Ok(())
}

/// The API server picks up new webhook configurations asynchronously: wait until a dry-run of
/// an illegal move is denied by us and a dry-run of a legal one comes back mutated.
async fn wait_effective(clients: &Clients) -> Result<()> {
    let api = cluster::wfe_api(&clients.controller, NS);
    let limit = Duration::from_secs(30);
    cluster::eventually("the validating webhook to deny", limit, || {
        let api = api.clone();
        async move {
            let dry = PostParams {
                dry_run: true,
                ..PostParams::default()
            };
            let result = cluster::put_status_with(&api, PROBE_TERMINAL, &dry, &mut |s| {
                s.insert("phase".into(), json!("Running"));
            })
            .await;
            Ok(matches!(result, Err(kube::Error::Api(e))
                if e.message.contains("illegal phase transition Completed → Running"))
            .then_some(()))
        }
    })
    .await?;
    cluster::eventually("the mutating webhook to stamp startTime", limit, || {
        let api = api.clone();
        async move {
            let answer =
                cluster::dry_merge_status(&api, PROBE_PENDING, json!({"phase": "Running"})).await?;
            Ok(cluster::status_of(&answer)
                .contains_key("startTime")
                .then_some(()))
        }
    })
    .await
}
