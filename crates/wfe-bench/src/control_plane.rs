//! The local control plane (tests/e2e/control-plane): build.sh, start.sh and stop.sh driven
//! from Rust. `ControlPlane` is a drop guard: stop.sh runs when it goes out of scope, on
//! success, failure and panic alike. Used by the benchmark's kube-apiserver rows, the e2e suite
//! and the chart's cluster cases.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

fn scripts(repo: &Path) -> PathBuf {
    repo.join("tests/e2e/control-plane")
}

/// Runs `repo`'s build.sh (instant when cached) and returns the directory of the binaries.
pub fn build(repo: &Path) -> Result<(PathBuf, Duration)> {
    let started = Instant::now();
    let dir = run_build_script(&scripts(repo).join("build.sh"))?;
    Ok((dir, started.elapsed()))
}

/// build.sh for another Kubernetes release (`v1.32.13`), cached beside the default one.
pub fn build_release(repo: &Path, version: &str) -> Result<PathBuf> {
    run_build_script_with(
        &scripts(repo).join("build.sh"),
        &[("WFE_KUBE_VERSION", version)],
    )
}

/// Runs one of the project's build scripts (control plane, helm), which print what they built
/// or found in the cache on their last line.
pub fn run_build_script(script: &Path) -> Result<PathBuf> {
    run_build_script_with(script, &[])
}

fn run_build_script_with(script: &Path, env: &[(&str, &str)]) -> Result<PathBuf> {
    let out = Command::new(script)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed ({})", script.display(), out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .with_context(|| format!("{} printed nothing", script.display()))?;
    Ok(PathBuf::from(last.trim()))
}

pub struct ControlPlane {
    /// Which suite runs it (`e2e`, `chart`, `bench`): its messages, temp dir and keep variable.
    label: &'static str,
    scripts: PathBuf,
    /// Removed on drop unless WFE_<LABEL>_KEEP=1 (logs stay there for inspection).
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    env: HashMap<String, String>,
    stopped: bool,
}

impl ControlPlane {
    /// start.sh in a fresh temp dir, with this process as the owner its watchdog follows.
    /// Its output goes to `start.log` there; a failure carries the end of it.
    pub fn start(repo: &Path, bin_dir: &Path, label: &'static str) -> Result<Self> {
        Self::launch(repo, bin_dir, label, false)
    }

    /// [`Self::start`] with the audit log on (`KUBE_AUDIT_LOG` names it).
    pub fn start_audited(repo: &Path, bin_dir: &Path, label: &'static str) -> Result<Self> {
        Self::launch(repo, bin_dir, label, true)
    }

    fn launch(repo: &Path, bin_dir: &Path, label: &'static str, audit: bool) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("wfe-{label}."))
            .tempdir()
            .context("cannot create the work directory")?;
        let path = dir.path().to_path_buf();
        // The guard exists before start.sh runs, so a half-started plane is stopped too.
        let mut plane = ControlPlane {
            label,
            scripts: scripts(repo),
            dir: Some(dir),
            path: path.clone(),
            env: HashMap::new(),
            stopped: false,
        };
        let log = std::fs::File::create(path.join("start.log")).context("start.log")?;
        let status = Command::new(plane.scripts.join("start.sh"))
            .arg(&path)
            .env("WFE_K8S_BIN_DIR", bin_dir)
            // start.sh's watchdog stops the plane if this process dies without Drop.
            .env("WFE_OWNER_PID", std::process::id().to_string())
            .env("WFE_AUDIT", if audit { "1" } else { "0" })
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("start.log")?)
            .stderr(log)
            .status()
            .context("cannot run start.sh")?;
        if !status.success() {
            let log = std::fs::read_to_string(path.join("start.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            bail!(
                "start.sh failed ({status}):\n{}",
                lines[lines.len().saturating_sub(15)..].join("\n")
            );
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
            eprintln!("{}: kept the work directory {}", self.label, kept.display());
        }
    }

    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let started = Instant::now();
        match Command::new(self.scripts.join("stop.sh"))
            .arg(&self.path)
            .stdin(Stdio::null())
            .status()
        {
            Ok(s) if s.success() => eprintln!(
                "{}: control plane stopped in {:.1} s",
                self.label,
                started.elapsed().as_secs_f64()
            ),
            Ok(s) => eprintln!("{}: stop.sh failed ({s})", self.label),
            Err(e) => eprintln!("{}: cannot run stop.sh: {e}", self.label),
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
        let keep = format!("WFE_{}_KEEP", self.label.to_uppercase());
        if std::env::var(keep).as_deref() == Ok("1") {
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

/// Waits until the API server reports the CRD `name` Established, i.e. serves its kinds.
/// Errors reading it are retried until `within` is over, then reported.
pub async fn wait_established(admin: &kube::Client, name: &str, within: Duration) -> Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: kube::Api<CustomResourceDefinition> = kube::Api::all(admin.clone());
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let last_error = match api.get(name).await {
            Ok(crd) => {
                let established = crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                if established {
                    return Ok(());
                }
                None
            }
            Err(e) => Some(e),
        };
        if tokio::time::Instant::now() >= deadline {
            match last_error {
                Some(e) => bail!("CRD {name} not Established after {within:?}; last error: {e}"),
                None => bail!("CRD {name} not Established after {within:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
