//! The write window: legal status writes with the controller's identity keep going through
//! `helm install`, `helm upgrade` (a new policy and a new pod template, so a rollout) and
//! `helm uninstall`, and none may be refused. Webhook processes stand in for the pods, and a
//! loopback forwarder for the Service: it forwards while the Service object exists, to the pods
//! that are ready and not terminating, as kube-proxy does.

use super::*;
use std::net::{Shutdown, TcpListener};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Service;

const PHASES: [&str; 3] = ["install", "upgrade", "uninstall"];
const MIN_WRITES: usize = 50;

/// The Service's stand-in.
struct Front {
    addr: SocketAddr,
    routes: Arc<Mutex<Routes>>,
    stop: Arc<AtomicBool>,
}

#[derive(Default)]
struct Routes {
    service: bool,
    pods: Vec<SocketAddr>,
    next: usize,
    /// The API server's side of every forwarded connection.
    open: Vec<TcpStream>,
}

impl Routes {
    /// Without the Service the API server cannot resolve where to call, kept-alive connections
    /// or not: they are cut too.
    fn set_service(&mut self, up: bool) {
        self.service = up;
        if !up {
            for conn in self.open.drain(..) {
                let _ = conn.shutdown(Shutdown::Both);
            }
        }
    }

    fn pick(&mut self) -> Option<SocketAddr> {
        if !self.service || self.pods.is_empty() {
            return None;
        }
        self.next = (self.next + 1) % self.pods.len();
        Some(self.pods[self.next])
    }
}

impl Front {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the Service stand-in");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let routes = Arc::new(Mutex::new(Routes::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, st) = (Arc::clone(&routes), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let mut routes = r.lock().expect("routes");
                        // No endpoint: the connection is refused, as kube-proxy rejects it.
                        if let (Some(target), Ok(copy)) = (routes.pick(), conn.try_clone()) {
                            routes.open.retain(|c| c.peer_addr().is_ok());
                            routes.open.push(copy);
                            std::thread::spawn(move || forward(conn, target));
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Front { addr, routes, stop }
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    fn edit(&self, f: impl FnOnce(&mut Routes)) {
        f(&mut self.routes.lock().expect("routes"));
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn forward(client: TcpStream, target: SocketAddr) {
    let _ = client.set_nonblocking(false);
    let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) else {
        return;
    };
    let (Ok(mut client_in), Ok(mut server_out)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_in, &mut server_out);
        let _ = server_out.shutdown(Shutdown::Write);
    });
    let (mut server_in, mut client_out) = (server, client);
    let _ = std::io::copy(&mut server_in, &mut client_out);
    let _ = client_out.shutdown(Shutdown::Both);
}

/// Writes and refusals per phase, counted by the phase a write started in.
#[derive(Default)]
struct Tally {
    phase: AtomicUsize,
    writes: [AtomicUsize; 3],
    refused: [AtomicUsize; 3],
    refusals: Mutex<Vec<String>>,
}

impl Tally {
    fn count(&self, phase: usize, result: Result<Value, kube::Error>) {
        self.writes[phase].fetch_add(1, Ordering::Relaxed);
        if let Err(e) = result {
            self.refused[phase].fetch_add(1, Ordering::Relaxed);
            let mut list = self.refusals.lock().expect("refusals");
            if list.len() < 5 {
                list.push(format!("{}: {e}", PHASES[phase]));
            }
        }
    }

    fn writes(&self, phase: usize) -> usize {
        self.writes[phase].load(Ordering::Relaxed)
    }

    fn wait_for(&self, phase: usize, n: usize) {
        poll(
            &format!("{n} writes in the {} phase", PHASES[phase]),
            120,
            || (self.writes(phase) >= n).then_some(()),
        );
    }

    fn line(&self, phase: usize) -> String {
        format!(
            "write-window: {} writes={} refused={}",
            PHASES[phase],
            self.writes(phase),
            self.refused[phase].load(Ordering::Relaxed)
        )
    }
}

/// One status edit of the loop.
type Step<'a> = Box<dyn Fn(&mut Value) + 'a>;

/// kubernaut's controller, over and over: start an execution, report progress, complete it.
/// The start and the completion need the mutating webhook's stamps, so both reach it.
fn write_loop(cluster: &Cluster, controller: &kube::Client, tally: &Tally, stop: &AtomicBool) {
    let sample = sample();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let name = format!("window-{n}");
        create_wfe(cluster, &sample, &name);
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let steps: [Step; 3] = [
            Box::new(|s| {
                s["phase"] = json!("Running");
                s["executionRef"] = json!({"name": format!("job-{n}")});
            }),
            Box::new(|s| {
                s["conditions"] = json!([{"type": "ExecutionCreated", "status": "True",
                    "reason": "Created", "message": "created", "lastTransitionTime": now}]);
            }),
            Box::new(|s| s["phase"] = json!("Completed")),
        ];
        for step in &steps {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let phase = tally.phase.load(Ordering::Relaxed);
            tally.count(phase, put_status(cluster, controller, &name, step));
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Routes to the pods while the Service object exists, following a watch on it as the API
/// server's and kube-proxy's informers do.
fn watch_service(cluster: &Cluster, front: &Front, stop: &AtomicBool) {
    use futures_util::StreamExt;
    use kube::runtime::watcher::{self, Event};
    let services: Api<Service> = Api::namespaced(cluster.admin.clone(), NS);
    let config = watcher::Config::default().fields(&format!("metadata.name={RELEASE}"));
    cluster.block_on(async {
        let mut events = std::pin::pin!(watcher::watcher(services, config));
        while !stop.load(Ordering::Relaxed) {
            let next = tokio::time::timeout(Duration::from_millis(200), events.next()).await;
            let up = match next {
                Ok(Some(Ok(Event::Apply(s) | Event::InitApply(s)))) => {
                    s.metadata.deletion_timestamp.is_none()
                }
                Ok(Some(Ok(Event::Delete(_)))) => false,
                _ => continue,
            };
            front.edit(|r| r.set_service(up));
        }
    });
}

/// One webhook process standing in for a pod of the installed Deployment.
struct Pod {
    webhook: Webhook,
    addr: SocketAddr,
}

fn start_pod(cluster: &Cluster, manifest: &Manifests, dir: &Path, name: &str) -> Pod {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (webhook, _) = start_release_pod(cluster, manifest, dir, name, addr, &[]);
    Pod { webhook, addr }
}

fn failure_policies(cluster: &Cluster, manifest: &Manifests) -> Vec<String> {
    [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ]
    .iter()
    .map(|kind| {
        cluster
            .stored(manifest.one(kind))
            .and_then(|c| c["webhooks"][0]["failurePolicy"].as_str().map(String::from))
            .unwrap_or_else(|| "(none)".into())
    })
    .collect()
}

/// The webhooks guard: an illegal move is denied by the validating webhook.
fn guard_holds(cluster: &Cluster, controller: &kube::Client, name: &str) {
    create_wfe(cluster, &sample(), name);
    for phase in ["Running", "Completed"] {
        put_status(cluster, controller, name, |s| s["phase"] = json!(phase))
            .unwrap_or_else(|e| panic!("{name}: → {phase}: {e}"));
    }
    let (code, message) = denial(put_status(cluster, controller, name, |s| {
        s["phase"] = json!("Running")
    }));
    assert_eq!(code, 403, "{message}");
    assert!(
        message.contains("illegal phase transition Completed → Running"),
        "{message}"
    );
}

fn logs(pods: &[Pod]) -> String {
    pods.iter()
        .map(|p| p.webhook.log_text())
        .collect::<Vec<_>>()
        .join("\n----\n")
}

/// The CRD as kubernaut installs it, outside this release (the earlier cases leave it so).
fn ensure_crd(cluster: &Cluster) {
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.admin.clone());
    let name = "workflowexecutions.kubernaut.ai";
    if cluster
        .block_on(crds.get_opt(name))
        .expect("read CRD")
        .is_none()
    {
        let text = std::fs::read_to_string(chart_dir().join("files/crd.yaml")).expect("crd.yaml");
        let crd: CustomResourceDefinition = serde_saphyr::from_str(&text).expect("parse CRD");
        cluster
            .block_on(crds.create(&PostParams::default(), &crd))
            .expect("create CRD");
    }
    cluster
        .block_on(control_plane::wait_established(
            &cluster.admin,
            name,
            Duration::from_secs(30),
        ))
        .expect("CRD established");
}

pub(super) fn install_upgrade_and_uninstall_refuse_no_write(ctx: &mut Ctx) {
    let (helm, cluster) = ctx.cluster();
    let cluster: &Cluster = cluster;
    ensure_crd(cluster);
    let front = Front::start();
    let tally = Tally::default();
    let stop = AtomicBool::new(false);
    let controller = cluster.client_with_token("CONTROLLER");
    std::thread::scope(|s| {
        s.spawn(|| watch_service(cluster, &front, &stop));
        s.spawn(|| write_loop(cluster, &controller, &tally, &stop));
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            phases(cluster, helm, &front, &tally, &controller)
        }));
        stop.store(true, Ordering::Relaxed);
        if let Err(panic) = outcome {
            resume_unwind(panic);
        }
    });
    for phase in 0..PHASES.len() {
        println!("{}", tally.line(phase));
    }
    let refusals = tally.refusals.lock().expect("refusals").clone();
    for phase in 0..PHASES.len() {
        assert!(tally.writes(phase) >= MIN_WRITES, "{}", tally.line(phase));
        assert_eq!(
            tally.refused[phase].load(Ordering::Relaxed),
            0,
            "{}: {refusals:#?}",
            tally.line(phase)
        );
    }
}

fn phases(cluster: &Cluster, helm: &Helm, front: &Front, tally: &Tally, controller: &kube::Client) {
    let dir = cluster.workdir("window");
    tally.wait_for(0, 5);
    let values = json!({"webhook": {"url": front.url(), "timeoutSeconds": 5}});
    let mut release = cluster.install(helm, &values);
    let manifest = release.manifest();
    assert_eq!(
        failure_policies(cluster, &manifest),
        ["Ignore", "Ignore"],
        "a fresh install fails open until a webhook answers"
    );
    let mut pods = Vec::new();
    for name in ["a", "b"] {
        let pod = start_pod(cluster, &manifest, &dir, name);
        front.edit(|r| r.pods.push(pod.addr));
        pods.push(pod);
    }
    poll("both configurations armed", 60, || {
        (failure_policies(cluster, &manifest) == ["Fail", "Fail"]).then_some(())
    });
    assert!(
        logs(&pods).contains("armed: the webhook answers where the API server calls it"),
        "no pod logged that it armed the configurations:\n{}",
        logs(&pods)
    );
    guard_holds(cluster, controller, "window-guard-install");
    tally.wait_for(0, MIN_WRITES);

    tally.phase.store(1, Ordering::Relaxed);
    let before = cluster
        .stored(manifest.one("Deployment"))
        .expect("Deployment");
    release.upgrade(&[
        "--set",
        "podAnnotations.window=upgraded",
        "--set-json",
        r#"policy.conditions.owners.WindowChecked=["controller"]"#,
    ]);
    assert_eq!(
        failure_policies(cluster, &manifest),
        ["Fail", "Fail"],
        "helm upgrade disarmed the configurations"
    );
    let after = cluster
        .stored(manifest.one("Deployment"))
        .expect("Deployment");
    let template = |d: &Value| d["spec"]["template"]["metadata"]["annotations"].clone();
    assert_ne!(template(&before), template(&after), "no new pod template");
    assert!(
        stored_policy(cluster).contains("WindowChecked"),
        "no new policy"
    );
    // maxSurge 1, maxUnavailable 0: a new pod is ready before an old one goes.
    let old: Vec<Pod> = std::mem::take(&mut pods);
    for (mut old, name) in old.into_iter().zip(["c", "d"]) {
        let pod = start_pod(cluster, &manifest, &dir, name);
        front.edit(|r| r.pods.push(pod.addr));
        pods.push(pod);
        front.edit(|r| r.pods.retain(|p| *p != old.addr));
        old.webhook.terminate();
        assert!(old.webhook.wait_exit(60), "{}", old.webhook.log_text());
    }
    guard_holds(cluster, controller, "window-guard-upgrade");
    tally.wait_for(1, MIN_WRITES);

    tally.phase.store(2, Ordering::Relaxed);
    release.uninstall();
    // The Deployment is gone: its pods get SIGTERM.
    for pod in &mut pods {
        front.edit(|r| r.pods.retain(|p| *p != pod.addr));
        pod.webhook.terminate();
    }
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        assert!(
            cluster.stored(manifest.one(kind)).is_none(),
            "{kind} survived helm uninstall"
        );
    }
    tally.wait_for(2, MIN_WRITES);
    for pod in &mut pods {
        assert!(pod.webhook.wait_exit(60), "{}", pod.webhook.log_text());
    }
}
