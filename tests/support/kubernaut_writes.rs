#![allow(dead_code)] // each includer uses a part of it
//! kubernaut's real status writes (tests/data/kubernaut/writes.yaml) and what each one sends.
//! Included by path in the policy's unit tests, the e2e suite and the benchmark's lifecycle rows,
//! so that all replay the same data. Times and durations are formatted here on their own, as
//! kubernaut's Go code does, not with the webhook's helpers, so that they check each other.

use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub type Status = Map<String, Value>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Writes {
    pub lifecycles: Vec<Lifecycle>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lifecycle {
    pub name: String,
    pub writes: Vec<Write>,
}

/// Who writes, as kubernaut deploys it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Who {
    /// The WorkflowExecution controller, whose process also runs the executors.
    Controller,
    /// The RemediationOrchestrator.
    Orchestrator,
    /// A person with kubectl.
    Operator,
}

impl Who {
    pub fn as_str(self) -> &'static str {
        match self {
            Who::Controller => "controller",
            Who::Orchestrator => "orchestrator",
            Who::Operator => "operator",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// The whole status read back, changed and sent with the read resourceVersion.
    Put,
    /// A JSON merge patch of the status.
    Merge,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Put => "PUT",
            Via::Merge => "merge patch",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Write {
    pub what: String,
    pub writer: Who,
    pub via: Via,
    /// Seconds since the lifecycle began, on the writer's clock.
    pub at: f64,
    #[serde(default)]
    pub set: Status,
    #[serde(default)]
    pub conditions: Vec<Value>,
    #[serde(default)]
    pub expect: Expect,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Status fields the webhook sets otherwise than sent (`blockClearance.clearedBy` for a key
    /// inside the clearance).
    #[serde(default)]
    pub changed: Vec<String>,
    /// The deny reason, when the write is refused.
    pub denied: Option<String>,
    /// A piece of the denial's message.
    pub message: Option<String>,
}

/// The data, from the repository that includes this file at its root.
pub fn load() -> Result<Writes, String> {
    load_from(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))
}

/// The data of the repository at `repo`.
pub fn load_from(repo: &std::path::Path) -> Result<Writes, String> {
    let path = repo.join("tests/data/kubernaut/writes.yaml");
    let shown = path.display();
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{shown}: {e}"))?;
    serde_saphyr::from_str(&text).map_err(|e| format!("{shown}: {e}"))
}

impl Write {
    /// The writer's clock for this write in a lifecycle that began at `start`.
    pub fn clock(&self, start: Timestamp) -> Timestamp {
        start + SignedDuration::from_secs_f64(self.at)
    }

    /// What the writer sends when the stored status is `stored` and its clock reads `now`: the
    /// whole status for a PUT, the patch's status for a merge patch.
    pub fn body(&self, stored: &Status, now: Timestamp) -> Status {
        let start = stored
            .get("startTime")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<Timestamp>().ok());
        let mut out = match self.via {
            Via::Put => stored.clone(),
            Via::Merge => Status::new(),
        };
        for (key, value) in &self.set {
            out.insert(key.clone(), expand(value, start, now));
        }
        if !self.conditions.is_empty() {
            let mut list = match stored.get("conditions") {
                Some(Value::Array(list)) => list.clone(),
                _ => Vec::new(),
            };
            for c in &self.conditions {
                set_condition(&mut list, &expand(c, start, now), now);
            }
            out.insert("conditions".into(), Value::Array(list));
        }
        out
    }

    /// The status the API server sees from this write: the PUT's body, or the merge patch
    /// applied to `stored`.
    pub fn sent(&self, stored: &Status, now: Timestamp) -> Status {
        let body = self.body(stored, now);
        match self.via {
            Via::Put => body,
            Via::Merge => {
                let mut doc = Value::Object(stored.clone());
                json_patch::merge(&mut doc, &Value::Object(body));
                match doc {
                    Value::Object(m) => m,
                    _ => Status::new(),
                }
            }
        }
    }
}

/// metav1.Time in JSON: UTC, whole seconds (the fraction is cut), as the webhook writes it.
pub use wfe_admission::policy::time::format as metav1_time;

/// `end - start` rounded to the second (halves away from zero), in Go's syntax.
pub fn rounded_duration(start: Timestamp, end: Timestamp) -> String {
    let nanos = end.as_nanosecond() - start.as_nanosecond();
    let secs = (nanos.abs() + 500_000_000) / 1_000_000_000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let sign = if nanos < 0 && secs > 0 { "-" } else { "" };
    match (h, m) {
        (0, 0) => format!("{sign}{s}s"),
        (0, _) => format!("{sign}{m}m{s}s"),
        _ => format!("{sign}{h}h{m}m{s}s"),
    }
}

fn expand(value: &Value, start: Option<Timestamp>, now: Timestamp) -> Value {
    match value {
        Value::String(s) => {
            let mut s = s.replace("${now}", &metav1_time(now));
            if let Some(start) = start {
                s = s.replace("${duration}", &rounded_duration(start, now));
            }
            Value::String(s)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| expand(v, start, now)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), expand(v, start, now)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A condition set the way kubernaut's helper sets it: a new type is appended with now as its
/// `lastTransitionTime`; an existing one takes the new status, reason, message and generation,
/// and keeps its `lastTransitionTime` unless the status changed.
fn set_condition(list: &mut Vec<Value>, c: &Value, now: Timestamp) {
    let kind = c.get("type").cloned().unwrap_or(Value::Null);
    let mut entry = c.clone();
    match list.iter_mut().find(|o| o.get("type") == Some(&kind)) {
        Some(existing) => {
            let ltt = if existing.get("status") == c.get("status") {
                existing.get("lastTransitionTime").cloned()
            } else {
                None
            };
            entry["lastTransitionTime"] = ltt.unwrap_or_else(|| json!(metav1_time(now)));
            *existing = entry;
        }
        None => {
            entry["lastTransitionTime"] = json!(metav1_time(now));
            list.push(entry);
        }
    }
}

/// The status fields whose stored value differs from what was sent, sorted; inside the block
/// clearance, by key.
pub fn changed(sent: &Status, stored: &Status) -> Vec<String> {
    let mut keys: Vec<&String> = sent.keys().chain(stored.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for key in keys {
        match (sent.get(key), stored.get(key)) {
            (Some(Value::Object(a)), Some(Value::Object(b))) if key == "blockClearance" => {
                for sub in changed(a, b) {
                    out.push(format!("{key}.{sub}"));
                }
            }
            (a, b) if a != b => out.push(key.clone()),
            _ => {}
        }
    }
    out
}
