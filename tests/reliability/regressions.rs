//! What fuzzing and the bad-input cases found, pinned at the policy level (the HTTPS cases are
//! in bad_input.rs; the fuzz input is also in tests/fuzz/corpus/combine/).

use jiff::Timestamp;
use serde_json::{Value, json};
use wfe_admission::config::Config;
use wfe_admission::policy::Policy;
use wfe_admission::policy::review::{self, Decision};
use wfe_admission::server::admission::parse_review;

use crate::support::{CONTROLLER, review};

fn request(body: &Value) -> kube::core::admission::AdmissionRequest<kube::core::DynamicObject> {
    parse_review(&serde_json::to_vec(body).expect("json")).expect("a readable review")
}

/// Mutates, applies the patch, and mutates the result again: the second pass must allow as is.
fn mutate_twice(policy: &Policy, user: &str, old: Value, new: Value) -> Value {
    let now: Timestamp = "2026-03-01T12:00:00Z".parse().expect("time");
    let mut body = review(user, old, new);
    let first = review::mutate(policy, &request(&body), now);
    let mut object = body["request"]["object"].clone();
    match &first.decision {
        Decision::Patch(patch) => json_patch::patch(&mut object, patch).expect("applies"),
        Decision::Allow => {}
        Decision::Deny(d) => panic!("denied: {}", d.message),
    }
    body["request"]["object"] = object.clone();
    let second = review::mutate(policy, &request(&body), now);
    assert_eq!(
        second.decision,
        Decision::Allow,
        "not idempotent: the second pass over {} changed it",
        object["status"]
    );
    object["status"].clone()
}

fn condition(kind: &str, status: &str, ltt: &str) -> Value {
    json!({"type": kind, "status": status, "reason": "R", "message": "m", "lastTransitionTime": ltt})
}

#[test]
fn a_stored_condition_type_listed_twice_is_kept_and_mutation_stays_idempotent() {
    // Found by the combine fuzz target: with a type twice in the stored list, the second pass
    // replaced the later entry with the writer's copy of the first.
    let policy = Policy::new(Config::default()).expect("policy");
    let old = json!({
        "phase": "Completed",
        "conditions": [
            condition("Ready", "True", "2026-03-01T12:00:00Z"),
            condition("TokenTTLInsufficient", "True", "2026-03-01T12:00:00Z"),
            condition("TokenTTLInsufficient", "False", "2026-03-01T11:56:29Z"),
        ],
    });
    // The controller rebuilds the status without conditions: all stored entries stay.
    let out = mutate_twice(
        &policy,
        CONTROLLER,
        old.clone(),
        json!({"phase": "Completed"}),
    );
    assert_eq!(out["conditions"], old["conditions"]);
    // The controller updates the type: the first entry takes the update, the other stays.
    let sent = json!({"phase": "Completed", "conditions": [condition("TokenTTLInsufficient", "False", "2026-03-01T12:00:00Z")]});
    let out = mutate_twice(&policy, CONTROLLER, old.clone(), sent);
    let list = out["conditions"].as_array().expect("list");
    assert_eq!(list.len(), 3, "{out}");
    assert_eq!(list[1]["status"], "False");
    assert_eq!(list[2], old["conditions"][2]);
    // Another writer's copy changes nothing.
    mutate_twice(&policy, "alice@example.com", old.clone(), old);
}
