//! The real `wfe-admission serve` binary on loopback ports, with a certificate pair in a temp
//! dir laid out like a Secret volume, JSON logs captured to a file, and SIGTERM sent the way the
//! kubelet does (`kill -TERM`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::support::{bundle, client_builder, write_secret_volume};

pub struct Webhook {
    child: Child,
    pub addr: SocketAddr,
    pub probe_addr: SocketAddr,
    pub ca: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    wfe_bench::process::free_port().expect("a free loopback port")
}

impl Webhook {
    /// Starts the binary and waits (bounded) until `/readyz` answers 200.
    pub async fn start(extra: &[&str]) -> Self {
        crate::support::install_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let b = bundle();
        write_secret_volume(dir.path(), 1, &b);
        let (port, probe_port) = (free_port(), free_port());
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let probe_addr = SocketAddr::from(([127, 0, 0, 1], probe_port));
        let log = dir.path().join("webhook.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_wfe-admission"))
            .arg("serve")
            .arg("--tls-cert")
            .arg(dir.path().join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.path().join("tls.key"))
            .args(["--listen", &addr.to_string()])
            .args(["--probe-listen", &probe_addr.to_string()])
            .args(["--no-events", "--log-format", "json", "--log", "info"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("the webhook binary starts");
        let mut webhook = Self {
            child,
            addr,
            probe_addr,
            ca: b.ca_cert,
            log,
            _dir: dir,
        };
        webhook.wait_ready().await;
        webhook
    }

    async fn wait_ready(&mut self) {
        let url = format!("http://{}/readyz", self.probe_addr);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the webhook exited with {status}:\n{}", self.log());
            }
            if let Ok(resp) = reqwest::get(&url).await
                && resp.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the webhook did not become ready:\n{}", self.log());
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn base(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// A keep-alive client that trusts this webhook's CA (`http1` forces HTTP/1.1, else h2).
    pub fn client(&self, http1: bool) -> reqwest::Client {
        let builder = client_builder(&self.ca);
        let builder = if http1 { builder.http1_only() } else { builder };
        builder.build().expect("client")
    }

    /// Resident memory of the process, from /proc.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    pub fn terminate(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -TERM {} failed", self.pid());
    }

    /// Waits (bounded) for the process to exit.
    pub async fn wait_exit(&mut self, bound: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < bound {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The JSON log lines, parsed.
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
