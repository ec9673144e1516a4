//! The real binary as a child process: time from spawn to `/readyz` 200, idle RSS, and peak RSS
//! (VmHWM) under load.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use super::load::{self, LoadResult, LoadSpec, Req, Target};
use wfe_admission::certgen;

#[derive(Debug, Clone, Default)]
pub struct ProcessFigures {
    pub ready_ms: f64,
    pub idle_rss_kib: u64,
    pub peak_rss_kib: u64,
    pub load: LoadResult,
    pub binary: PathBuf,
}

/// Finds `wfe-admission` next to this executable; under `cargo run` it is built first so that
/// the figures are for the current source.
pub fn server_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow!("no directory for {}", exe.display()))?;
    let bin = dir.join("wfe-admission");
    if let Some(cargo) = std::env::var_os("CARGO") {
        // Same profile as this binary: .../target/<profile>/wfe-bench.
        let release = dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = std::process::Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "wfe-admission",
            "--bin",
            "wfe-admission",
        ]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().context("cargo build --bin wfe-admission")?;
        if !status.success() {
            return Err(anyhow!("cargo build --bin wfe-admission failed"));
        }
    }
    if !bin.exists() {
        return Err(anyhow!(
            "{} not found: run `cargo build --release` first or pass --server-bin",
            bin.display()
        ));
    }
    Ok(bin)
}

/// A loopback port nothing listens on at the moment (bound, read and released), for a child
/// process to bind. The tests that start the binary use it too.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

async fn readyz(addr: SocketAddr) -> bool {
    let Ok(mut tcp) = TcpStream::connect(addr).await else {
        return false;
    };
    let request = b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if tcp.write_all(request).await.is_err() {
        return false;
    }
    let mut buf = Vec::with_capacity(256);
    let _ = tcp.read_to_end(&mut buf).await;
    buf.starts_with(b"HTTP/1.1 200")
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

/// Starts the binary, waits for ready, measures idle RSS, loads it with `mix`, reads VmHWM.
pub async fn measure(
    binary: &Path,
    spec: &LoadSpec,
    mix: Arc<Vec<Req>>,
) -> anyhow::Result<ProcessFigures> {
    let dir = tempfile_dir()?;
    let bundle = super::inproc::bundle()?;
    certgen::write(&bundle, &dir)?;
    let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let (listen, probe) = (loopback(free_port()?), loopback(free_port()?));
    let mut cmd = Command::new(binary);
    cmd.arg("serve")
        .arg("--tls-cert")
        .arg(dir.join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.join("tls.key"))
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--probe-listen")
        .arg(probe.to_string())
        .arg("--no-events")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let started = Instant::now();
    let child = Guard(
        cmd.spawn()
            .with_context(|| format!("spawn {}", binary.display()))?,
    );
    let pid = child.0.id().ok_or_else(|| anyhow!("no pid"))?;
    let ready_ms = loop {
        if readyz(probe).await {
            break started.elapsed().as_secs_f64() * 1e3;
        }
        if started.elapsed() > Duration::from_secs(10) {
            return Err(anyhow!("{} not ready after 10 s", binary.display()));
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (idle_rss_kib, _) =
        rss_kib(pid).ok_or_else(|| anyhow!("cannot read /proc/{pid}/status"))?;
    let target = Target::new(listen, &bundle.ca_cert)?;
    let result = load::run(&target, spec, mix).await?;
    let (_, peak_rss_kib) =
        rss_kib(pid).ok_or_else(|| anyhow!("cannot read /proc/{pid}/status"))?;
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ProcessFigures {
        ready_ms,
        idle_rss_kib,
        peak_rss_kib,
        load: result,
        binary: binary.to_path_buf(),
    })
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("wfe-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
