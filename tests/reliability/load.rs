//! A small, bounded load loop: N AdmissionReviews across C concurrent tasks over keep-alive
//! connections (reqwest over rustls), loopback only. It records what every request got; the
//! tests decide what is acceptable. No timing is asserted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::support::{CONTROLLER, review};

/// The load tests share a 2-core machine with the rest of the suite: one load at a time.
pub static ONE_LOAD_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// How a request ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// HTTP 200 and the expected decision.
    Correct,
    /// An answer, but not the expected one.
    Wrong(String),
    /// No answer: the error and whether it happened while connecting.
    Failed { connect: bool, error: String },
}

/// One request of the load.
#[derive(Debug, Clone)]
pub struct Sent {
    pub uid: String,
    /// Index of the client (in `Plan::clients`) that sent it.
    pub client: usize,
    pub outcome: Outcome,
}

#[derive(Debug, Default)]
pub struct Report {
    pub sent: Vec<Sent>,
    pub elapsed: Duration,
}

impl Report {
    pub fn correct(&self) -> usize {
        self.sent
            .iter()
            .filter(|s| matches!(s.outcome, Outcome::Correct))
            .count()
    }

    pub fn wrong(&self) -> Vec<&Sent> {
        self.sent
            .iter()
            .filter(|s| matches!(s.outcome, Outcome::Wrong(_)))
            .collect()
    }

    pub fn failed(&self) -> Vec<&Sent> {
        self.sent
            .iter()
            .filter(|s| matches!(s.outcome, Outcome::Failed { .. }))
            .collect()
    }

    /// Failures other than "could not connect".
    pub fn failed_after_connecting(&self) -> Vec<&Sent> {
        self.sent
            .iter()
            .filter(|s| matches!(s.outcome, Outcome::Failed { connect: false, .. }))
            .collect()
    }

    pub fn summary(&self) -> String {
        let first_wrong = self
            .sent
            .iter()
            .find_map(|s| match &s.outcome {
                Outcome::Wrong(why) => Some(format!(" (first wrong: {why})")),
                _ => None,
            })
            .unwrap_or_default();
        format!(
            "{} requests in {:.1}s: {} correct, {} wrong, {} failed ({} while connecting){first_wrong}",
            self.sent.len(),
            self.elapsed.as_secs_f64(),
            self.correct(),
            self.wrong().len(),
            self.failed().len(),
            self.failed().len() - self.failed_after_connecting().len(),
        )
    }
}

/// What each request sends and expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// Alternating: a legal move on /validate (allowed), an illegal one on /validate (denied
    /// 403), a partial write on /mutate (patched).
    Mixed,
    /// Only illegal moves on /validate: every answer is a denial (logged with its uid).
    Denials,
}

/// Checks the `response` of an answer.
pub type Check = fn(&Value) -> Result<(), String>;

/// The i-th request of a mix: endpoint, body, and a check of the answer.
pub fn request(mix: Mix, i: usize) -> (&'static str, Value, Check) {
    let uid = format!("00000000-0000-4000-8000-{i:012}");
    let kind = match mix {
        Mix::Mixed => i % 3,
        Mix::Denials => 1,
    };
    let (endpoint, mut body, check): (_, _, Check) = match kind {
        0 => (
            "/validate",
            review(
                CONTROLLER,
                json!({"phase": "Pending"}),
                json!({"phase": "Running"}),
            ),
            |r| expect(r, true, None),
        ),
        1 => (
            "/validate",
            review(
                CONTROLLER,
                json!({"phase": "Completed"}),
                json!({"phase": "Running"}),
            ),
            |r| expect(r, false, Some(403)),
        ),
        _ => (
            "/mutate",
            review(
                CONTROLLER,
                json!({"phase": "Running", "startTime": "2026-01-01T10:00:00Z", "ephemeralCredentialIDs": [7]}),
                json!({"phase": "Completed"}),
            ),
            |r| {
                expect(r, true, None)?;
                if r["patchType"] == "JSONPatch" {
                    Ok(())
                } else {
                    Err(format!("no patch in {r}"))
                }
            },
        ),
    };
    body["request"]["uid"] = json!(uid);
    (endpoint, body, check)
}

fn expect(response: &Value, allowed: bool, code: Option<u64>) -> Result<(), String> {
    if response["allowed"] != allowed {
        return Err(format!("expected allowed={allowed}: {response}"));
    }
    if let Some(code) = code
        && response["status"]["code"] != code
    {
        return Err(format!("expected status.code {code}: {response}"));
    }
    Ok(())
}

/// The load's shape.
#[derive(Clone)]
pub struct Plan {
    /// Base URL, e.g. `https://localhost:8443`.
    pub base: String,
    pub clients: Vec<reqwest::Client>,
    pub mix: Mix,
    /// Stop after this many requests...
    pub total: usize,
    /// ...or when this turns true (soak), whichever comes first.
    pub stop: Option<Arc<AtomicBool>>,
    pub concurrency: usize,
    /// Requests answered or failed so far (for tests that act mid-load).
    pub progress: Arc<AtomicUsize>,
    /// A task ends at its first connection failure (the server is gone: SIGTERM).
    pub stop_on_connect_error: bool,
}

impl Plan {
    pub fn new(base: String, clients: Vec<reqwest::Client>, mix: Mix, total: usize) -> Self {
        Self {
            base,
            clients,
            mix,
            total,
            stop: None,
            concurrency: 8,
            progress: Arc::new(AtomicUsize::new(0)),
            stop_on_connect_error: false,
        }
    }
}

/// Runs the plan: `concurrency` tasks take request numbers from one counter; task `t` uses
/// client `t % clients.len()`.
pub async fn run(plan: Plan) -> Report {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..plan.concurrency {
        let client_index = t % plan.clients.len();
        let client = plan.clients[client_index].clone();
        let next = Arc::clone(&next);
        let plan = plan.clone();
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            loop {
                if plan
                    .stop
                    .as_ref()
                    .is_some_and(|s| s.load(Ordering::Acquire))
                {
                    break;
                }
                let i = next.fetch_add(1, Ordering::AcqRel);
                if i >= plan.total {
                    break;
                }
                let mut result = one(&client, &plan.base, plan.mix, i).await;
                result.client = client_index;
                plan.progress.fetch_add(1, Ordering::AcqRel);
                let gone = matches!(result.outcome, Outcome::Failed { connect: true, .. });
                sent.push(result);
                if gone && plan.stop_on_connect_error {
                    break;
                }
            }
            sent
        }));
    }
    let mut report = Report::default();
    for task in tasks {
        match task.await {
            Ok(sent) => report.sent.extend(sent),
            Err(e) => report.sent.push(Sent {
                uid: String::new(),
                client: 0,
                outcome: Outcome::Wrong(format!("load task panicked: {e}")),
            }),
        }
    }
    report.elapsed = started.elapsed();
    report
}

async fn one(client: &reqwest::Client, base: &str, mix: Mix, i: usize) -> Sent {
    let (endpoint, body, check) = request(mix, i);
    let uid = body["request"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let result = client
        .post(format!("{base}{endpoint}"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap_or_default())
        .send()
        .await;
    let outcome = match result {
        Err(e) => Outcome::Failed {
            connect: e.is_connect(),
            error: error_chain(&e),
        },
        Ok(resp) => {
            let status = resp.status();
            match resp.bytes().await {
                Err(e) => Outcome::Failed {
                    connect: false,
                    error: format!("reading the body: {}", error_chain(&e)),
                },
                Ok(bytes) if status != 200 => Outcome::Wrong(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&bytes)
                )),
                Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                    Err(e) => Outcome::Wrong(format!("not JSON ({e})")),
                    Ok(answer) if answer["response"]["uid"] != uid.as_str() => {
                        Outcome::Wrong(format!("uid not echoed: {answer}"))
                    }
                    Ok(answer) => match check(&answer["response"]) {
                        Ok(()) => Outcome::Correct,
                        Err(e) => Outcome::Wrong(e),
                    },
                },
            }
        }
    };
    Sent {
        uid,
        client: 0,
        outcome,
    }
}

/// The error and its sources on one line.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
