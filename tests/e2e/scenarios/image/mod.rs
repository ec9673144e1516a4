//! The container image as a cluster would run it: image/build.sh builds it with buildah from
//! image/Dockerfile for amd64 and arm64, each config says what the chart relies on, and each
//! root filesystem, unpacked and started (amd64 with chroot as the chart's user, arm64 under
//! qemu-user), serves the webhook and records the Event through the real API server with
//! nothing but the binary inside.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use wfe_admission::certgen::{self, Validity};

use crate::cluster;
use crate::harness::{Ctx, NS};

mod oci;
mod server;

use oci::{Image, check_dependency_list, files_under, json_file, top_index};
use server::{Runner, Server};
use wfe_bench::process::free_port;

/// The chart's `podSecurityContext` user and group.
const CHART_USER: &str = "65532:65532";

pub async fn serves_from_an_empty_root(ctx: Arc<Ctx>) -> Result<()> {
    let work = tempfile::tempdir()?;
    let work_dir = work.path().to_path_buf();
    let (archive, again) = tokio::task::spawn_blocking({
        let work = work_dir.clone();
        move || Ok::<_, anyhow::Error>((build(&work.join("out"))?, build(&work.join("again"))?))
    })
    .await??;
    // Reproducible: the image's time is the commit's, and the binaries are cached builds.
    ensure!(
        top_index(&archive)? == top_index(&again)?,
        "two builds of one commit gave different images"
    );

    let layout = work_dir.join("layout");
    run(Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(mkdir(&layout)?))?;
    let images = Image::read_all(&layout)?;
    let platforms: BTreeSet<&str> = images.iter().map(|i| i.arch.as_str()).collect();
    ensure!(
        platforms == BTreeSet::from(["amd64", "arm64"]),
        "platforms: {platforms:?}"
    );
    // What the chart mounts: the serving pair and (here, as there is no service account) a
    // kubeconfig with the webhook's identity. Only these are added to the unpacked images.
    let pair = certgen::generate(&["127.0.0.1".to_string()], Validity::days(1))?;
    for image in &images {
        let arch = &image.arch;
        image.check_config()?;
        let root = mkdir(&work_dir.join(format!("rootfs-{arch}")))?;
        image.unpack(&root)?;
        let files = files_under(&root)?;
        ensure!(
            files == BTreeSet::from(["wfe-admission".to_string()]),
            "linux/{arch}: the image holds more than the binary: {files:?}"
        );
        // The host's binutils read only its own architecture; build.sh installed the cross ones.
        let objcopy = if arch == "arm64" {
            "aarch64-linux-gnu-objcopy"
        } else {
            "objcopy"
        };
        check_dependency_list(&root.join("wfe-admission"), objcopy, &work_dir)
            .with_context(|| format!("linux/{arch}"))?;
        let certs = mkdir(&root.join("certs"))?;
        std::fs::write(certs.join("tls.crt"), &pair.cert)?;
        std::fs::write(certs.join("tls.key"), &pair.key)?;
        let kube = mkdir(&root.join("kube"))?;
        ctx.access
            .write_kubeconfig(&kube.join("config"), &ctx.access.webhook_token)?;
        // amd64 as a runtime would start it: in its own root, as the chart's user. arm64 under
        // qemu-user (build.sh installed it), which needs the host's root to find the binary.
        let runner = if arch == "amd64" {
            Runner::Chroot
        } else {
            Runner::Qemu
        };
        serve_and_judge(&ctx, &root, runner, &image.env()?, &pair.ca_cert, &work_dir)
            .await
            .with_context(|| format!("linux/{arch}"))?;
    }
    Ok(())
}

/// Starts the unpacked image's server; /readyz, an illegal move refused over TLS, its Event in
/// the API server, /metrics, then SIGTERM and a clean exit with JSON logs.
async fn serve_and_judge(
    ctx: &Ctx,
    root: &Path,
    runner: Runner,
    env: &[(String, String)],
    ca_pem: &str,
    work: &Path,
) -> Result<()> {
    let (port, probe_port) = (free_port()?, free_port()?);
    let mut server = Server::start(root, runner, env, port, probe_port, work)?;
    let https = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes())?)
        .build()?;
    let plain = reqwest::Client::new();
    let probe = format!("http://127.0.0.1:{probe_port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        server.check_running()?;
        let ready = plain.get(format!("{probe}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the image's /readyz did not answer 200 within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let name = ctx.create_in("image", &["Running", "Completed"]).await?;
    let stored = ctx.admin().get(&name).await?;
    let review = illegal_review(&stored)?;
    let answer: Value = https
        .post(format!("https://127.0.0.1:{port}/validate"))
        .json(&review)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let response = &answer["response"];
    ensure!(
        response["allowed"] == json!(false) && response["status"]["code"] == json!(403),
        "Completed → Running must be refused by the image's webhook: {answer}"
    );
    // The Event needs the kube client inside the empty root: TLS to the API server with the
    // kubeconfig's CA, no system trust store, no resolver configuration.
    cluster::wait_events(
        &ctx.clients.admin,
        NS,
        "IllegalPhaseTransition",
        &name,
        Duration::from_secs(30),
    )
    .await?;
    let metrics = plain
        .get(format!("{probe}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    ensure!(
        metrics.contains("wfe_admission_requests_total"),
        "no request metrics from the image: {metrics}"
    );

    let log = server.terminate()?;
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    ensure!(!lines.is_empty(), "the image's server logged nothing");
    for line in &lines {
        serde_json::from_str::<Value>(line)
            .with_context(|| format!("a log line of the image is not JSON: {line}"))?;
    }
    Ok(())
}

/// image/build.sh with its output in `out`; the OCI archive.
fn build(out: &Path) -> Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("image/build.sh");
    let output = Command::new("bash")
        .arg(&script)
        .env("WFE_IMAGE_OUT", out)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    ensure!(
        output.status.success(),
        "image/build.sh failed: {}",
        output.status
    );
    let stdout = String::from_utf8(output.stdout)?;
    let path = stdout
        .lines()
        .last()
        .context("image/build.sh printed no archive path")?;
    Ok(PathBuf::from(path))
}

/// The stored object moved Completed → Running by the controller, as the API server would
/// send it to /validate.
fn illegal_review(stored: &kube::core::DynamicObject) -> Result<Value> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/update-completed-to-running.json");
    let mut review = json_file(&path)?;
    let old = serde_json::to_value(stored)?;
    ensure!(old["status"]["phase"] == "Completed", "stored: {old}");
    let mut new = old.clone();
    new["status"]["phase"] = json!("Running");
    let request = &mut review["request"];
    request["name"] = old["metadata"]["name"].clone();
    request["namespace"] = json!(NS);
    request["oldObject"] = old;
    request["object"] = new;
    Ok(review)
}

fn mkdir(path: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(path)?;
    Ok(path.to_path_buf())
}

fn run(cmd: &mut Command) -> Result<()> {
    let ran = super::Ran::run(cmd)?;
    ensure!(ran.code == Some(0), "{cmd:?} failed: {}", ran.stderr);
    Ok(())
}
