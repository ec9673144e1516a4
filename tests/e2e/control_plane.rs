//! The local control plane: build.sh, start.sh and stop.sh driven from Rust. `ControlPlane` is a
//! drop guard: stop.sh runs when it goes out of scope, on success, failure and panic alike.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/control-plane")
}

/// Runs build.sh (instant when cached) and returns the directory of the binaries.
pub fn build() -> Result<(PathBuf, Duration)> {
    let started = Instant::now();
    let out = Command::new(scripts().join("build.sh"))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run build.sh")?;
    if !out.status.success() {
        bail!("build.sh failed ({})", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .context("build.sh printed no directory")?;
    Ok((PathBuf::from(dir.trim()), started.elapsed()))
}

pub struct ControlPlane {
    /// Removed on drop unless WFE_E2E_KEEP=1 (logs stay there for inspection).
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    env: HashMap<String, String>,
    stopped: bool,
}

impl ControlPlane {
    /// start.sh in a fresh temp dir, with this process as the owner its watchdog follows.
    pub fn start(bin_dir: &Path) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("wfe-e2e.")
            .tempdir()
            .context("cannot create the work directory")?;
        let path = dir.path().to_path_buf();
        // The guard exists before start.sh runs, so a half-started plane is stopped too.
        let mut plane = ControlPlane {
            dir: Some(dir),
            path: path.clone(),
            env: HashMap::new(),
            stopped: false,
        };
        let status = Command::new(scripts().join("start.sh"))
            .arg(&path)
            .env("WFE_K8S_BIN_DIR", bin_dir)
            .env("WFE_OWNER_PID", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .context("cannot run start.sh")?;
        if !status.success() {
            bail!("start.sh failed ({status})");
        }
        plane.env = read_env(&path)?;
        Ok(plane)
    }

    pub fn var(&self, key: &str) -> Result<&str> {
        self.env
            .get(key)
            .map(String::as_str)
            .with_context(|| format!("start.sh's env file has no {key}"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last lines of the kube-apiserver log, for failure reports.
    pub fn apiserver_log_tail(&self, lines: usize) -> String {
        let log = self.path.join("logs/kube-apiserver.log");
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn keep(&mut self) {
        if let Some(dir) = self.dir.take() {
            let kept = dir.keep();
            eprintln!("e2e: kept the work directory {}", kept.display());
        }
    }

    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let started = Instant::now();
        match Command::new(scripts().join("stop.sh"))
            .arg(&self.path)
            .stdin(Stdio::null())
            .status()
        {
            Ok(s) if s.success() => eprintln!(
                "e2e: control plane stopped in {:.1} s",
                started.elapsed().as_secs_f64()
            ),
            Ok(s) => eprintln!("e2e: stop.sh failed ({s})"),
            Err(e) => eprintln!("e2e: cannot run stop.sh: {e}"),
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
        if std::env::var("WFE_E2E_KEEP").as_deref() == Ok("1") {
            self.keep();
        }
    }
}

/// The env file is shell (`export K=%q`): let bash read it and hand back NUL-separated pairs.
fn read_env(dir: &Path) -> Result<HashMap<String, String>> {
    let out = Command::new("bash")
        .args(["-c", r#"set -a; . "$1/env"; env -0"#, "bash"])
        .arg(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .output()
        .context("cannot read the env file")?;
    if !out.status.success() {
        bail!(
            "cannot source {}/env: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out
        .stdout
        .split(|b| *b == 0)
        .filter_map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            let (k, v) = entry.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect())
}
