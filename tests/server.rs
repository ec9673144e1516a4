//! The real HTTPS server on 127.0.0.1:0 with generated certificates: protocol, malformed input,
//! limits, TLS, certificate rotation, probes and graceful shutdown.

mod support;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rustls_pki_types::pem::PemObject as _;
use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wfe_admission::certgen::{self, Validity};
use wfe_admission::config::Config;

fn response(body: &Value) -> &Value {
    &body["response"]
}

#[tokio::test]
async fn illegal_move_is_denied_inside_an_http_200() {
    let server = start().await;
    let c = client(&server.ca);
    let body = review(
        CONTROLLER,
        json!({"phase": "Completed"}),
        json!({"phase": "Running"}),
    );
    let (code, answer) = post(&c, &server.url("/validate"), &body).await;
    assert_eq!(code, 200);
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    let r = response(&answer);
    assert_eq!(r["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 403);
    let message = r["status"]["message"].as_str().expect("message");
    assert!(
        message.contains("WorkflowExecution default/wfe-1"),
        "{message}"
    );
    assert!(message.contains("Completed → Running"), "{message}");
    assert!(message.contains(CONTROLLER), "{message}");
    assert!(message.contains("terminal"), "{message}");
    server.stop().await;
}

#[tokio::test]
async fn legal_move_is_allowed_over_http1_and_h2() {
    let server = start().await;
    let body = review(
        CONTROLLER,
        json!({"phase": "Pending"}),
        json!({"phase": "Running"}),
    );
    for builder in [
        client_builder(&server.ca).http1_only(),
        client_builder(&server.ca),
    ] {
        let c = builder.build().expect("client");
        let resp = c
            .post(server.url("/validate"))
            .json(&body)
            .send()
            .await
            .expect("send");
        let version = resp.version();
        let answer: Value = resp.json().await.expect("json");
        assert_eq!(response(&answer)["allowed"], true, "{version:?}");
    }
    // The second client negotiated h2 through ALPN.
    let c = client(&server.ca);
    let resp = c
        .post(server.url("/validate"))
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    server.stop().await;
}

#[tokio::test]
async fn mutate_answers_a_json_patch_that_applies_to_the_object() {
    let server = start().await;
    let c = client(&server.ca);
    let clearance = json!({"clearedBy": "alice@example.com", "clearedAt": "2026-01-01T09:00:00Z", "clearReason": "r", "clearMethod": "StatusField"});
    let old = json!({"phase": "Running", "startTime": "2026-01-01T10:00:00Z", "blockClearance": clearance});
    let new = json!({"phase": "Completed", "startTime": "2026-01-01T10:00:00Z", "completionTime": "2026-01-01T10:03:30Z"});
    let body = review(CONTROLLER, old, new);
    let (code, answer) = post(&c, &server.url("/mutate"), &body).await;
    assert_eq!(code, 200);
    let r = response(&answer);
    assert_eq!(r["allowed"], true);
    assert_eq!(r["patchType"], "JSONPatch");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(r["patch"].as_str().expect("patch"))
        .expect("base64");
    let patch: json_patch::Patch = serde_json::from_slice(&patch).expect("patch json");
    let mut object = body["request"]["object"].clone();
    json_patch::patch(&mut object, &patch).expect("applies");
    assert_eq!(object["status"]["duration"], "3m30s");
    // The controller rebuilt the status without the operator's field: it is carried over.
    assert_eq!(object["status"]["blockClearance"], clearance);
    server.stop().await;
}

#[tokio::test]
async fn unreadable_reviews_get_a_clear_400_and_the_server_keeps_serving() {
    let server = start().await;
    let c = client(&server.ca);
    let good = review(CONTROLLER, json!({}), json!({"phase": "Running"}));
    let mut no_uid = good.clone();
    no_uid["request"]["uid"] = json!("");
    let mut wrong_version = good.clone();
    wrong_version["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let mut wrong_kind = good.clone();
    wrong_kind["kind"] = json!("TokenReview");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "malformed",
            b"{not json".to_vec(),
            "not a readable AdmissionReview",
        ),
        (
            "truncated",
            serde_json::to_vec(&good).expect("json")[..100].to_vec(),
            "not a readable AdmissionReview",
        ),
        (
            "no request",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
            "has no request",
        ),
        (
            "no uid",
            serde_json::to_vec(&no_uid).expect("json"),
            "no uid",
        ),
        (
            "v1beta1",
            serde_json::to_vec(&wrong_version).expect("json"),
            "expected apiVersion admission.k8s.io/v1",
        ),
        (
            "wrong kind",
            serde_json::to_vec(&wrong_kind).expect("json"),
            "kind AdmissionReview",
        ),
    ];
    for endpoint in ["/validate", "/mutate"] {
        for (name, body, expected) in &cases {
            let resp = c
                .post(server.url(endpoint))
                .body(body.clone())
                .send()
                .await
                .expect("send");
            assert_eq!(resp.status(), 400, "{name} on {endpoint}");
            let text = resp.text().await.expect("text");
            assert!(text.contains(expected), "{name}: {text}");
        }
    }
    let (code, answer) = post(&c, &server.url("/validate"), &good).await;
    assert_eq!((code, &answer["response"]["allowed"]), (200, &json!(true)));
    let metrics = server.metrics_text().await;
    assert!(
        metrics
            .contains(r#"wfe_admission_requests_total{endpoint="validate",outcome="invalid"} 6"#),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn readable_reviews_outside_the_policy_are_allowed_untouched() {
    let server = start().await;
    let c = client(&server.ca);
    let mut create = review(CONTROLLER, json!({}), json!({"phase": "Completed"}));
    create["request"]["operation"] = json!("CREATE");
    create["request"]["oldObject"] = Value::Null;
    let mut main_resource = review(
        CONTROLLER,
        json!({"phase": "Completed"}),
        json!({"phase": "Running"}),
    );
    main_resource["request"]["subResource"] = Value::Null;
    let mut other = review(
        CONTROLLER,
        json!({"phase": "Completed"}),
        json!({"phase": "Running"}),
    );
    other["request"]["resource"] = json!({"group": "", "version": "v1", "resource": "configmaps"});
    for body in [create, main_resource, other] {
        for endpoint in ["/validate", "/mutate"] {
            let (code, answer) = post(&c, &server.url(endpoint), &body).await;
            assert_eq!(code, 200);
            assert_eq!(answer["response"]["allowed"], true);
            assert!(answer["response"].get("patch").is_none());
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn update_without_old_object_is_denied_with_400_inside() {
    let server = start().await;
    let c = client(&server.ca);
    let mut body = review(CONTROLLER, json!({}), json!({"phase": "Running"}));
    body["request"]["oldObject"] = Value::Null;
    for endpoint in ["/validate", "/mutate"] {
        let (code, answer) = post(&c, &server.url(endpoint), &body).await;
        assert_eq!(code, 200);
        assert_eq!(answer["response"]["allowed"], false);
        assert_eq!(answer["response"]["status"]["code"], 400);
        let message = answer["response"]["status"]["message"]
            .as_str()
            .expect("message");
        assert!(message.contains("no oldObject"), "{message}");
    }
    server.stop().await;
}

#[tokio::test]
async fn oversized_body_is_refused_before_it_is_read() {
    let server = start_with(|o| o.max_body_bytes = 64 * 1024, Config::default()).await;
    let c = client(&server.ca);
    // Declared too large: answered without sending a byte of body.
    let resp = c
        .post(server.url("/validate"))
        .header("content-length", "1000000000")
        .body(reqwest::Body::wrap_stream(futures_util::stream::pending::<
            Result<Vec<u8>, std::io::Error>,
        >()))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 413);
    assert!(resp.text().await.expect("text").contains("65536 bytes"));
    // Undeclared (chunked) and too large: cut off at the limit.
    let big = vec![b' '; 200 * 1024];
    let resp = c
        .post(server.url("/validate"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            vec![Ok::<_, std::io::Error>(big)],
        )))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 413);
    server.stop().await;
}

#[tokio::test]
async fn plain_http_on_the_tls_port_is_told_so() {
    let server = start().await;
    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    tcp.write_all(b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.0 400"), "{answer}");
    assert!(answer.contains("HTTPS server"), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn headers_trickled_too_slowly_are_cut_off_and_others_are_served() {
    let server = start_with(
        |o| o.header_read_timeout = Duration::from_millis(300),
        Config::default(),
    )
    .await;
    let mut slow = tls_stream(&server).await;
    slow.write_all(b"POST /validate HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .expect("write");
    // Meanwhile another client is served normally.
    let c = client(&server.ca);
    let body = review(CONTROLLER, json!({}), json!({"phase": "Running"}));
    let (code, _) = post(&c, &server.url("/validate"), &body).await;
    assert_eq!(code, 200);
    // The slow client never finishes its headers; the server closes on it (bounded wait).
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
    let closed = match read {
        Ok(Ok(_)) => true,
        Ok(Err(_)) => true,
        Err(_) => false,
    };
    assert!(
        closed,
        "the server kept a connection with unfinished headers open"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    server.stop().await;
}

/// A TLS handshake with `server` by a client that speaks only `version`.
async fn handshake_with(
    server: &TestServer,
    version: &'static rustls::SupportedProtocolVersion,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(server.ca.as_bytes()) {
        roots.add(cert.expect("pem")).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_protocol_versions(&[version])
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    connector
        .connect("localhost".try_into().expect("name"), tcp)
        .await
}

#[tokio::test]
async fn tls_12_and_13_are_both_accepted() {
    let server = start().await;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let tls = handshake_with(&server, version).await.expect("handshake");
        assert_eq!(tls.get_ref().1.protocol_version(), Some(version.version));
    }
    server.stop().await;
}

#[tokio::test]
async fn a_minimum_of_tls_13_refuses_a_tls_12_client() {
    use wfe_admission::server::tls::MinVersion;
    let server = start_with(|o| o.tls_min_version = MinVersion::Tls13, Config::default()).await;
    for (version, accepted) in [
        (&rustls::version::TLS12, false),
        (&rustls::version::TLS13, true),
    ] {
        let handshake = handshake_with(&server, version).await;
        assert_eq!(handshake.is_ok(), accepted, "{version:?}: {handshake:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn certificate_rotation_is_picked_up_without_restart() {
    let server = start_with(
        |o| o.cert_reload_interval = Duration::from_secs(3600),
        Config::default(),
    )
    .await;
    let dir = server.cert_dir();
    let old_client = client(&server.ca);
    let body = review(CONTROLLER, json!({}), json!({"phase": "Running"}));
    assert_eq!(
        post(&old_client, &server.url("/validate"), &body).await.0,
        200
    );

    // An unusable pair (key of another certificate) is refused; the old one keeps serving.
    let other = bundle();
    let mut broken = other.clone();
    broken.key = bundle().key;
    write_secret_volume(&dir, 2, &broken);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        post(&old_client, &server.url("/validate"), &body).await.0,
        200
    );

    // A good pair from another CA, swapped in like a Secret update: the directory watch
    // picks it up (the periodic re-read is an hour away).
    write_secret_volume(&dir, 3, &other);
    let new_client = client(&other.ca_cert);
    let mut switched = false;
    for _ in 0..100 {
        let fresh = client(&other.ca_cert);
        if fresh
            .post(server.url("/validate"))
            .json(&body)
            .send()
            .await
            .is_ok()
        {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(switched, "the new certificate was never served");
    assert_eq!(
        post(&new_client, &server.url("/validate"), &body).await.0,
        200
    );
    // Clients that only trust the old CA no longer connect.
    let stale = client(&server.ca);
    assert!(refused(&stale, &server.url("/validate"), &body).await);
    server.stop().await;
}

#[tokio::test]
async fn expired_certificate_is_refused_at_start() {
    install_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let expired = certgen::generate(
        &certgen::default_hosts(),
        Validity {
            valid_from: time::Duration::days(-10),
            valid_for: time::Duration::days(1),
        },
    )
    .expect("certs");
    write_secret_volume(dir.path(), 1, &expired);
    let policy = Arc::new(arc_swap::ArcSwap::from_pointee(
        wfe_admission::policy::Policy::new(Config::default()).expect("policy"),
    ));
    let err = wfe_admission::server::start(
        options_for(dir.path()),
        policy,
        wfe_admission::metrics::Metrics::new(),
        None,
    )
    .await
    .err()
    .expect("must refuse");
    assert!(err.to_string().contains("expired"), "{err}");
}

#[tokio::test]
async fn client_certificates_are_required_when_a_client_ca_is_set() {
    install_provider();
    let client_ca = bundle();
    let ca_dir = tempfile::tempdir().expect("tempdir");
    let ca_path = ca_dir.path().join("client-ca.crt");
    std::fs::write(&ca_path, &client_ca.ca_cert).expect("write");
    let path = ca_path.clone();
    let server = start_with(move |o| o.client_ca = Some(path), Config::default()).await;
    let body = review(CONTROLLER, json!({}), json!({"phase": "Running"}));

    let anonymous = client(&server.ca);
    assert!(refused(&anonymous, &server.url("/validate"), &body).await);

    let identity = |ca: &certgen::Bundle| {
        let (cert, key) = certgen::sign_with(
            &ca.ca_cert,
            &ca.ca_key,
            &["kube-apiserver".to_string()],
            Validity::days(1),
            true,
        )
        .expect("client cert");
        reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).expect("identity")
    };
    let trusted = client_builder(&server.ca)
        .identity(identity(&client_ca))
        .build()
        .expect("client");
    assert_eq!(post(&trusted, &server.url("/validate"), &body).await.0, 200);

    let other_ca = bundle();
    let with = |ca: &certgen::Bundle| {
        client_builder(&server.ca)
            .identity(identity(ca))
            .build()
            .expect("client")
    };
    assert!(refused(&with(&other_ca), &server.url("/validate"), &body).await);
    let metrics = server.metrics_text().await;
    assert!(
        metrics.contains("wfe_admission_client_auth_required 1"),
        "{metrics}"
    );

    // The CA reloads like the serving pair: swapped in whole, the other CA's callers get
    // through on new connections and the old one's do not.
    let swapped = ca_dir.path().join("client-ca.new");
    std::fs::write(&swapped, &other_ca.ca_cert).expect("write");
    std::fs::rename(&swapped, &ca_path).expect("swap");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let now_ok = !refused(&with(&other_ca), &server.url("/validate"), &body).await;
        if now_ok {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the client CA was not reloaded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(refused(&with(&client_ca), &server.url("/validate"), &body).await);
    server.stop().await;
}

#[tokio::test]
async fn probes_and_metrics_are_served_on_the_plain_port() {
    let server = start().await;
    let get = |path: &str| reqwest::get(server.probe_url(path));
    assert_eq!(get("/livez").await.expect("livez").status(), 200);
    assert_eq!(get("/readyz").await.expect("readyz").status(), 200);
    let c = client(&server.ca);
    let deny = review(
        CONTROLLER,
        json!({"phase": "Failed"}),
        json!({"phase": "Completed"}),
    );
    post(&c, &server.url("/validate"), &deny).await;
    let metrics = get("/metrics").await.expect("metrics");
    assert!(
        metrics
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/openmetrics-text"))
    );
    let text = metrics.text().await.expect("text");
    for needle in [
        r#"wfe_admission_requests_total{endpoint="validate",outcome="denied"} 1"#,
        r#"wfe_admission_denials_total{endpoint="validate",reason="IllegalPhaseTransition"} 1"#,
        "wfe_admission_request_duration_seconds_count{endpoint=\"validate\"} 1",
        "wfe_admission_certificate_not_after_timestamp_seconds ",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    server.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_refuses_new_ones() {
    let mut server = start().await;
    let c = client_builder(&server.ca)
        .http1_only()
        .build()
        .expect("client");
    let body = serde_json::to_vec(&review(CONTROLLER, json!({}), json!({"phase": "Running"})))
        .expect("json");
    // Send half the body, start shutdown, then send the rest: the request must complete.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    let half = body.len() / 2;
    tx.send(Ok(body[..half].to_vec())).await.expect("send");
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let url = server.url("/validate");
    let in_flight = tokio::spawn(async move {
        c.post(url)
            .header("content-length", body.len().to_string())
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let running = server.running.take().expect("running");
    let ready = Arc::clone(&running.ready);
    let addr = server.addr;
    let shutdown = tokio::spawn(running.shutdown());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!ready.load(std::sync::atomic::Ordering::Acquire));
    // The listener is closed: new connections are refused.
    assert!(TcpStream::connect(addr).await.is_err());
    let rest = {
        let full = serde_json::to_vec(&review(CONTROLLER, json!({}), json!({"phase": "Running"})))
            .expect("json");
        full[half..].to_vec()
    };
    tx.send(Ok(rest)).await.expect("send rest");
    drop(tx);
    let resp = in_flight
        .await
        .expect("join")
        .expect("in-flight request completed");
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.expect("json");
    assert_eq!(answer["response"]["allowed"], true);
    shutdown.await.expect("shutdown");
}

/// Writes one HTTP/1.1 request on `tls` and reads its answer: (status line + headers, body).
async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    tls: &mut S,
    body: &[u8],
) -> (String, Vec<u8>) {
    let head = format!(
        "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.expect("write head");
    tls.write_all(body).await.expect("write body");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut chunk))
            .await
            .expect("an answer within 10 s")
            .expect("read");
        assert!(n > 0, "connection closed before the answer");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .expect("content-length");
            if buf.len() >= end + 4 + length {
                return (head, buf[end + 4..end + 4 + length].to_vec());
            }
        }
    }
}

#[tokio::test]
async fn during_the_shutdown_delay_answers_go_on_and_http1_connections_are_closed_after_them() {
    let mut server = start_with(
        |o| o.shutdown_delay = Duration::from_secs(2),
        Config::default(),
    )
    .await;
    let body = serde_json::to_vec(&review(CONTROLLER, json!({}), json!({"phase": "Running"})))
        .expect("json");
    let mut kept = tls_stream(&server).await;
    let (head, _) = exchange(&mut kept, &body).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    let h2 = client(&server.ca);

    let running = server.running.take().expect("running");
    let ready = Arc::clone(&running.ready);
    let shutdown = tokio::spawn(running.shutdown());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!ready.load(std::sync::atomic::Ordering::Acquire));
    let readyz = reqwest::get(server.probe_url("/readyz"))
        .await
        .expect("probe");
    assert_eq!(readyz.status(), 503);

    // The idle keep-alive connection still carries a request, answered with `Connection: close`,
    // and is then closed by the server.
    let (head, answer) = exchange(&mut kept, &body).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    let answer: Value = serde_json::from_slice(&answer).expect("json");
    assert_eq!(answer["response"]["allowed"], true);
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), kept.read_to_end(&mut rest))
        .await
        .expect("closed by the server")
        .unwrap_or(0);
    assert_eq!(n, 0, "more bytes after the last answer");
    // New connections are still accepted during the delay, over both protocols.
    let mut fresh = tls_stream(&server).await;
    let (head, _) = exchange(&mut fresh, &body).await;
    assert!(head.contains("connection: close"), "{head}");
    let resp = h2
        .post(server.url("/validate"))
        .json(&review(CONTROLLER, json!({}), json!({"phase": "Running"})))
        .send()
        .await
        .expect("h2 during the delay");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("connection").is_none());

    shutdown.await.expect("shutdown");
    assert!(TcpStream::connect(server.addr).await.is_err());
}

/// The probe that arms the configurations and that `verify` uses: an answer over TLS checked
/// against the bundle, a refusal for want of a client certificate, or no answer.
#[tokio::test]
async fn the_probe_tells_open_from_client_certificate_only_from_untrusted() {
    use wfe_admission::arming::probe::{Answer, answers};
    use wfe_admission::webhook_configs::Endpoint;
    install_provider();
    let wait = std::time::Duration::from_secs(5);
    let at = |server: &TestServer, bundle: &str| Endpoint {
        url: server.url("/validate"),
        ca_bundle: Some(bundle.as_bytes().to_vec()),
    };
    let open = start().await;
    // A GET: answered without counting as an unreadable review.
    assert_eq!(
        answers(&at(&open, &open.ca), wait).await,
        Ok(Answer::Http(405))
    );
    let metrics = open.metrics_text().await;
    assert!(!metrics.contains("outcome=\"invalid\""), "{metrics}");
    assert!(
        metrics.contains("wfe_admission_client_auth_required 0"),
        "{metrics}"
    );
    let untrusted = answers(&at(&open, &bundle().ca_cert), wait).await;
    assert!(
        untrusted.as_ref().is_err_and(|e| e.contains("TLS")),
        "{untrusted:?}"
    );
    open.stop().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("client-ca.crt");
    std::fs::write(&path, bundle().ca_cert).expect("write");
    let closed = start_with(move |o| o.client_ca = Some(path), Config::default()).await;
    assert_eq!(
        answers(&at(&closed, &closed.ca), wait).await,
        Ok(Answer::ClientCertificateRequired)
    );
    closed.stop().await;
}
