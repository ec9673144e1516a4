//! What the fuzz targets check, beyond "no panic, no hang": every answer serialises, every
//! patch applies to the object it was made for, and mutation is idempotent (the combine rules: a
//! second pass over its own output yields an empty patch).

use std::sync::OnceLock;

use jiff::Timestamp;
use kube::core::admission::AdmissionRequest;
use serde_json::{Map, Value};
use wfe_admission::config::Config;
use wfe_admission::policy::Policy;
use wfe_admission::policy::combine::{combine, repaired};
use wfe_admission::policy::object::ReviewObject;
use wfe_admission::server::status_object::StatusObject;
use wfe_admission::policy::patch::status_patch;
use wfe_admission::policy::review::{self, Decision};
use wfe_admission::server::admission::{parse_for, parse_review, parse_review_as, respond};
use wfe_admission::metrics::Endpoint;

pub const CONTROLLER: &str = "system:serviceaccount:kubernaut-system:workflowexecution-controller";

/// The default policy, and one where the executor has its own identity.
pub fn policies() -> &'static [Policy] {
    static POLICIES: OnceLock<Vec<Policy>> = OnceLock::new();
    POLICIES.get_or_init(|| {
        let default = Policy::new(Config::default()).expect("the default policy is valid");
        let mut config = Config::default();
        if let Some(executor) = config.writers.get_mut(wfe_admission::config::EXECUTOR) {
            executor.users = vec!["system:serviceaccount:*:wfe-executor".into()];
        }
        let separate = Policy::new(config).expect("the separate-executor policy is valid");
        vec![default, separate]
    })
}

pub fn fixed_now() -> Timestamp {
    Timestamp::from_second(1_772_366_400).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Bytes as the server reads them (the lean [`StatusObject`] parser, and /validate's, which keeps
/// two status fields), then both endpoints under both policies; and differentially: where the
/// full `DynamicObject` parser reads the same bytes, every verdict is the same.
pub fn review_bytes(data: &[u8]) {
    let lean = parse_review_as::<StatusObject>(data);
    if let Ok(request) = &lean {
        judge(request);
    }
    // /validate's parse builds only the status fields it reads: same bytes, same verdict.
    for policy in policies() {
        let kept = parse_for(Endpoint::Validate, policy, data);
        assert_eq!(kept.is_ok(), lean.is_ok(), "the /validate parse disagrees");
        if let (Ok(kept), Ok(lean)) = (&kept, &lean) {
            assert_eq!(
                review::validate(policy, kept),
                review::validate(policy, lean),
                "the /validate parse judges differently"
            );
        }
    }
    if let (Ok(lean), Ok(full)) = (&lean, parse_review(data)) {
        let now = fixed_now();
        for policy in policies() {
            assert_eq!(
                review::validate(policy, lean),
                review::validate(policy, &full),
                "the lean and the full parser disagree on /validate"
            );
            assert_eq!(
                review::mutate(policy, lean, now),
                review::mutate(policy, &full, now),
                "the lean and the full parser disagree on /mutate"
            );
        }
    }
}

fn judge(request: &AdmissionRequest<StatusObject>) {
    let now = fixed_now();
    for policy in policies() {
        let verdict = review::validate(policy, request);
        serde_json::to_vec(&respond(&request.uid, &verdict)).expect("the answer serialises");
        let verdict = review::mutate(policy, request, now);
        serde_json::to_vec(&respond(&request.uid, &verdict)).expect("the answer serialises");
        let Decision::Patch(patch) = &verdict.decision else {
            continue;
        };
        let Some(object) = &request.object else {
            panic!("a patch for a request without an object");
        };
        let mut data = object.body().clone();
        json_patch::patch(&mut data, patch).expect("the patch applies to the object");
        // Reinvocation: the same request over the mutated object changes nothing more.
        let mut again = request.clone();
        if let Some(o) = again.object.as_mut() {
            o.data = data;
        }
        let second = review::mutate(policy, &again, now);
        assert!(
            matches!(second.decision, Decision::Allow),
            "mutation is not idempotent: {:?} then {:?}",
            verdict.decision,
            second.decision
        );
        let _ = review::validate(policy, &again);
    }
}

/// A JSON document `{"old": status, "new": status, "user": "...", "groups": [...],
/// "now": unix-seconds}` through the combine step, under both policies.
pub fn combine_json(data: &[u8]) {
    let Ok(input) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let old = input.get("old").and_then(Value::as_object);
    let new = input.get("new").and_then(Value::as_object);
    let user = input
        .get("user")
        .and_then(Value::as_str)
        .unwrap_or(CONTROLLER);
    let groups: Vec<String> = input
        .get("groups")
        .and_then(Value::as_array)
        .map(|g| {
            g.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let now = input
        .get("now")
        .and_then(Value::as_i64)
        .and_then(|s| Timestamp::from_second(s).ok())
        .unwrap_or_else(fixed_now);
    for policy in policies() {
        let writer = policy.writer(user, &groups);
        let combined = combine(policy, old, new, writer, now);
        let _ = repaired(policy, &combined.status, now);
        if combined.denial.is_some() {
            continue;
        }
        // The patch from what the writer sent to the combined status applies and yields it.
        let mut object = Map::new();
        if let Some(new) = input.get("new") {
            object.insert("status".into(), new.clone());
        }
        let object = Value::Object(object);
        let patch = status_patch(&object, &combined.status);
        let mut doc = object.clone();
        json_patch::patch(&mut doc, &patch).expect("the status patch applies");
        if !patch.0.is_empty() {
            assert_eq!(
                doc.get("status"),
                Some(&Value::Object(combined.status.clone())),
                "the patch does not yield the combined status"
            );
        }
        // Idempotent: a second pass over its own output changes nothing.
        let again = combine(policy, old, Some(&combined.status), writer, now);
        assert!(
            again.denial.is_none(),
            "second pass denied: {:?}",
            again.denial
        );
        assert_eq!(again.status, combined.status, "combine is not idempotent");
    }
}
