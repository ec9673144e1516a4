//! The image archive: an OCI layout with one multi-platform index, each platform's config and
//! layers, and the dependency list its binary carries.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use super::{CHART_USER, run};

/// The archive's index.json, which names the image index by digest.
pub(super) fn top_index(archive: &Path) -> Result<String> {
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
pub(super) struct Image {
    layout: PathBuf,
    pub(super) arch: String,
    manifest: Value,
    config: Value,
}

impl Image {
    /// The images of the layout's one entry: an image index tagged with the package version.
    pub(super) fn read_all(layout: &Path) -> Result<Vec<Self>> {
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
    pub(super) fn check_config(&self) -> Result<()> {
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
    pub(super) fn env(&self) -> Result<Vec<(String, String)>> {
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

    pub(super) fn unpack(&self, root: &Path) -> Result<()> {
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

pub(super) fn json_file(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// Regular files and links under `root`, as paths relative to it (directories left out).
pub(super) fn files_under(root: &Path) -> Result<BTreeSet<String>> {
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

/// The dependency list cargo auditable embeds (what image scanners read): the binary's own
/// crates at Cargo.lock's versions, none of the test tree's.
pub(super) fn check_dependency_list(binary: &Path, objcopy: &str, work: &Path) -> Result<()> {
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
        // The benchmark's and the harness's alone (crates/wfe-bench).
        "wfe-bench",
        "anyhow",
        "tempfile",
    ] {
        ensure!(
            !names.contains(test_only),
            "{test_only} is not the product's"
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
