//! Sustained load against the real binary: `WFE_SOAK_SECONDS` (default 10, the CI mode; 300 for
//! the several-minute run) of high concurrency over keep-alive h2 and HTTP/1.1, no error, and
//! resident memory flat: the end RSS at most twice the RSS after warm-up plus 16 MiB.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::load::{self, Mix, ONE_LOAD_AT_A_TIME, Plan};
use crate::process::Webhook;

fn soak_seconds() -> u64 {
    std::env::var("WFE_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s| *s > 0)
        .unwrap_or(10)
}

const CONCURRENCY: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_holds_high_concurrency_with_no_error_and_flat_memory() {
    let _one = ONE_LOAD_AT_A_TIME.lock().await;
    let seconds = soak_seconds();
    let mut webhook = Webhook::start(&[]).await;
    let clients = vec![
        webhook.client(false),
        webhook.client(true),
        webhook.client(false),
        webhook.client(true),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let mut plan = Plan::new(webhook.base(), clients, Mix::Mixed, usize::MAX);
    plan.concurrency = CONCURRENCY;
    plan.stop = Some(Arc::clone(&stop));
    let load = tokio::spawn(load::run(plan.clone()));

    // Warm-up: connections, buffers and allocator arenas reach their working size.
    let warm_up = Duration::from_secs((seconds / 5).clamp(2, 30));
    tokio::time::sleep(warm_up).await;
    let start_rss = webhook.rss_kib().expect("VmRSS");
    let start_count = plan.progress.load(Ordering::Acquire);
    let mut max_rss = start_rss;
    let mut samples = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    while std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = webhook.rss_kib().expect("VmRSS");
        max_rss = max_rss.max(rss);
        samples.push(rss);
    }
    let end_rss = webhook.rss_kib().expect("VmRSS");
    let measured = plan.progress.load(Ordering::Acquire) - start_count;
    stop.store(true, Ordering::Release);
    let report = tokio::time::timeout(Duration::from_secs(120), load)
        .await
        .expect("the load stops")
        .expect("load task");
    webhook.terminate();
    let status = webhook.wait_exit(Duration::from_secs(40)).await;

    println!(
        "soak: {seconds}s after a {}s warm-up at concurrency {CONCURRENCY}: {} requests measured ({:.0}/s); {}",
        warm_up.as_secs(),
        measured,
        measured as f64 / seconds as f64,
        report.summary()
    );
    println!(
        "soak RSS: start {start_rss} KiB, end {end_rss} KiB, max {max_rss} KiB; samples every 1 s: {samples:?}"
    );
    let wrong = report.wrong();
    assert!(
        wrong.is_empty(),
        "wrong answers: {:#?}",
        &wrong[..wrong.len().min(5)]
    );
    let failed = report.failed();
    assert!(
        failed.is_empty(),
        "failed requests: {:#?}",
        &failed[..failed.len().min(5)]
    );
    assert!(
        end_rss <= 2 * start_rss + 16 * 1024,
        "memory grew: {start_rss} KiB -> {end_rss} KiB"
    );
    let status = status.expect("exit after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", webhook.log());
}
