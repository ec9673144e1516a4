//! The webhook binary run on this machine with the installed release's flags, and the probes
//! and polls the cases wait on.

use super::*;

/// Args of the installed Deployment, with the in-cluster addresses and paths replaced by
/// local ones (everything else — the certificate mode, names, log flags — as the chart set it).
pub(crate) fn local_args(stored_deployment: &Value, replace: &[(&str, String)]) -> Vec<String> {
    let args = stored_deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args");
    let mut out = Vec::new();
    for a in args {
        let a = a.as_str().expect("string arg");
        let flag = a.split('=').next().unwrap_or_default();
        match replace.iter().find(|(f, _)| *f == flag) {
            Some((f, v)) => out.push(format!("{f}={v}")),
            None => out.push(a.to_string()),
        }
    }
    for (f, _) in replace {
        assert!(
            args.iter()
                .any(|a| a.as_str().is_some_and(|a| a.starts_with(&format!("{f}=")))),
            "the chart passes no {f}: {args:?}"
        );
    }
    out
}

/// The webhook of the installed release run here as its pod would run: the stored
/// Deployment's args with `listen` and a probe port of its own, the stored policy in `dir`, as
/// the service account. `more` replaces further flags (in-pod paths).
pub(super) fn start_release_pod(
    cluster: &Cluster,
    manifest: &Manifests,
    dir: &Path,
    name: &str,
    listen: SocketAddr,
    more: &[(&str, String)],
) -> (Webhook, Vec<String>) {
    let policy = dir.join(format!("policy-{name}.yaml"));
    std::fs::write(&policy, stored_policy(cluster)).expect("write policy");
    let probe = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let deployment = cluster
        .stored(manifest.one("Deployment"))
        .expect("Deployment");
    let mut replace = vec![
        ("--listen", listen.to_string()),
        ("--probe-listen", probe.to_string()),
        ("--config", policy.display().to_string()),
    ];
    replace.extend(more.iter().cloned());
    let args = local_args(&deployment, &replace);
    let kubeconfig = cluster.write_sa_kubeconfig(dir);
    let log = dir.join(format!("webhook-{name}.log"));
    (Webhook::start(&args, &kubeconfig, log, probe), args)
}

pub(crate) fn free_port() -> u16 {
    wfe_bench::process::free_port().expect("free port")
}

/// The webhook binary as a child process; killed on drop.
pub(crate) struct Webhook {
    child: Child,
    log: PathBuf,
}

impl Webhook {
    pub(crate) fn start(
        args: &[String],
        kubeconfig: &Path,
        log: PathBuf,
        probe: SocketAddr,
    ) -> Self {
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_wfe-admission"))
            .args(args)
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            // What the downward API gives the pod.
            .env("POD_NAMESPACE", NS)
            .env("POD_NAME", "wfe-admission-local-0")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn wfe-admission");
        let mut webhook = Webhook { child, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = webhook.child.try_wait() {
                panic!("the webhook exited ({status}):\n{}", webhook.log_text());
            }
            if http_status(probe, "/readyz") == Some(200) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the webhook is not ready after 30 s:\n{}",
                webhook.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        webhook
    }

    /// SIGTERM, as the kubelet sends when the pod is deleted; the webhook then serves out its
    /// shutdown delay and grace.
    pub(super) fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -TERM {pid}");
    }

    /// Waits up to `secs` for the process to exit; whether it exited with success.
    pub(super) fn wait_exit(&mut self, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            assert!(
                Instant::now() < deadline,
                "the webhook did not stop within {secs} s:
{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status code of a plain HTTP GET (probes), None when nothing answers.
fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
}

pub(super) fn poll<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub(super) fn ca_bundles(cluster: &Cluster, manifest: &Manifests) -> Vec<Option<String>> {
    [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ]
    .iter()
    .map(|kind| {
        let stored = cluster.stored(manifest.one(kind)).expect("stored");
        stored["webhooks"][0]["clientConfig"]["caBundle"]
            .as_str()
            .map(String::from)
    })
    .collect()
}
