//! Bad input against the real HTTPS server, beyond what tests/server.rs covers: each case gets
//! the answer docs/policy.md's "What each input gets" table gives it, and a good request right after it
//! still succeeds.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wfe_admission::config::Config;

use crate::support::*;

const OPERATOR: &str = "alice@example.com";
const LONG_REASON: &str =
    "Root cause fixed: memory limit raised to 2Gi in the deployment and verified by on-call";

/// A good request on a fresh connection: the server is still serving.
pub async fn still_serving(server: &TestServer) {
    let c = client(&server.ca);
    let body = review(
        CONTROLLER,
        json!({"phase": "Pending"}),
        json!({"phase": "Running"}),
    );
    let (code, answer) = post(&c, &server.url("/validate"), &body).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
}

/// HTTP 200 with the uid echoed; returns the response inside.
async fn answer(c: &reqwest::Client, server: &TestServer, endpoint: &str, body: &Value) -> Value {
    let (code, answer) = post(c, &server.url(endpoint), body).await;
    assert_eq!(code, 200, "{endpoint}: {answer}");
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(
        answer["response"]["uid"], body["request"]["uid"],
        "{endpoint}: {answer}"
    );
    answer["response"].clone()
}

fn denied(r: &Value, code: u64) -> String {
    assert_eq!(r["allowed"], false, "{r}");
    assert_eq!(r["status"]["code"], code, "{r}");
    let reason = if code == 403 {
        "Forbidden"
    } else {
        "BadRequest"
    };
    assert_eq!(r["status"]["reason"], reason, "{r}");
    let message = r["status"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty() && !message.contains('\n'), "{r}");
    message.to_string()
}

fn allowed_untouched(r: &Value) {
    assert_eq!(r["allowed"], true, "{r}");
    assert!(r.get("patch").is_none(), "{r}");
    assert!(r.get("status").is_none(), "{r}");
}

fn decoded_patch(r: &Value) -> json_patch::Patch {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(r["patch"].as_str().unwrap_or_default())
        .expect("base64 patch");
    serde_json::from_slice(&bytes).expect("JSON Patch")
}

/// The object after the patch of a mutate answer (the object unchanged when there is none).
fn patched(body: &Value, r: &Value) -> Value {
    let mut object = body["request"]["object"].clone();
    if r.get("patch").is_some() {
        json_patch::patch(&mut object, &decoded_patch(r)).expect("the patch applies");
    }
    object
}

fn configmap(status: Option<Value>) -> Value {
    let mut cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "wfe-1", "namespace": "default", "uid": "11111111-0000-4000-8000-000000000001", "resourceVersion": "7"},
        "data": {"phase": "Running", "key": "value"}
    });
    if let Some(status) = status {
        cm["status"] = status;
    }
    cm
}

#[tokio::test]
async fn an_object_of_another_kind_under_the_guarded_resource_is_judged_by_the_resource() {
    let server = start().await;
    let c = client(&server.ca);
    // A ConfigMap's body sent for PUT workflowexecutions/wfe-1/status. The API server routes by
    // resource; the object's own kind is not trusted, so it cannot switch the guard off.
    let mut plain = review(CONTROLLER, json!({}), json!({}));
    plain["request"]["object"] = configmap(None);
    plain["request"]["oldObject"] = configmap(None);
    let r = answer(&c, &server, "/validate", &plain).await;
    allowed_untouched(&r);
    let r = answer(&c, &server, "/mutate", &plain).await;
    allowed_untouched(&r);

    // The same, carrying an illegal move, also under another request kind: still denied.
    let mut sneaky = plain.clone();
    sneaky["request"]["object"] = configmap(Some(json!({"phase": "Running"})));
    sneaky["request"]["oldObject"] = configmap(Some(json!({"phase": "Completed"})));
    for kind in [
        json!({"group": "kubernaut.ai", "version": "v1alpha1", "kind": "WorkflowExecution"}),
        json!({"group": "", "version": "v1", "kind": "ConfigMap"}),
    ] {
        sneaky["request"]["kind"] = kind.clone();
        sneaky["request"]["requestKind"] = kind;
        let r = answer(&c, &server, "/validate", &sneaky).await;
        let message = denied(&r, 403);
        assert!(message.contains("Completed → Running"), "{message}");
        // The mutating webhook never rewrites the phase, so the move reaches validation.
        let r = answer(&c, &server, "/mutate", &sneaky).await;
        assert_eq!(r["allowed"], true, "{r}");
        assert_eq!(patched(&sneaky, &r)["status"]["phase"], "Running", "{r}");
    }
    still_serving(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn update_without_object_or_with_a_status_that_is_not_an_object_is_a_400_inside() {
    let server = start().await;
    let c = client(&server.ca);
    // (UPDATE without oldObject is in tests/server.rs.)
    let mut no_object = review(
        CONTROLLER,
        json!({"phase": "Pending"}),
        json!({"phase": "Running"}),
    );
    no_object["request"]["object"] = Value::Null;
    for endpoint in ["/validate", "/mutate"] {
        let r = answer(&c, &server, endpoint, &no_object).await;
        let message = denied(&r, 400);
        assert!(message.contains("has no object"), "{message}");
    }
    for status in [json!("Running"), json!(["Running"]), json!(42), json!(true)] {
        let body = review(CONTROLLER, json!({"phase": "Pending"}), status.clone());
        for endpoint in ["/validate", "/mutate"] {
            let r = answer(&c, &server, endpoint, &body).await;
            let message = denied(&r, 400);
            assert!(
                message.contains("status must be an object"),
                "{status}: {message}"
            );
        }
    }
    still_serving(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn delete_and_connect_are_allowed_untouched() {
    let server = start().await;
    let c = client(&server.ca);
    // (CREATE is in tests/server.rs.) An illegal-looking move inside must not matter.
    let base = review(
        CONTROLLER,
        json!({"phase": "Completed"}),
        json!({"phase": "Running"}),
    );
    let mut delete = base.clone();
    delete["request"]["operation"] = json!("DELETE");
    delete["request"]["object"] = Value::Null;
    delete["request"]["options"] = json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"});
    let mut delete_with_object = base.clone();
    delete_with_object["request"]["operation"] = json!("DELETE");
    let mut connect = base.clone();
    connect["request"]["operation"] = json!("CONNECT");
    connect["request"]["oldObject"] = Value::Null;
    for (name, body) in [
        ("DELETE", &delete),
        ("DELETE with object", &delete_with_object),
        ("CONNECT", &connect),
    ] {
        for endpoint in ["/validate", "/mutate"] {
            let r = answer(&c, &server, endpoint, body).await;
            assert_eq!(r["allowed"], true, "{name} on {endpoint}: {r}");
            allowed_untouched(&r);
        }
    }
    still_serving(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn status_fields_of_the_wrong_type_get_a_sane_answer() {
    let server = start().await;
    let c = client(&server.ca);
    let stored = json!({
        "phase": "Running",
        "startTime": "2026-01-01T10:00:00Z",
        "conditions": [{"type": "Ready", "status": "True", "reason": "Running", "message": "m", "lastTransitionTime": "2026-01-01T10:00:00Z"}],
    });

    // phase as a number (and other non-strings): denied 403 UnknownPhase by /validate; /mutate
    // never rewrites the phase.
    for phase in [
        json!(2),
        json!(true),
        json!({"name": "Running"}),
        json!(["Running"]),
    ] {
        let mut new = stored.clone();
        new["phase"] = phase.clone();
        let body = review(CONTROLLER, stored.clone(), new);
        let message = denied(&answer(&c, &server, "/validate", &body).await, 403);
        assert!(message.contains("must be a string"), "{phase}: {message}");
        let r = answer(&c, &server, "/mutate", &body).await;
        assert_eq!(r["allowed"], true, "{r}");
        assert_eq!(patched(&body, &r)["status"]["phase"], phase, "{r}");
    }

    // conditions as an object: the stored list is kept, with a warning.
    let mut new = stored.clone();
    new["conditions"] = json!({"type": "Ready", "status": "False"});
    let body = review(CONTROLLER, stored.clone(), new);
    let r = answer(&c, &server, "/mutate", &body).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(
        patched(&body, &r)["status"]["conditions"],
        stored["conditions"]
    );
    let warnings = r["warnings"].to_string();
    assert!(warnings.contains("must be a list"), "{r}");
    allowed_untouched(&answer(&c, &server, "/validate", &body).await);

    // startTime as a number: write-once, so the stored value comes back, with a warning.
    let mut new = stored.clone();
    new["startTime"] = json!(1767261600);
    let body = review(CONTROLLER, stored.clone(), new);
    let r = answer(&c, &server, "/mutate", &body).await;
    assert_eq!(
        patched(&body, &r)["status"]["startTime"],
        "2026-01-01T10:00:00Z"
    );
    assert!(r["warnings"].to_string().contains("write-once"), "{r}");
    // A number where no time was stored: no duration can be derived from it, and the answer
    // is still a plain allow (the CRD schema, after the webhooks, refuses the type).
    let body = review(
        CONTROLLER,
        json!({"phase": "Running"}),
        json!({"phase": "Completed", "startTime": 17}),
    );
    let r = answer(&c, &server, "/mutate", &body).await;
    let object = patched(&body, &r);
    assert_eq!(object["status"]["startTime"], 17);
    assert!(object["status"].get("duration").is_none(), "{object}");
    assert!(object["status"]["completionTime"].is_string(), "{object}");

    // blockClearance as a string: from a non-owner, the stored clearance is restored; from the
    // operator over a stored, attributed clearance, the attribution is not lost silently.
    let clearance = json!({"clearedBy": OPERATOR, "clearedAt": "2026-01-01T09:00:00Z", "clearReason": LONG_REASON, "clearMethod": "StatusField"});
    let mut with_clearance = stored.clone();
    with_clearance["blockClearance"] = clearance.clone();
    let mut new = with_clearance.clone();
    new["blockClearance"] = json!("cleared");
    let body = review(CONTROLLER, with_clearance.clone(), new.clone());
    let r = answer(&c, &server, "/mutate", &body).await;
    assert_eq!(patched(&body, &r)["status"]["blockClearance"], clearance);
    assert!(r["warnings"].to_string().contains("blockClearance"), "{r}");

    let body = review(OPERATOR, with_clearance.clone(), new);
    let r = answer(&c, &server, "/validate", &body).await;
    let message = denied(&r, 403);
    assert!(message.contains("blockClearance"), "{message}");
    // A new clearance that is not an object cannot be attributed: refused as well.
    let body = review(
        OPERATOR,
        stored.clone(),
        json!({"phase": "Running", "blockClearance": "cleared"}),
    );
    let message = denied(&answer(&c, &server, "/validate", &body).await, 403);
    assert!(message.contains("blockClearance"), "{message}");

    still_serving(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn unknown_phase_values_are_denied_403_and_never_rewritten() {
    let server = start().await;
    let c = client(&server.ca);
    let long = "Running".repeat(10_000);
    for phase in [
        "Paused",
        "running",
        "RUNNING",
        " Running",
        "Running\n",
        "Rünning",
        "Completed; DROP TABLE",
        long.as_str(),
    ] {
        let body = review(
            CONTROLLER,
            json!({"phase": "Pending"}),
            json!({"phase": phase}),
        );
        let r = answer(&c, &server, "/validate", &body).await;
        let message = denied(&r, 403);
        assert!(
            message.contains("Pending, Running, Completed, Failed"),
            "{message}"
        );
        assert!(message.len() < 64 * 1024 || phase.len() > 1000, "{message}");
        let r = answer(&c, &server, "/mutate", &body).await;
        assert_eq!(r["allowed"], true, "{r}");
        assert_eq!(patched(&body, &r)["status"]["phase"], phase);
        // From a writer that does not own the phase: refused for that, on one line too.
        let body = review(
            OPERATOR,
            json!({"phase": "Pending"}),
            json!({"phase": phase}),
        );
        let message = denied(&answer(&c, &server, "/validate", &body).await, 403);
        assert!(message.contains("may not move"), "{message}");
    }
    // A stored value outside the enum may be repaired to a known phase (docs/policy.md).
    let body = review(
        CONTROLLER,
        json!({"phase": "Paused"}),
        json!({"phase": "Failed"}),
    );
    assert_eq!(
        answer(&c, &server, "/validate", &body).await["allowed"],
        true
    );
    still_serving(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn more_unreadable_bodies_get_a_400_and_the_server_keeps_serving() {
    // (Malformed, truncated, v1beta1, wrong kind, no request, no uid are in tests/server.rs.)
    let server = start().await;
    let c = client(&server.ca);
    let good = review(CONTROLLER, json!({}), json!({"phase": "Running"}));
    let mut uid_number = good.clone();
    uid_number["request"]["uid"] = json!(42);
    let mut request_array = good.clone();
    request_array["request"] = json!([1, 2, 3]);
    let mut bad_operation = good.clone();
    bad_operation["request"]["operation"] = json!("PATCH");
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    // A broken byte where /validate skips (a condition) and where both skip (spec): refused by
    // both alike (the whole body must be UTF-8), not judged by one and refused by the other.
    let mut broken = good.clone();
    broken["request"]["object"]["status"]["conditions"] =
        json!([{"type": "Ready", "message": "@@"}]);
    broken["request"]["object"]["spec"] = json!({"note": "##"});
    let broken = serde_json::to_vec(&broken).unwrap_or_default();
    let replace = |bytes: Vec<u8>, marker: &[u8]| -> Vec<u8> {
        let at = bytes.windows(2).position(|w| w == marker).expect("marker");
        let mut out = bytes;
        out[at] = 0xff;
        out
    };
    let broken_condition = replace(broken.clone(), b"@@");
    let broken_spec = replace(broken.clone(), b"##");
    // What building a value refuses and serde_json's skipping let through, in a status field
    // /validate does not read (found by the fuzzer): both endpoints must refuse it alike.
    let in_condition = |text: &str| -> Vec<u8> {
        String::from_utf8_lossy(&broken)
            .replace("\"@@\"", text)
            .into_bytes()
    };
    let nested = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty body", Vec::new()),
        ("not UTF-8", vec![0xff, 0xfe, 0x00, 0x7b]),
        ("not UTF-8 in a status condition", broken_condition),
        ("not UTF-8 in spec", broken_spec),
        (
            "half a surrogate pair in a status condition",
            in_condition(r#""0\uD822ply""#),
        ),
        (
            "a number past f64 in a status condition",
            in_condition("1e400"),
        ),
        ("200 deep in a status condition", in_condition(&nested)),
        ("JSON null", b"null".to_vec()),
        ("a JSON string", br#""AdmissionReview""#.to_vec()),
        ("nested 100000 deep", deep.into_bytes()),
        (
            "uid is a number",
            serde_json::to_vec(&uid_number).unwrap_or_default(),
        ),
        (
            "request is an array",
            serde_json::to_vec(&request_array).unwrap_or_default(),
        ),
        (
            "unknown operation",
            serde_json::to_vec(&bad_operation).unwrap_or_default(),
        ),
    ];
    let post_bytes = |endpoint: &'static str, body: Vec<u8>| {
        c.post(server.url(endpoint))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for (name, body) in cases {
        for endpoint in ["/validate", "/mutate"] {
            let resp = post_bytes(endpoint, body.clone()).await.expect("send");
            assert_eq!(resp.status(), 400, "{name} on {endpoint}");
            let content_type = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            assert!(
                content_type.starts_with("text/plain"),
                "{name}: {content_type}"
            );
            let text = resp.text().await.expect("text");
            assert!(text.contains("AdmissionReview"), "{name}: {text}");
        }
    }
    // The same in spec, which neither endpoint reads or builds: both judge the review alike.
    for text in [r#""0\uD822ply""#, "1e400", &nested] {
        let body = String::from_utf8_lossy(&broken).replace("\"##\"", text);
        for endpoint in ["/validate", "/mutate"] {
            let resp = post_bytes(endpoint, body.clone().into_bytes())
                .await
                .expect("send");
            assert_eq!(resp.status(), 200, "{text} in spec on {endpoint}");
            let answer: Value = resp.json().await.expect("json");
            assert_eq!(answer["response"]["allowed"], true, "{endpoint}: {answer}");
        }
    }
    // Another method or path on the TLS port: a plain HTTP error, not an AdmissionReview.
    let resp = c.get(server.url("/validate")).send().await.expect("send");
    assert_eq!(resp.status(), 405);
    let resp = c
        .post(server.url("/admit"))
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 404);
    still_serving(&server).await;
    server.stop().await;
}

/// Writes a POST with `head_extra` headers, then the body in `chunk`-byte pieces (as HTTP/1.1
/// chunked encoding when `chunked`) every `pause`, until `total` bytes or the answer arrives.
/// Returns the status line and how many body bytes had been handed to the socket by then.
async fn slow_upload(
    server: &TestServer,
    chunked: bool,
    total: usize,
    chunk: usize,
    pause: Duration,
) -> (String, usize) {
    let tls = tls_stream(server).await;
    let (mut reader, mut writer) = tokio::io::split(tls);
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {total}")
    };
    let head = format!(
        "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    );
    let sent = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicBool::new(false));
    let writer_task = {
        let (sent, answered) = (Arc::clone(&sent), Arc::clone(&answered));
        tokio::spawn(async move {
            writer.write_all(head.as_bytes()).await?;
            let piece = vec![b' '; chunk];
            while sent.load(Ordering::Acquire) < total && !answered.load(Ordering::Acquire) {
                if chunked {
                    writer
                        .write_all(format!("{chunk:x}\r\n").as_bytes())
                        .await?;
                    writer.write_all(&piece).await?;
                    writer.write_all(b"\r\n").await?;
                } else {
                    writer.write_all(&piece).await?;
                }
                writer.flush().await?;
                sent.fetch_add(chunk, Ordering::AcqRel);
                tokio::time::sleep(pause).await;
            }
            Ok::<_, std::io::Error>(())
        })
    };
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(60), reader.read(&mut buf))
        .await
        .expect("an answer within 60 s")
        .expect("read");
    answered.store(true, Ordering::Release);
    let at_answer = sent.load(Ordering::Acquire);
    writer_task.abort();
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    (
        text.lines().next().unwrap_or_default().to_string(),
        at_answer,
    )
}

#[tokio::test]
async fn an_enormous_body_is_refused_long_before_it_is_all_sent() {
    const LIMIT: usize = 1024 * 1024;
    const HUNDRED_MB: usize = 100 * 1024 * 1024;
    let server = start_with(|o| o.max_body_bytes = LIMIT, Config::default()).await;
    // 100 MB at 32 KiB every 2 ms (~16 MB/s): reading it all would take over 6 s.
    let chunk = 32 * 1024;
    let pause = Duration::from_millis(2);
    // Declared: refused from the headers, before a byte of body matters.
    let (status, sent) = slow_upload(&server, false, HUNDRED_MB, chunk, pause).await;
    println!("declared 100 MB: {status:?} after {sent} body bytes were sent");
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    assert!(sent < HUNDRED_MB / 10, "{sent} bytes were sent first");
    // Chunked (no length): cut off at the limit.
    let (status, sent) = slow_upload(&server, true, HUNDRED_MB, chunk, pause).await;
    println!("chunked 100 MB: {status:?} after {sent} body bytes were sent");
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    assert!(sent >= LIMIT, "answered before the limit: {sent}");
    assert!(sent < HUNDRED_MB / 10, "{sent} bytes were sent first");
    still_serving(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn a_body_trickled_past_its_deadline_gets_408_and_the_server_keeps_serving() {
    let server = start_with(
        |o| o.body_read_timeout = Duration::from_secs(1),
        Config::default(),
    )
    .await;
    // 10 bytes every 200 ms of a declared 100 kB: over 30 minutes to send it all.
    let pause = Duration::from_millis(200);
    let (status, sent) = slow_upload(&server, false, 100_000, 10, pause).await;
    println!("declared 100 kB at 50 B/s: {status:?} after {sent} body bytes were sent");
    assert!(status.starts_with("HTTP/1.1 408"), "{status}");
    assert!(sent < 100_000, "{sent} bytes were sent first");
    let (status, sent) = slow_upload(&server, true, 100_000, 10, pause).await;
    println!("chunked at 50 B/s: {status:?} after {sent} body bytes were sent");
    assert!(status.starts_with("HTTP/1.1 408"), "{status}");
    still_serving(&server).await;
    server.stop().await;
}

/// A ClientHello with record and hello version 3.`minor`, no supported_versions extension (so
/// the hello version is the one offered). `modern` adds what a TLS 1.2 client sends and TLS 1.0
/// has not (AEAD suites, signature_algorithms), so that only the version differs from a hello
/// the server accepts; without it, the hello is the one an old client really sends.
fn client_hello(minor: u8, modern: bool) -> Vec<u8> {
    let mut hello = Vec::new();
    hello.extend([3, minor]); // client_version
    hello.extend([0x5a; 32]); // random
    hello.push(0); // no session id
    let mut suites: Vec<u16> = vec![0xc013, 0xc014, 0x002f, 0x0035, 0x000a];
    if modern {
        suites.splice(0..0, [0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8]);
    }
    hello.extend(((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        hello.extend(s.to_be_bytes());
    }
    hello.extend([1, 0]); // compression: null
    let mut ext = Vec::new();
    let name = b"localhost";
    ext.extend([0x00, 0x00]); // server_name
    ext.extend(((name.len() + 5) as u16).to_be_bytes());
    ext.extend(((name.len() + 3) as u16).to_be_bytes());
    ext.push(0);
    ext.extend((name.len() as u16).to_be_bytes());
    ext.extend(name);
    ext.extend([0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]); // groups
    ext.extend([0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]); // ec_point_formats
    if modern {
        // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
        ext.extend([
            0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01,
        ]);
    }
    hello.extend((ext.len() as u16).to_be_bytes());
    hello.extend(ext);
    let mut handshake = vec![1]; // client_hello
    handshake.extend(&(hello.len() as u32).to_be_bytes()[1..]);
    handshake.extend(hello);
    let mut record = vec![0x16, 3, minor.min(1)];
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

/// Sends a ClientHello on a fresh connection; returns the first bytes of the answer.
async fn first_answer(server: &TestServer, hello: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    tcp.write_all(hello).await.expect("write");
    let mut reply = vec![0u8; 16];
    let mut got = 0;
    while got < 7 {
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut reply[got..]))
            .await
            .expect("the server answers")
            .expect("read");
        if n == 0 {
            break;
        }
        got += n;
    }
    reply.truncate(got);
    reply
}

const PROTOCOL_VERSION: u8 = 70;
const HANDSHAKE_FAILURE: u8 = 40;

#[tokio::test]
async fn tls_10_and_11_client_hellos_are_refused_with_a_fatal_alert() {
    let server = start().await;
    // Control: the same hello as TLS 1.2 gets a ServerHello (handshake record, type 2).
    let reply = first_answer(&server, &client_hello(3, true)).await;
    assert_eq!(
        (reply.first(), reply.get(5)),
        (Some(&0x16), Some(&2)),
        "TLS 1.2 control: {reply:02x?}"
    );
    for (name, minor) in [("TLS 1.0", 1u8), ("TLS 1.1", 2u8)] {
        // Only the version differs from the control: refused for the version.
        let reply = first_answer(&server, &client_hello(minor, true)).await;
        println!("{name} hello (modern extensions) answered with {reply:02x?}");
        assert_eq!(reply.len(), 7, "{name}: {reply:02x?}");
        assert_eq!(reply[0], 0x15, "{name}: not an alert record: {reply:02x?}");
        assert_eq!(&reply[5..7], &[2, PROTOCOL_VERSION], "{name}: {reply:02x?}");
        // As an old client really sends it (no signature_algorithms): refused as well, rustls
        // says handshake_failure because it checks that extension before the version.
        let reply = first_answer(&server, &client_hello(minor, false)).await;
        println!("{name} hello (as old clients send it) answered with {reply:02x?}");
        assert_eq!(reply.len(), 7, "{name}: {reply:02x?}");
        assert_eq!(reply[0], 0x15, "{name}: not an alert record: {reply:02x?}");
        assert_eq!(reply[5], 2, "{name}: not fatal: {reply:02x?}");
        assert!(
            [PROTOCOL_VERSION, HANDSHAKE_FAILURE].contains(&reply[6]),
            "{name}: {reply:02x?}"
        );
    }
    still_serving(&server).await;
    server.stop().await;
}

/// `openssl s_client` against the server; returns (succeeded, everything it printed).
fn s_client(addr: std::net::SocketAddr, args: &[&str]) -> Option<(bool, String)> {
    let out = Command::new("openssl")
        .arg("s_client")
        .args(["-connect", &addr.to_string(), "-servername", "localhost"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), text))
}

#[tokio::test]
async fn openssl_cannot_negotiate_tls_10_or_11_because_the_server_refuses_them() {
    if Command::new("openssl").arg("version").output().is_err() {
        println!("SKIPPED: no openssl binary; the raw ClientHello test covers TLS 1.0/1.1");
        return;
    }
    let server = start().await;
    let addr = server.addr;
    let (result12, result10, result11) = tokio::task::spawn_blocking(move || {
        (
            s_client(addr, &["-tls1_2"]),
            s_client(addr, &["-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"]),
            s_client(addr, &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"]),
        )
    })
    .await
    .expect("join");
    // The same client and flags negotiate TLS 1.2 with this server.
    let (ok, text) = result12.expect("openssl runs");
    assert!(ok && text.contains("TLSv1.2"), "TLS 1.2 failed:\n{text}");
    for (name, result) in [("TLS 1.0", result10), ("TLS 1.1", result11)] {
        let (ok, text) = result.expect("openssl runs");
        println!(
            "openssl s_client {name}: {}",
            text.lines().find(|l| l.contains("alert")).unwrap_or("?")
        );
        assert!(!ok, "{name} handshake succeeded:\n{text}");
        // Refused by the server, not by the client: the client sent its hello (a client that
        // cannot offer the version says "no protocols available" and writes nothing), and
        // what it read back is the server's fatal alert record (7 bytes), no ServerHello.
        assert!(
            !text.contains("no protocols available") && !text.contains("written 0 bytes"),
            "the client could not offer {name}:\n{text}"
        );
        assert!(
            text.contains("SSL alert number 70") || text.contains("SSL alert number 40"),
            "{name}: no protocol_version/handshake_failure alert from the server:\n{text}"
        );
        assert!(text.contains("has read 7 bytes"), "{name}:\n{text}");
    }
    still_serving(&server).await;
    server.stop().await;
}
