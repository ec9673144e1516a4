//! The unpacked image's server as a runtime would start it, and its end.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use super::{CHART_USER, run};
use crate::harness::NS;

/// How the unpacked image is run.
#[derive(Clone, Copy)]
pub(super) enum Runner {
    /// `chroot` into it (the host's architecture).
    Chroot,
    /// qemu-user for aarch64, with the paths of the host.
    Qemu,
}

/// The image's server, its stdout and stderr in one log file.
pub(super) struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    pub(super) fn start(
        root: &Path,
        runner: Runner,
        env: &[(String, String)],
        port: u16,
        probe_port: u16,
        work: &Path,
    ) -> Result<Self> {
        let log = work.join(format!(
            "image-server-{}.log",
            root.file_name().unwrap_or_default().to_string_lossy()
        ));
        let out = std::fs::File::create(&log)?;
        let (mut cmd, inside) = match runner {
            // As root (CI): chroot and drop to the chart's user. Otherwise an unprivileged user
            // namespace lends the chroot, with the caller's own user inside.
            Runner::Chroot if is_root()? => {
                let mut c = Command::new("chroot");
                c.arg(format!("--userspec={CHART_USER}")).arg(root);
                (c, PathBuf::from("/"))
            }
            Runner::Chroot => {
                let mut c = Command::new("unshare");
                c.args(["--user", "--map-root-user", "chroot"]).arg(root);
                (c, PathBuf::from("/"))
            }
            Runner::Qemu => (Command::new("qemu-aarch64-static"), root.to_path_buf()),
        };
        let path = |p: &str| inside.join(p).display().to_string();
        let child = cmd
            .arg(path("wfe-admission"))
            .args([
                "serve".to_string(),
                format!("--listen=127.0.0.1:{port}"),
                format!("--probe-listen=127.0.0.1:{probe_port}"),
                format!("--tls-cert={}", path("certs/tls.crt")),
                format!("--tls-key={}", path("certs/tls.key")),
                format!("--kubeconfig={}", path("kube/config")),
                "--shutdown-delay=0s".to_string(),
                "--shutdown-grace=5s".to_string(),
            ])
            // The image's environment (its PATH also finds chroot, unshare and qemu here).
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("POD_NAMESPACE", NS)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {cmd:?}"))?;
        Ok(Self { child, log })
    }

    pub(super) fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "the image's server exited ({status}):\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        Ok(())
    }

    /// SIGTERM, as the kubelet sends it; the log once it exited cleanly.
    pub(super) fn terminate(&mut self) -> Result<String> {
        run(Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string()))?;
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "the image's server did not stop within 15 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = std::fs::read_to_string(&self.log)?;
        ensure!(status.success(), "exit after SIGTERM: {status}\n{log}");
        Ok(log)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_root() -> Result<bool> {
    let out = Command::new("id").arg("-u").output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}
