//! End-to-end tests against a real kube-apiserver (`harness = false`).
//!
//! One control plane (tests/e2e/control-plane) serves every scenario: `main` builds and starts
//! it, installs the CRD, starts the webhook in this process, registers both webhook
//! configurations, then runs the scenarios one after the other. Each scenario prints
//! `test <name> ... ok|FAILED`; the last line is `e2e: N passed, M failed`, and the exit code
//! is non-zero when one failed. Teardown (webhook, stop.sh) runs on every path: the control
//! plane is a drop guard, and start.sh's owner watchdog stops it if this process is killed.
//!
//! `WFE_SKIP_E2E=1` skips the suite. Arguments that do not start with `-` filter scenarios by
//! substring (as `cargo test NAME` passes them); `WFE_E2E_KEEP=1` keeps the work directory.

#[path = "e2e/authwebhook.rs"]
mod authwebhook;
#[path = "e2e/cluster.rs"]
mod cluster;
#[path = "e2e/harness.rs"]
mod harness;
#[path = "e2e/scenarios/mod.rs"]
mod scenarios;
#[path = "e2e/webhook.rs"]
mod webhook;

use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    if std::env::var("WFE_SKIP_E2E").as_deref() == Ok("1") {
        println!("e2e: skipped (WFE_SKIP_E2E=1)");
        return ExitCode::SUCCESS;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for s in scenarios::all() {
            println!("{}: test", s.name);
        }
        return ExitCode::SUCCESS;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let selected: Vec<_> = scenarios::all()
        .into_iter()
        .filter(|s| filters.is_empty() || filters.iter().any(|f| s.name.contains(f.as_str())))
        .collect();
    if selected.is_empty() {
        println!("e2e: 0 passed, 0 failed (no scenario matches the filter)");
        return ExitCode::SUCCESS;
    }
    let suite = Instant::now();
    let count = selected.len();
    // A panic outside a scenario (setup, teardown) still ends with the summary line; the
    // control plane's drop guard has stopped it by then.
    let report =
        std::panic::catch_unwind(move || harness::run(selected)).unwrap_or(harness::Report {
            passed: 0,
            failed: count,
        });
    println!("e2e: suite took {:.1} s", suite.elapsed().as_secs_f64());
    println!("e2e: {} passed, {} failed", report.passed, report.failed);
    if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
