//! The helm binary from tests/e2e/helm/build.sh, run as a person would, and the rendered
//! manifests parsed into JSON values.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use wfe_bench::control_plane::run_build_script;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn chart_dir() -> PathBuf {
    repo().join("charts/wfe-admission")
}

pub struct Helm {
    pub bin: PathBuf,
    /// HELM_*_HOME and the discovery cache live here, not in the user's home.
    home: tempfile::TempDir,
    values_seq: std::cell::Cell<u32>,
}

impl Helm {
    /// build.sh (instant when cached), then a private home for helm's state.
    pub fn build() -> Result<Self> {
        let started = Instant::now();
        let bin = run_build_script(&repo().join("tests/e2e/helm/build.sh"))?;
        if !bin.is_file() {
            bail!("build.sh printed {}, which is not a file", bin.display());
        }
        eprintln!(
            "chart: helm {} ready in {:.1} s",
            bin.display(),
            started.elapsed().as_secs_f64()
        );
        let home = tempfile::Builder::new()
            .prefix("wfe-chart-helm.")
            .tempdir()
            .context("temp dir for helm")?;
        Ok(Self {
            bin,
            home,
            values_seq: std::cell::Cell::new(0),
        })
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        let home = self.home.path();
        cmd.env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .env("KUBECACHEDIR", home.join("kube-cache"))
            .env_remove("KUBECONFIG")
            .env_remove("HELM_NAMESPACE")
            .env_remove("HELM_KUBECONTEXT")
            // Everything here talks to loopback; never route it through a configured proxy.
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Result<Output> {
        self.command()
            .args(args)
            .output()
            .with_context(|| format!("cannot run helm {}", args.join(" ")))
    }

    /// Writes `values` (JSON is YAML) to a file in helm's temp home and returns its path.
    pub fn values_file(&self, values: &Value) -> PathBuf {
        let n = self.values_seq.get() + 1;
        self.values_seq.set(n);
        let path = self.home.path().join(format!("values-{n}.yaml"));
        std::fs::write(&path, serde_json::to_vec_pretty(values).expect("json"))
            .expect("write values file");
        path
    }

    /// `helm template` of the chart; Err carries helm's stderr.
    pub fn template(
        &self,
        release: &str,
        namespace: &str,
        values: &Value,
    ) -> Result<Manifests, String> {
        self.template_on(release, namespace, values, None)
    }

    /// `helm template` for a cluster of `kube_version` (helm's own default when `None`).
    pub fn template_on(
        &self,
        release: &str,
        namespace: &str,
        values: &Value,
        kube_version: Option<&str>,
    ) -> Result<Manifests, String> {
        let file = self.values_file(values);
        let chart = chart_dir();
        let mut args = vec![
            "template",
            release,
            path_str(&chart),
            "--namespace",
            namespace,
            "--values",
            path_str(&file),
        ];
        if let Some(v) = kube_version {
            args.extend(["--kube-version", v]);
        }
        let out = self.run(&args).map_err(|e| format!("{e:#}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Manifests::parse(&text).map_err(|e| format!("{e:#}\n{text}"))
    }

    /// `helm template`, failing the test when helm fails.
    pub fn render(&self, release: &str, namespace: &str, values: &Value) -> Manifests {
        self.template(release, namespace, values)
            .unwrap_or_else(|e| panic!("helm template {release} with {values} failed:\n{e}"))
    }
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The documents of a rendered release.
#[derive(Debug, Clone)]
pub struct Manifests {
    pub docs: Vec<Value>,
}

impl Manifests {
    pub fn parse(text: &str) -> Result<Self> {
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(text).context("helm's output is not YAML")?;
        let docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
        for d in &docs {
            if d["kind"].as_str().is_none() || d["metadata"]["name"].as_str().is_none() {
                bail!("a rendered document has no kind or name: {d}");
            }
        }
        Ok(Self { docs })
    }

    /// `Kind/name` of every document, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .docs
            .iter()
            .map(|d| {
                format!(
                    "{}/{}",
                    d["kind"].as_str().unwrap_or_default(),
                    d["metadata"]["name"].as_str().unwrap_or_default()
                )
            })
            .collect();
        ids.sort();
        ids
    }

    pub fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.docs.iter().filter(|d| d["kind"] == kind).collect()
    }

    pub fn has(&self, kind: &str) -> bool {
        !self.of_kind(kind).is_empty()
    }

    /// The only document of `kind`; panics when there are none or several.
    pub fn one(&self, kind: &str) -> &Value {
        let all = self.of_kind(kind);
        assert_eq!(all.len(), 1, "want one {kind}, got {:?}", self.ids());
        all[0]
    }

    pub fn get(&self, kind: &str, name: &str) -> &Value {
        self.docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind}/{name} in {:?}", self.ids()))
    }
}
