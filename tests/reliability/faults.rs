//! Faults under a bounded loopback load: certificate rotation, SIGTERM, an unreachable API
//! server for Events, and stuck or slow clients. Every request of the load must get the right
//! answer; nothing is timed beyond generous "it completed" bounds.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use wfe_admission::certgen::{self, Validity};
use wfe_admission::config::Config;
use wfe_admission::events::EventOptions;
use wfe_admission::metrics::{Attempt, Metrics};

use crate::bad_input::still_serving;
use crate::load::{self, Mix, ONE_LOAD_AT_A_TIME, Outcome, Plan};
use crate::process::Webhook;
use crate::support::*;

/// Polls `cond` every 20 ms for at most `bound`.
async fn eventually(bound: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < bound {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

async fn wait_progress(plan: &Plan, at_least: usize) {
    let progress = Arc::clone(&plan.progress);
    let reached = eventually(Duration::from_secs(120), || {
        progress.load(Ordering::Acquire) >= at_least
    })
    .await;
    assert!(reached, "the load stalled before {at_least} requests");
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("PEM certificate")
        .to_vec()
}

/// The leaf certificate a fresh handshake gets, trusting `cas`.
async fn served_leaf(addr: std::net::SocketAddr, cas: &[&str]) -> Option<Vec<u8>> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        roots
            .add(CertificateDer::from_pem_slice(ca.as_bytes()).ok()?)
            .ok()?;
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.ok()?;
    let tls = connector
        .connect("localhost".try_into().ok()?, tcp)
        .await
        .ok()?;
    let leaf = tls.get_ref().1.peer_certificates()?.first()?.to_vec();
    Some(leaf)
}

fn trusting(cas: &[&str], http1: bool, pooled: bool) -> reqwest::Client {
    install_provider();
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false);
    for ca in cas {
        builder = builder
            .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).expect("ca"));
    }
    if http1 {
        builder = builder.http1_only();
    }
    if !pooled {
        // A new connection, so a new handshake, for every request.
        builder = builder.pool_max_idle_per_host(0);
    }
    builder.build().expect("client")
}

fn assert_nothing_lost(what: &str, report: &load::Report) {
    println!("{what}: {}", report.summary());
    let wrong = report.wrong();
    assert!(wrong.is_empty(), "{what}: wrong answers: {wrong:#?}");
    let failed = report.failed();
    assert!(failed.is_empty(), "{what}: failed requests: {failed:#?}");
}

#[tokio::test]
async fn certificate_rotation_during_load_fails_no_request() {
    let _one = ONE_LOAD_AT_A_TIME.lock().await;
    let server = start_with(
        |o| o.cert_reload_interval = Duration::from_secs(1),
        Config::default(),
    )
    .await;
    let dir = server.cert_dir();
    let metrics = server.running.as_ref().expect("running").metrics.clone();
    let first = bundle();
    // The server started with its own CA; rotate between pairs of two other CAs plus a
    // re-signing of the same CA, and one unusable pair in between.
    let other = bundle();
    let ca0 = server.ca.clone();
    let cas = [ca0.as_str(), first.ca_cert.as_str(), other.ca_cert.as_str()];
    let clients = vec![
        trusting(&cas, false, true),
        trusting(&cas, true, true),
        trusting(&cas, true, false),
        trusting(&cas, false, false),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let mut plan = Plan::new(server.url(""), clients, Mix::Mixed, 200_000);
    plan.concurrency = 12;
    plan.stop = Some(Arc::clone(&stop));
    let load = tokio::spawn(load::run(plan.clone()));

    let resigned = {
        let (cert, key) = certgen::sign_with(
            &first.ca_cert,
            &first.ca_key,
            &certgen::default_hosts(),
            Validity::days(1),
            false,
        )
        .expect("re-signed pair");
        certgen::Bundle {
            cert,
            key,
            ..first.clone()
        }
    };
    let mut broken = other.clone();
    broken.key = bundle().key;
    let steps: Vec<(&str, &certgen::Bundle, bool)> = vec![
        ("pair of another CA", &first, true),
        ("same CA re-signed", &resigned, true),
        ("mismatched key (refused)", &broken, false),
        ("pair of a third CA", &other, true),
        ("back to the re-signed pair", &resigned, true),
    ];
    let mut rotations = 0;
    for (i, (name, pair, good)) in steps.iter().enumerate() {
        wait_progress(&plan, (i + 1) * 400).await;
        let failures_before = reload_failures(&metrics);
        write_secret_volume(&dir, i as u32 + 2, pair);
        if *good {
            let want = der(&pair.cert);
            let mut served = false;
            for _ in 0..500 {
                if served_leaf(server.addr, &cas).await.as_deref() == Some(want.as_slice()) {
                    served = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(served, "rotation to {name}: the new pair was never served");
            rotations += 1;
        } else {
            let m = metrics.clone();
            let refused = eventually(Duration::from_secs(10), || {
                reload_failures(&m) > failures_before
            })
            .await;
            assert!(refused, "the unusable pair was not refused");
        }
        println!(
            "rotation {} ({name}) at request {}",
            i + 1,
            plan.progress.load(Ordering::Acquire)
        );
    }
    let done = plan.progress.load(Ordering::Acquire);
    wait_progress(&plan, done + 400).await;
    stop.store(true, Ordering::Release);
    let report = load.await.expect("load task");
    println!("{rotations} good rotations and 1 refused pair during the load");
    assert_nothing_lost("certificate rotation", &report);
    assert!(report.sent.len() >= 2400, "{}", report.summary());
    still_serving_with(&server, &cas).await;
    server.stop().await;
}

fn reload_failures(metrics: &Metrics) -> u64 {
    let text = metrics.encode();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(r#"wfe_admission_certificate_reloads_total{result="failure"} "#)
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

async fn still_serving_with(server: &TestServer, cas: &[&str]) {
    let c = trusting(cas, false, true);
    let body = review(
        CONTROLLER,
        serde_json::json!({"phase": "Pending"}),
        serde_json::json!({"phase": "Running"}),
    );
    let (code, answer) = post(&c, &server.url("/validate"), &body).await;
    assert_eq!(
        (code, &answer["response"]["allowed"]),
        (200, &Value::Bool(true))
    );
}

/// Finds a string field named `name` anywhere in a log line.
fn field<'v>(line: &'v Value, name: &str) -> Option<&'v str> {
    match line {
        Value::Object(m) => m
            .get(name)
            .and_then(Value::as_str)
            .or_else(|| m.values().find_map(|v| field(v, name))),
        _ => None,
    }
}

/// What an endpoints controller sees: `/readyz` failing (or the probe port gone).
async fn unready(webhook: &Webhook) -> bool {
    let url = format!("http://{}/readyz", webhook.probe_addr);
    match reqwest::get(&url).await {
        Ok(resp) => resp.status() == 503,
        Err(_) => true,
    }
}

#[tokio::test]
async fn sigterm_during_load_loses_no_request_and_exits_0() {
    let _one = ONE_LOAD_AT_A_TIME.lock().await;
    let mut webhook = Webhook::start(&["--shutdown-delay", "5s", "--shutdown-grace", "20s"]).await;
    // h2 and HTTP/1.1 keep-alive clients, as API servers use both.
    let clients = vec![webhook.client(false), webhook.client(true)];
    let mut plan = Plan::new(webhook.base(), clients, Mix::Denials, 200_000);
    plan.concurrency = 16;
    let stop = Arc::new(AtomicBool::new(false));
    plan.stop = Some(Arc::clone(&stop));
    let load = tokio::spawn(load::run(plan.clone()));
    wait_progress(&plan, 1500).await;
    let at_signal = plan.progress.load(Ordering::Acquire);
    webhook.terminate();
    let signalled = std::time::Instant::now();
    // The load goes on until the replica reports unready, as it would until the Service's
    // endpoints drop it; then no new request is sent to it. In-flight ones run to the end.
    let mut polls = 0;
    while !unready(&webhook).await {
        polls += 1;
        assert!(polls < 500, "/readyz still 200 after SIGTERM");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let at_unready = plan.progress.load(Ordering::Acquire);
    // Endpoints take a while to follow: one more second of load, well inside the 5 s delay.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let at_stop = plan.progress.load(Ordering::Acquire);
    stop.store(true, Ordering::Release);
    let stopped_after = signalled.elapsed();
    let status = webhook.wait_exit(Duration::from_secs(40)).await;
    let report = tokio::time::timeout(Duration::from_secs(60), load)
        .await
        .expect("the load ends")
        .expect("load task");
    let log = webhook.log();
    let status = status.unwrap_or_else(|| panic!("no exit within 40 s after SIGTERM:\n{log}"));
    println!(
        "SIGTERM after {at_signal} requests, unready seen after {at_unready}, load stopped after {at_stop}; {}",
        report.summary()
    );
    assert_eq!(status.code(), Some(0), "exit status {status}:\n{log}");

    // Nothing failed at the client: not the requests in flight at SIGTERM, not those sent
    // before the client saw the replica unready, not those on keep-alive connections.
    let failed: Vec<String> = report
        .failed()
        .iter()
        .filter_map(|s| match &s.outcome {
            Outcome::Failed { connect, error } => Some(format!(
                "{} {}: {error}",
                ["h2", "HTTP/1.1"][s.client % 2],
                if *connect { "connect" } else { "request" }
            )),
            _ => None,
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} requests failed (the load stopped {stopped_after:?} after SIGTERM; the delay is 5 s): {failed:#?}",
        failed.len()
    );
    let wrong = report.wrong();
    assert!(wrong.is_empty(), "wrong answers: {wrong:#?}");

    // The server's own record of what it answered: one "denied" line per request, with its uid.
    let lines = webhook.log_lines();
    let signal_at = lines
        .iter()
        .position(|l| field(l, "message") == Some("signal received; shutting down"))
        .expect("the shutdown is logged");
    let is_denial = |l: &Value| field(l, "reason").is_some() && field(l, "uid").is_some();
    let processed: HashSet<&str> = lines
        .iter()
        .filter(|l| is_denial(l))
        .filter_map(|l| field(l, "uid"))
        .collect();
    let after_signal = lines[signal_at..].iter().filter(|l| is_denial(l)).count();
    println!(
        "the server answered {} requests, {after_signal} of them after SIGTERM; exit status 0",
        processed.len()
    );
    let answered: HashSet<&str> = report
        .sent
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Correct))
        .map(|s| s.uid.as_str())
        .collect();
    assert_eq!(answered, processed, "client answers and server log differ");
    assert_eq!(answered.len(), report.sent.len(), "{}", report.summary());
    // The signal landed mid-load: requests were still being answered after it.
    assert!(after_signal > 0, "nothing answered after SIGTERM");
}

#[tokio::test]
async fn events_api_unreachable_answers_are_unaffected_and_losses_are_counted() {
    let _one = ONE_LOAD_AT_A_TIME.lock().await;
    // Nothing listens on port 1: every attempt to record an Event fails.
    let uri: axum::http::Uri = "https://127.0.0.1:1".parse().expect("uri");
    let kube = kube::Client::try_from(kube::Config::new(uri)).expect("kube client");
    let server = start_with_events(
        kube,
        EventOptions {
            capacity: 8,
            attempts: 2,
            attempt_timeout: Duration::from_secs(2),
            backoff: Duration::from_millis(20),
            controller: "wfe-admission".into(),
            instance: None,
            ..EventOptions::default()
        },
    )
    .await;
    let metrics = server.metrics();
    let total = 2000;
    let clients = vec![client(&server.ca), trusting(&[&server.ca], true, true)];
    let mut plan = Plan::new(server.url(""), clients, Mix::Denials, total);
    plan.concurrency = 8;
    let report = tokio::time::timeout(Duration::from_secs(300), load::run(plan))
        .await
        .expect("the load completes: recording Events never blocks an answer");
    assert_nothing_lost("events API unreachable", &report);
    assert_eq!(report.sent.len(), total);

    // Every denial's Event is accounted for: dropped at the full queue, past its object's
    // share, or failed after its retries. None succeeded, none vanished.
    let accounted = eventually(Duration::from_secs(60), || {
        metrics.events_count(Attempt::Failure)
            + metrics.events_count(Attempt::Dropped)
            + metrics.events_count(Attempt::Limited)
            == total as u64
    })
    .await;
    let (failed, dropped, limited, ok) = (
        metrics.events_count(Attempt::Failure),
        metrics.events_count(Attempt::Dropped),
        metrics.events_count(Attempt::Limited),
        metrics.events_count(Attempt::Success),
    );
    println!(
        "events API unreachable: {total} denials answered; events failed {failed}, dropped {dropped}, limited {limited}, recorded {ok}"
    );
    assert!(
        accounted,
        "failed {failed} + dropped {dropped} + limited {limited} != {total} denials"
    );
    assert_eq!(ok, 0);
    assert!(dropped > 0 && failed > 0, "the small queue shows both");
    let text = server.metrics_text().await;
    for needle in [
        format!(r#"wfe_admission_events_total{{result="failure"}} {failed}"#),
        format!(r#"wfe_admission_events_total{{result="dropped"}} {dropped}"#),
    ] {
        assert!(text.contains(&needle), "missing {needle} in\n{text}");
    }
    still_serving(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn stuck_and_slow_clients_do_not_delay_the_others() {
    let _one = ONE_LOAD_AT_A_TIME.lock().await;
    // Header and body deadlines longer than the load, so the stuck clients stay stuck throughout.
    let server = start_with(
        |o| {
            o.header_read_timeout = Duration::from_secs(60);
            o.body_read_timeout = Duration::from_secs(60);
        },
        Config::default(),
    )
    .await;
    let mut stuck = Vec::new();
    // Connected, silent: before the TLS handshake.
    for _ in 0..20 {
        stuck.push(TcpStream::connect(server.addr).await.expect("connect"));
    }
    let mut handles = Vec::new();
    // A ClientHello at one byte per second.
    for _ in 0..5 {
        let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
        handles.push(tokio::spawn(async move {
            for byte in [0x16u8, 3, 1, 0, 200].into_iter().cycle() {
                if tcp.write_all(&[byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }
    // Handshake done, then silent; and handshake and headers done, then a body at 1 byte/s.
    let mut silent_tls = Vec::new();
    for _ in 0..5 {
        silent_tls.push(tls_stream(&server).await);
    }
    let slow_body_alive = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..5 {
        let mut tls = tls_stream(&server).await;
        let alive = Arc::clone(&slow_body_alive);
        handles.push(tokio::spawn(async move {
            let head = "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n";
            if tls.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            alive.fetch_add(1, Ordering::AcqRel);
            loop {
                if tls.write_all(b" ").await.is_err() || tls.flush().await.is_err() {
                    alive.fetch_sub(1, Ordering::AcqRel);
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }
    let total = 1500;
    let mut plan = Plan::new(
        server.url(""),
        vec![client(&server.ca), trusting(&[&server.ca], true, true)],
        Mix::Mixed,
        total,
    );
    plan.concurrency = 8;
    let report = tokio::time::timeout(Duration::from_secs(120), load::run(plan))
        .await
        .expect("the others complete within 120 s");
    assert_nothing_lost("stuck and slow clients", &report);
    assert_eq!(report.sent.len(), total);
    // The slow uploads were still going when the others had all been served.
    let alive = slow_body_alive.load(Ordering::Acquire);
    println!(
        "with 20 silent TCP, 5 trickled handshakes, 5 silent TLS and {alive} bodies at 1 byte/s open"
    );
    assert_eq!(alive, 5, "a slow upload ended early");
    for h in handles {
        h.abort();
    }
    drop(stuck);
    drop(silent_tls);
    still_serving(&server).await;
    server.stop().await;
}
