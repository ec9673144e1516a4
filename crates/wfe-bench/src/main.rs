//! `cargo run --release -p wfe-bench [-- --quick] [--e2e|--no-e2e] [--out FILE]`, or
//! `-- --condition FILE...` for the CEL cost rows of draft match conditions only.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use wfe_bench::{self as bench, E2e, Options};

/// The same allocator as `wfe-admission` (src/main.rs), so the in-process rows measure it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Benchmark of wfe-admission with the ceiling of its TLS stack measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "wfe-bench")]
struct Args {
    /// Smoke run of a few seconds (short windows; no kube-apiserver unless --e2e).
    #[arg(long)]
    quick: bool,
    /// Include the kube-apiserver rows (needs tests/e2e/control-plane/build.sh's cache).
    #[arg(long, conflicts_with = "no_e2e")]
    e2e: bool,
    /// Skip the kube-apiserver rows even when the control plane is cached.
    #[arg(long)]
    no_e2e: bool,
    /// Where to write the Markdown table (also printed to stdout).
    #[arg(long, default_value = "target/wfe-bench.md")]
    out: PathBuf,
    /// The wfe-admission binary to start for the memory and start rows
    /// [default: next to this executable, rebuilt first under cargo].
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Only the throughput rows whose "<endpoint> <protocol> c=<n>" contains this (for profiling).
    #[arg(long, hide = true)]
    only: Option<String>,
    /// Only time the in-process policy step for this many seconds per row (for profilers).
    #[arg(long, value_name = "SECONDS")]
    policy_only: Option<f64>,
    /// Only the CEL cost rows: these draft match conditions (one CEL text per file) beside the
    /// default policy's, the CRD rule and the floor, over kubernaut's real mix.
    #[arg(long = "condition", value_name = "FILE")]
    conditions: Vec<PathBuf>,
}

fn main() -> ExitCode {
    if !wfe_admission::install_crypto_provider() {
        eprintln!("error: a rustls crypto provider was already installed");
        return ExitCode::FAILURE;
    }
    let args = Args::parse();
    if let Some(seconds) = args.policy_only {
        let budget = std::time::Duration::from_secs_f64(seconds.max(0.01));
        return match bench::policy::timings(budget) {
            Ok(rows) => {
                for r in rows {
                    println!(
                        "{}: {} B reviews, parse {:.1} µs, /validate {:.1} µs, /mutate {:.1} µs (DynamicObject: {:.1} µs, {:.1} µs)",
                        r.size.as_str(),
                        r.review_bytes,
                        r.parse_us,
                        r.validate_us,
                        r.mutate_us,
                        r.validate_dynamic_us,
                        r.mutate_dynamic_us
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("wfe-bench: error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    // The repository: this crate lives in crates/wfe-bench.
    let repo = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    if !args.conditions.is_empty() {
        return match bench::celcost::drafts(&repo, &args.conditions) {
            Ok(rows) => {
                print!("{}", bench::report::cel_cost_table(&rows));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("wfe-bench: error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let options = Options {
        quick: args.quick,
        e2e: if args.e2e {
            E2e::On
        } else if args.no_e2e {
            E2e::Off
        } else {
            E2e::Auto
        },
        out: args.out,
        server_bin: args.server_bin,
        repo,
        only: args.only,
    };
    match bench::run(&options) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wfe-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
