//! The recorded verdict against the replayed one, and the status fields they are apart in.

use std::collections::BTreeSet;

use serde_json::Value;

use super::audit::Recorded;
use super::history::apply_json_patch;
use crate::offline::Outcome;

/// What the policy made of a write, in the words of a record.
pub(super) fn replayed_name(outcome: &Outcome) -> &'static str {
    if !outcome.allowed {
        "denied"
    } else if outcome.patched() {
        "patched"
    } else {
        "allowed"
    }
}

fn status_map(object: &Value) -> serde_json::Map<String, Value> {
    object
        .get("status")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// Top-level status fields whose values differ between two objects.
pub(super) fn changed(a: &Value, b: &Value) -> Vec<String> {
    let (a, b) = (status_map(a), status_map(b));
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

pub(super) fn as_status(status: &Value) -> Value {
    serde_json::json!({ "status": status })
}

/// Whether the recorded verdict and the replayed one agree; the reason when they do not.
pub(super) fn compare(
    recorded: &Recorded,
    outcome: &Outcome,
    written: &Value,
) -> (bool, String, Vec<String>) {
    let replayed = as_status(&outcome.status);
    let message = outcome.message.clone().unwrap_or_default();
    match (recorded, replayed_name(outcome)) {
        (Recorded::Allowed, "allowed") => (true, String::new(), Vec::new()),
        (Recorded::Patched(patches), "patched") => {
            let mut object = written.clone();
            for p in patches {
                if let Err(e) = apply_json_patch(&mut object, p) {
                    return (false, format!("the recorded patch {e}"), Vec::new());
                }
            }
            let fields = changed(&object, &replayed);
            if fields.is_empty() {
                (true, String::new(), Vec::new())
            } else {
                let said = format!(
                    "the recorded patch and this policy's set {} apart",
                    fields.join(", ")
                );
                (false, said, fields)
            }
        }
        (Recorded::Denied(m), "denied") if m.contains(&message) => {
            (true, String::new(), Vec::new())
        }
        (Recorded::Denied(m), "denied") => (
            false,
            format!("denied for another reason: recorded: {m}; this policy: {message}"),
            Vec::new(),
        ),
        (Recorded::Denied(m), _) => (
            false,
            format!("this policy allows what was denied: {m}"),
            Vec::new(),
        ),
        (_, "denied") => (
            false,
            format!("this policy denies it: {message}"),
            Vec::new(),
        ),
        (Recorded::Allowed, _) => {
            let fields = changed(written, &replayed);
            let said = format!(
                "stored as sent, but this policy would set {}",
                fields.join(", ")
            );
            (false, said, fields)
        }
        _ => {
            let fields = changed(written, &replayed);
            (
                false,
                "the recorded write was patched; this policy stores it as sent".into(),
                fields,
            )
        }
    }
}
