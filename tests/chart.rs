//! Tests of the Helm chart `charts/wfe-admission` (`harness = false`).
//!
//! helm is built from its Go module by tests/e2e/helm/build.sh (cached). The render cases run
//! `helm lint --strict` and `helm template` and check the parsed output; the cluster cases
//! `helm install` every certificate mode into a real kube-apiserver (tests/e2e/control-plane)
//! and then run the webhook binary locally against the installed webhook configurations.
//!
//! Each case prints `test <name> ... ok|FAILED`; the last line is `chart: N passed, M failed`
//! and the exit code is non-zero when one failed. Arguments that do not start with `-` filter
//! cases by substring (as `cargo test NAME` passes them); `--list` lists them.
//! `WFE_CHART_KEEP=1` keeps the control plane's work directory for inspection.

#[path = "chart/cluster.rs"]
mod cluster;
#[path = "chart/helm.rs"]
mod helm;
#[path = "chart/render.rs"]
mod render;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;

use crate::cluster::Cluster;
use crate::helm::Helm;

/// What the cases share; built lazily so that a filter that selects no cluster case never
/// starts a control plane, and one that selects nothing never builds helm.
pub struct Ctx {
    helm: Option<Result<Helm, String>>,
    cluster: Option<Result<Cluster, String>>,
}

impl Ctx {
    pub fn helm(&mut self) -> &Helm {
        let helm = self
            .helm
            .get_or_insert_with(|| Helm::build().map_err(|e| format!("{e:#}")));
        match helm {
            Ok(h) => h,
            Err(e) => panic!("helm is not available: {e}"),
        }
    }

    /// The helm binary and the running control plane.
    pub fn cluster(&mut self) -> (&Helm, &mut Cluster) {
        self.helm();
        if self.cluster.is_none() {
            self.cluster = Some(Cluster::start().map_err(|e| format!("{e:#}")));
        }
        let helm = match &self.helm {
            Some(Ok(h)) => h,
            _ => unreachable!("helm checked above"),
        };
        match &mut self.cluster {
            Some(Ok(c)) => (helm, c),
            Some(Err(e)) => panic!("the control plane is not available: {e}"),
            None => unreachable!("set above"),
        }
    }
}

pub struct Case {
    pub name: &'static str,
    pub run: fn(&mut Ctx),
}

fn all() -> Vec<Case> {
    let mut cases = render::cases();
    cases.extend(cluster::cases());
    cases
}

fn main() -> ExitCode {
    let _ = wfe_admission::install_crypto_provider();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for c in all() {
            println!("{}: test", c.name);
        }
        return ExitCode::SUCCESS;
    }
    let mut skip = Vec::new();
    let mut filters = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--skip" {
            skip.extend(it.next().cloned());
        } else if !a.starts_with('-') {
            filters.push(a.clone());
        }
    }
    let selected: Vec<Case> = all()
        .into_iter()
        .filter(|c| filters.is_empty() || filters.iter().any(|f| c.name.contains(f.as_str())))
        .filter(|c| !skip.iter().any(|s| c.name.contains(s.as_str())))
        .collect();
    let (passed, failed) = run(selected);
    println!("chart: {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs the cases in order; the context (and so the control plane) is dropped before this
/// returns, whatever happened.
fn run(cases: Vec<Case>) -> (usize, usize) {
    let suite = Instant::now();
    println!("running {} chart tests", cases.len());
    let mut ctx = Ctx {
        helm: None,
        cluster: None,
    };
    let mut failures = Vec::new();
    let mut passed = 0;
    for case in &cases {
        let started = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| (case.run)(&mut ctx)));
        let took = started.elapsed().as_secs_f64();
        match outcome {
            Ok(()) => {
                passed += 1;
                println!("test {} ... ok ({took:.1} s)", case.name);
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                    .unwrap_or_else(|| "panicked".into());
                println!("test {} ... FAILED ({took:.1} s)", case.name);
                failures.push((case.name, message));
            }
        }
    }
    if let Some(Ok(cluster)) = &ctx.cluster
        && !failures.is_empty()
    {
        eprintln!(
            "---- kube-apiserver log tail ----\n{}",
            cluster.apiserver_log_tail(30)
        );
    }
    drop(ctx);
    for (name, message) in &failures {
        println!("\n---- {name} ----\n{message}");
    }
    println!("chart: suite took {:.1} s", suite.elapsed().as_secs_f64());
    (passed, failures.len())
}
