//! Events when the API server cannot be reached: the admission answer is immediate and right,
//! recording fails (or is dropped) in the background and is counted. No cluster needed.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::json;
use support::*;
use wfe_admission::events::EventOptions;
use wfe_admission::metrics::Attempt;

/// A kube client for `url` that trusts some CA (the server is never reached anyway).
fn client_for(url: &str) -> kube::Client {
    let ca = bundle().ca_cert;
    let der = CertificateDer::from_pem_slice(ca.as_bytes()).expect("CA PEM");
    let mut config = kube::Config::new(url.parse().expect("url"));
    config.root_cert = Some(vec![der.as_ref().to_vec()]);
    config.connect_timeout = Some(Duration::from_millis(500));
    kube::Client::try_from(config).expect("kube client")
}

async fn webhook_with_events(client: kube::Client, options: EventOptions) -> TestServer {
    start_with_events(client, options).await
}

fn illegal_move() -> serde_json::Value {
    review(
        CONTROLLER,
        json!({"phase": "Completed"}),
        json!({"phase": "Running"}),
    )
}

async fn deny_once(c: &reqwest::Client, url: &str) -> Duration {
    let started = Instant::now();
    let (code, answer) = post(c, url, &illegal_move()).await;
    let took = started.elapsed();
    assert_eq!(code, 200);
    let r = &answer["response"];
    assert_eq!(r["allowed"], false, "{answer}");
    assert_eq!(r["status"]["code"], 403);
    let message = r["status"]["message"].as_str().expect("message");
    assert!(message.contains("Completed → Running"), "{message}");
    took
}

async fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_closed_port_fails_the_event_after_retries_not_the_answer() {
    // Port 1 on loopback: nothing listens, every connection is refused.
    let webhook = webhook_with_events(
        client_for("https://127.0.0.1:1"),
        EventOptions {
            attempts: 3,
            attempt_timeout: Duration::from_secs(2),
            backoff: Duration::from_millis(50),
            ..EventOptions::default()
        },
    )
    .await;
    let c = client(&webhook.ca);
    let url = webhook.url("/validate");
    let took = deny_once(&c, &url).await;
    assert!(took < Duration::from_secs(1), "answer took {took:?}");

    let metrics = webhook.metrics().clone();
    wait_for(
        "the failed Event to be counted",
        Duration::from_secs(10),
        || metrics.events_count(Attempt::Failure) > 0,
    )
    .await;
    assert_eq!(webhook.metrics().events_count(Attempt::Failure), 1);
    assert_eq!(webhook.metrics().events_count(Attempt::Success), 0);
    let text = webhook.metrics_text().await;
    assert!(
        text.contains(r#"wfe_admission_events_total{result="failure"} 1"#),
        "{text}"
    );
    webhook.stop().await;
}

#[tokio::test]
async fn a_silent_api_server_neither_delays_answers_nor_fills_memory() {
    // Accepts connections and never answers: each attempt runs into its timeout.
    let hole = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind");
    let hole_addr = hole.local_addr().expect("addr");
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((conn, _)) = hole.accept().await {
            conns.push(conn);
        }
    });
    let webhook = webhook_with_events(
        client_for(&format!("https://{hole_addr}")),
        EventOptions {
            capacity: 1,
            attempts: 2,
            attempt_timeout: Duration::from_millis(700),
            backoff: Duration::from_millis(50),
            ..EventOptions::default()
        },
    )
    .await;
    let c = client(&webhook.ca);
    let url = webhook.url("/validate");
    // The worker takes the first, the queue holds one more, the rest are dropped at once.
    for i in 0..5 {
        let took = deny_once(&c, &url).await;
        assert!(took < Duration::from_millis(500), "answer took {took:?}");
        if i == 0 {
            // Let the worker take the first one off the queue.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(webhook.metrics().events_count(Attempt::Failure), 0);
    assert_eq!(webhook.metrics().events_count(Attempt::Dropped), 3);
    let metrics = webhook.metrics().clone();
    wait_for(
        "both queued Events to fail",
        Duration::from_secs(10),
        || metrics.events_count(Attempt::Failure) == 2,
    )
    .await;
    webhook.stop().await;
    held.abort();
}

/// Without client authentication anyone who reaches the port can have reviews judged. A flood
/// of made-up denials, each blaming another user so that no two Events would aggregate, stays
/// bounded: a few Events per object and reason (the rest counted as limited), and metric label
/// sets that carry nothing a review supplies.
#[tokio::test]
async fn a_flood_of_forged_reviews_is_bounded_per_object_and_in_the_metrics() {
    let per_object = 5;
    let webhook = webhook_with_events(
        client_for("https://127.0.0.1:1"),
        EventOptions {
            attempts: 1,
            attempt_timeout: Duration::from_millis(500),
            backoff: Duration::from_millis(10),
            per_object,
            ..EventOptions::default()
        },
    )
    .await;
    let c = client(&webhook.ca);
    let url = webhook.url("/validate");
    let forged: u64 = 200;
    for i in 0..forged {
        let user = format!("forger-{i}@example.com");
        let (code, answer) = post(
            &c,
            &url,
            &review(
                &user,
                json!({"phase": "Completed"}),
                json!({"phase": "Running"}),
            ),
        )
        .await;
        assert_eq!(code, 200);
        assert_eq!(answer["response"]["allowed"], false);
    }
    let metrics = webhook.metrics().clone();
    let settled = move || {
        metrics.events_count(Attempt::Failure)
            + metrics.events_count(Attempt::Limited)
            + metrics.events_count(Attempt::Dropped)
            == forged
    };
    wait_for(
        "every forged denial to be dealt with",
        Duration::from_secs(30),
        settled,
    )
    .await;
    let m = webhook.metrics();
    // Publishing fails here (no API server), but only the object's share was even tried.
    assert_eq!(m.events_count(Attempt::Failure), u64::from(per_object));
    assert_eq!(m.events_count(Attempt::Dropped), 0);
    let text = webhook.metrics_text().await;
    assert!(
        text.contains(&format!(
            r#"wfe_admission_events_total{{result="limited"}} {}"#,
            forged - u64::from(per_object)
        )),
        "{text}"
    );
    assert!(
        !text.contains("forger-"),
        "a label carries a reviewer's value:\n{text}"
    );
    let series = text.lines().filter(|l| !l.starts_with('#')).count();
    assert!(series < 100, "{series} series after a flood:\n{text}");
    webhook.stop().await;
}
