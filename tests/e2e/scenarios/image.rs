//! The container image as a cluster would run it: image/build.sh builds it with buildah from
//! image/Dockerfile for amd64 and arm64, each config says what the chart relies on, and each
//! root filesystem, unpacked and started (amd64 with chroot as the chart's user, arm64 under
//! qemu-user), serves the webhook and records the Event through the real API server with
//! nothing but the binary inside.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use wfe_admission::certgen::{self, Validity};

use crate::cluster;
use crate::harness::{Ctx, NS};

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
        std::fs::write(kube.join("config"), kubeconfig(&ctx)?)?;
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

/// The dependency list cargo auditable embeds (what image scanners read): the binary's own
/// crates at Cargo.lock's versions, none of the test tree's.
fn check_dependency_list(binary: &Path, objcopy: &str, work: &Path) -> Result<()> {
    let section = work.join("dep-v0.zlib");
    run(Command::new(objcopy)
        .arg(format!("--dump-section=.dep-v0={}", section.display()))
        .arg(binary)
        .arg(work.join("objcopy-out")))?;
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::ZlibDecoder::new(std::fs::File::open(&section)?),
        &mut text,
    )
    .context("the .dep-v0 section is not zlib-compressed text")?;
    let list: Value = serde_json::from_str(&text)?;
    let packages = list["packages"].as_array().context("no packages")?;
    let lock = locked_versions()?;
    let mut names = BTreeSet::new();
    for p in packages {
        let (name, version) = (
            p["name"].as_str().context("name")?,
            p["version"].as_str().context("version")?,
        );
        if p["root"] == json!(true) {
            ensure!(
                name == env!("CARGO_PKG_NAME") && version == env!("CARGO_PKG_VERSION"),
                "root package {p}"
            );
        }
        ensure!(
            lock.contains(&(name.to_string(), version.to_string())),
            "{name} {version} is not in Cargo.lock"
        );
        names.insert(name);
    }
    for runtime in ["ring", "rustls", "kube-client", "serde_json", "hyper"] {
        ensure!(names.contains(runtime), "{runtime} missing from {names:?}");
    }
    for test_only in [
        "promql-parser",
        "criterion",
        "proptest",
        "reqwest",
        "flate2",
    ] {
        ensure!(
            !names.contains(test_only),
            "{test_only} is a test dependency"
        );
    }
    Ok(())
}

/// (name, version) of every package Cargo.lock pins.
fn locked_versions() -> Result<BTreeSet<(String, String)>> {
    let lock = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock"))?;
    let mut out = BTreeSet::new();
    let mut name = None;
    for line in lock.lines() {
        let quoted = |key: &str| {
            line.strip_prefix(key)
                .map(|v| v.trim_matches('"').to_string())
        };
        if let Some(n) = quoted("name = ") {
            name = Some(n);
        } else if let (Some(v), Some(n)) = (quoted("version = "), name.take()) {
            out.insert((n, v));
        }
    }
    Ok(out)
}

/// The archive's index.json, which names the image index by digest.
fn top_index(archive: &Path) -> Result<String> {
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(archive)
        .arg("index.json")
        .output()?;
    ensure!(
        out.status.success(),
        "no index.json in {}",
        archive.display()
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// One platform's image in an OCI image layout (index.json and blobs/).
struct Image {
    layout: PathBuf,
    arch: String,
    manifest: Value,
    config: Value,
}

impl Image {
    /// The images of the layout's one entry: an image index tagged with the package version.
    fn read_all(layout: &Path) -> Result<Vec<Self>> {
        let top: Value = json_file(&layout.join("index.json"))?;
        let entries = top["manifests"].as_array().context("index.json")?;
        ensure!(entries.len() == 1, "one entry expected: {top}");
        let tag = &entries[0]["annotations"]["org.opencontainers.image.ref.name"];
        ensure!(
            tag == env!("CARGO_PKG_VERSION"),
            "the archive's tag {tag} is not the package version"
        );
        ensure!(
            entries[0]["mediaType"] == "application/vnd.oci.image.index.v1+json",
            "not a multi-platform index: {}",
            entries[0]
        );
        let index = blob(layout, &entries[0]["digest"])?;
        let mut images = Vec::new();
        for entry in index["manifests"].as_array().context("the image index")? {
            let manifest = blob(layout, &entry["digest"])?;
            let config = blob(layout, &manifest["config"]["digest"])?;
            let arch = entry["platform"]["architecture"]
                .as_str()
                .context("an index entry without a platform")?
                .to_string();
            ensure!(
                entry["platform"]["os"] == "linux" && config["architecture"] == arch.as_str(),
                "platform {} against config {}",
                entry["platform"],
                config["architecture"]
            );
            images.push(Self {
                layout: layout.to_path_buf(),
                arch,
                manifest,
                config,
            });
        }
        Ok(images)
    }

    /// What the chart's Deployment relies on: its arguments follow the entrypoint, it runs as
    /// 65532, and it names ports 8443 and 8080.
    fn check_config(&self) -> Result<()> {
        let c = &self.config["config"];
        ensure!(c["User"] == CHART_USER, "user: {}", c["User"]);
        ensure!(
            c["Entrypoint"] == json!(["/wfe-admission"]),
            "entrypoint: {c}"
        );
        ensure!(c["Cmd"] == json!(["serve"]), "cmd: {c}");
        let ports: BTreeSet<&str> = c["ExposedPorts"]
            .as_object()
            .context("no exposed ports")?
            .keys()
            .map(String::as_str)
            .collect();
        ensure!(
            ports == BTreeSet::from(["8080/tcp", "8443/tcp"]),
            "ports: {ports:?}"
        );
        let labels = &c["Labels"];
        ensure!(
            labels["org.opencontainers.image.version"] == env!("CARGO_PKG_VERSION")
                && labels["org.opencontainers.image.licenses"] == env!("CARGO_PKG_LICENSE"),
            "labels: {labels}"
        );
        ensure!(self.config["os"] == "linux", "platform: {}", self.config);
        Ok(())
    }

    /// The config's `Env`, as a container runtime would set it.
    fn env(&self) -> Result<Vec<(String, String)>> {
        let mut env = Vec::new();
        for entry in self.config["config"]["Env"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let entry = entry.as_str().context("an Env entry is not a string")?;
            let (key, value) = entry.split_once('=').context("an Env entry has no =")?;
            env.push((key.to_string(), value.to_string()));
        }
        Ok(env)
    }

    fn unpack(&self, root: &Path) -> Result<()> {
        for layer in self.manifest["layers"].as_array().context("no layers")? {
            run(Command::new("tar")
                .arg("-xf")
                .arg(blob_path(&self.layout, &layer["digest"])?)
                .arg("-C")
                .arg(root))?;
        }
        Ok(())
    }
}

fn blob_path(layout: &Path, digest: &Value) -> Result<PathBuf> {
    let digest = digest.as_str().context("a digest is not a string")?;
    let hex = digest
        .strip_prefix("sha256:")
        .with_context(|| format!("not a sha256 digest: {digest}"))?;
    Ok(layout.join("blobs/sha256").join(hex))
}

fn blob(layout: &Path, digest: &Value) -> Result<Value> {
    json_file(&blob_path(layout, digest)?)
}

fn json_file(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// Regular files and links under `root`, as paths relative to it (directories left out).
fn files_under(root: &Path) -> Result<BTreeSet<String>> {
    let mut found = BTreeSet::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                todo.push(entry.path());
            } else {
                let path = entry.path();
                found.insert(path.strip_prefix(root)?.to_string_lossy().into_owned());
            }
        }
    }
    Ok(found)
}

/// The webhook's identity, as the events client of the in-process webhook uses it.
fn kubeconfig(ctx: &Ctx) -> Result<String> {
    let access = &ctx.access;
    let ca = std::fs::read(&access.ca_file)
        .with_context(|| format!("cannot read {}", access.ca_file))?;
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca);
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": {
            "server": access.url, "certificate-authority-data": ca}}],
        "users": [{"name": "webhook", "user": {"token": access.webhook_token}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "webhook"}}],
        "current-context": "e2e",
    });
    Ok(serde_json::to_string_pretty(&config)?)
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

/// How the unpacked image is run.
#[derive(Clone, Copy)]
enum Runner {
    /// `chroot` into it (the host's architecture).
    Chroot,
    /// qemu-user for aarch64, with the paths of the host.
    Qemu,
}

/// The image's server, its stdout and stderr in one log file.
struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    fn start(
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

    fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "the image's server exited ({status}):\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        Ok(())
    }

    /// SIGTERM, as the kubelet sends it; the log once it exited cleanly.
    fn terminate(&mut self) -> Result<String> {
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

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn mkdir(path: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(path)?;
    Ok(path.to_path_buf())
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
