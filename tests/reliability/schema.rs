//! Property: whatever the two webhooks allow validates against the CRD's schema. Old statuses
//! are schema-valid (they are stored), the writer's status is schema-valid except for what the
//! mutating webhook fills in (a new clearance's `clearedBy`/`clearedAt`); the mutating pass,
//! then the validating pass over its result, and when both allow, the result must satisfy the
//! `status` schema of tests/e2e/manifests/crd.yaml (converted minimally from OpenAPI v3 to JSON
//! Schema, checked by the `jsonschema` crate with formats on).

use std::sync::atomic::{AtomicUsize, Ordering};

use jiff::Timestamp;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use serde_json::{Map, Value, json};
use wfe_admission::config::{Config, EXECUTOR};
use wfe_admission::policy::Policy;
use wfe_admission::policy::review::{self, Decision};
use wfe_admission::server::admission::parse_review;

use crate::support::{CONTROLLER, review};

const OPERATOR: &str = "alice@example.com";
const EXECUTOR_SA: &str = "system:serviceaccount:kubernaut-system:wfe-executor";
const WEBHOOK: &str = "system:serviceaccount:wfe-system:wfe-admission";

/// OpenAPI v3 (as a CRD uses it) to JSON Schema: drop the `x-kubernetes-*` extensions and the
/// integer formats JSON Schema does not define; everything else (type, enum, required,
/// properties, items, additionalProperties, format: date-time) means the same.
fn to_json_schema(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                if k.starts_with("x-kubernetes-") {
                    continue;
                }
                if k == "format" && v != "date-time" {
                    continue;
                }
                out.insert(k.clone(), to_json_schema(v));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(to_json_schema).collect()),
        other => other.clone(),
    }
}

/// The `status` schema of the CRD in `file` (relative to the repository).
fn status_schema(file: &str) -> Value {
    let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("CRD manifest");
    let crd: Value = serde_saphyr::from_str(&text).expect("CRD YAML");
    let status =
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"].clone();
    assert_eq!(status["type"], "object", "no status schema in {path}");
    status
}

fn status_validator() -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(&to_json_schema(&status_schema(
            "tests/e2e/manifests/crd.yaml",
        )))
        .expect("the status schema compiles")
}

#[test]
fn the_chart_installs_the_status_schema_the_property_checks() {
    assert_eq!(
        status_schema("charts/wfe-admission/files/crd.yaml"),
        status_schema("tests/e2e/manifests/crd.yaml"),
        "the chart's CRD and the e2e CRD disagree on the status schema"
    );
}

const TIMES: [&str; 5] = [
    "2026-03-01T11:56:30Z",
    "2026-03-01T11:58:41Z",
    "2026-03-01T12:00:00Z",
    "2026-03-01T11:00:00.5+01:00",
    "2026-03-01T13:00:00Z",
];
const PHASES: [&str; 4] = ["Pending", "Running", "Completed", "Failed"];
const CONDITION_TYPES: [&str; 8] = [
    "Ready",
    "ExecutionCreated",
    "ExecutionRunning",
    "ExecutionComplete",
    "TokenTTLInsufficient",
    "TektonPipelineCreated",
    "AdmissionRejected",
    "SomethingNew",
];
const STATES: [&str; 3] = ["True", "False", "Unknown"];
const REASONS: [&str; 10] = [
    "OOMKilled",
    "DeadlineExceeded",
    "Forbidden",
    "ResourceExhausted",
    "ConfigurationError",
    "ImagePullBackOff",
    "TaskFailed",
    "UnsupportedEngine",
    "Unknown",
    "Deduplicated",
];
const CLEAR_REASONS: [&str; 3] = [
    "fixed",
    "Root cause fixed: memory limit raised to 2Gi in the deployment and verified by on-call",
    "The image pull secret was rotated and the registry answers again for every node now",
];
const USERS: [&str; 6] = [
    CONTROLLER,
    EXECUTOR_SA,
    OPERATOR,
    WEBHOOK,
    "bob@example.com",
    "",
];

fn pick<T: Clone + std::fmt::Debug + 'static>(items: &'static [T]) -> impl Strategy<Value = T> {
    prop::sample::select(items)
}

fn time() -> impl Strategy<Value = Value> {
    pick(&TIMES).prop_map(|t| json!(t))
}

fn conditions() -> impl Strategy<Value = Value> {
    prop::collection::vec(
        (
            pick(&CONDITION_TYPES),
            pick(&STATES),
            prop::option::of(time()),
            prop::option::of(0..3i64),
        ),
        0..6,
    )
    .prop_map(|list| {
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for (kind, state, ltt, generation) in list {
            if seen.contains(&kind) {
                continue;
            }
            seen.push(kind);
            let mut c = json!({"type": kind, "status": state, "reason": "R", "message": format!("{kind} {state}")});
            if let Some(ltt) = ltt {
                c["lastTransitionTime"] = ltt;
            }
            if let Some(g) = generation {
                c["observedGeneration"] = json!(g);
            }
            out.push(c);
        }
        Value::Array(out)
    })
}

/// A clearance as stored (attributed) or as an operator sends it (maybe without attribution).
fn clearance(stored: bool) -> impl Strategy<Value = Value> {
    (
        prop::option::of(pick(&USERS[..5])),
        prop::option::of(time()),
        pick(&CLEAR_REASONS),
        pick(&["Annotation", "APIEndpoint", "StatusField"][..]),
    )
        .prop_map(move |(by, at, reason, method)| {
            let mut bc = json!({"clearReason": reason, "clearMethod": method});
            match by {
                Some(by) => bc["clearedBy"] = json!(by),
                None if stored => bc["clearedBy"] = json!(OPERATOR),
                None => {}
            }
            if let Some(at) = at {
                bc["clearedAt"] = at;
            }
            bc
        })
}

fn field(name: &'static str, stored: bool) -> BoxedStrategy<Value> {
    match name {
        "phase" => pick(&PHASES).prop_map(|p| json!(p)).boxed(),
        "observedGeneration" => (0..5i64).prop_map(|g| json!(g)).boxed(),
        "startTime" | "completionTime" => time().boxed(),
        "duration" => pick(&["3m30s", "0s", "1h2m3s"][..])
            .prop_map(|d| json!(d))
            .boxed(),
        "executionRef" => pick(&["run-a", "run-b"][..])
            .prop_map(|n| json!({"name": n}))
            .boxed(),
        "executionStatus" => (pick(&STATES), 0..5i64, 0..3i64)
            .prop_map(|(s, n, r)| json!({"status": s, "reason": "Running", "message": "m", "completedTasks": n, "totalTasks": 4, "retryCount": r}))
            .boxed(),
        "failureDetails" => (pick(&REASONS), any::<bool>(), prop::option::of(0..256i64))
            .prop_map(|(reason, was, exit)| {
                let mut fd = json!({
                    "failedTaskIndex": 1, "failedTaskName": "apply", "reason": reason,
                    "message": "failed", "failedAt": TIMES[1], "naturalLanguageSummary": "It failed.",
                    "wasExecutionFailure": was, "executionTimeBeforeFailure": "2m11s",
                });
                if let Some(code) = exit {
                    fd["exitCode"] = json!(code);
                }
                fd
            })
            .boxed(),
        "failureReason" => pick(&REASONS).prop_map(|r| json!(r)).boxed(),
        "blockClearance" => clearance(stored).boxed(),
        "ephemeralCredentialIDs" => prop::collection::vec(1..5000i64, 0..4)
            .prop_map(|ids| json!(ids))
            .boxed(),
        "deduplicatedBy" => pick(&["wfe-a", "wfe-b"][..])
            .prop_map(|n| json!(n))
            .boxed(),
        "conditions" => conditions().boxed(),
        _ => pick(&["x", "y"][..]).prop_map(|v| json!(v)).boxed(),
    }
}

const FIELDS: [&str; 14] = [
    "phase",
    "observedGeneration",
    "startTime",
    "completionTime",
    "duration",
    "executionRef",
    "executionStatus",
    "failureDetails",
    "failureReason",
    "blockClearance",
    "ephemeralCredentialIDs",
    "deduplicatedBy",
    "conditions",
    "legacyField",
];

fn status(stored: bool) -> impl Strategy<Value = Value> {
    FIELDS
        .iter()
        .map(|f| prop::option::of(field(f, stored)))
        .collect::<Vec<_>>()
        .prop_map(|values| {
            let mut status = Map::new();
            for (name, value) in FIELDS.iter().zip(values) {
                if let Some(value) = value {
                    status.insert((*name).to_string(), value);
                }
            }
            Value::Object(status)
        })
}

/// The writer's status: the stored one with some fields kept, dropped or replaced.
fn written(old: Value) -> impl Strategy<Value = Value> {
    FIELDS
        .iter()
        .map(|f| {
            prop_oneof![
                4 => Just(None),
                2 => Just(Some(None)),
                3 => field(f, false).prop_map(|v| Some(Some(v))),
            ]
        })
        .collect::<Vec<_>>()
        .prop_map(move |edits| {
            let mut status = old.as_object().cloned().unwrap_or_default();
            for (name, edit) in FIELDS.iter().zip(edits) {
                match edit {
                    None => {}
                    Some(None) => {
                        status.remove(*name);
                    }
                    Some(Some(v)) => {
                        status.insert((*name).to_string(), v);
                    }
                }
            }
            Value::Object(status)
        })
}

fn policies() -> [Policy; 2] {
    let mut separate = Config::default();
    if let Some(executor) = separate.writers.get_mut(EXECUTOR) {
        executor.users = vec!["system:serviceaccount:*:wfe-executor".into()];
    }
    [
        Policy::new(Config::default()).expect("policy"),
        Policy::new(separate).expect("policy"),
    ]
}

fn request(body: &Value) -> kube::core::admission::AdmissionRequest<kube::core::DynamicObject> {
    parse_review(&serde_json::to_vec(body).expect("json")).expect("a readable review")
}

#[test]
fn allowed_results_validate_against_the_crd_schema() {
    let validator = status_validator();
    let policies = policies();
    let now: Timestamp = "2026-03-01T12:00:00Z".parse().expect("time");
    let (cases, allowed, denied) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let strategy = (
        0..policies.len(),
        pick(&USERS),
        status(true).prop_flat_map(|old| {
            let edited = written(old.clone()).boxed();
            let fresh = status(false).boxed();
            (Just(old), prop_oneof![3 => edited, 1 => fresh])
        }),
    );
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 1024,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let result = runner.run(&strategy, |(p, user, (old, new))| {
        cases.fetch_add(1, Ordering::Relaxed);
        let policy = &policies[p];
        // Premise: the stored status is valid (the API server checked it when it was written).
        prop_assume!(validator.is_valid(&old));
        let mut body = review(user, old.clone(), new.clone());
        let mutated = review::mutate(policy, &request(&body), now);
        let mut object = body["request"]["object"].clone();
        match &mutated.decision {
            Decision::Deny(_) => {
                denied.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            Decision::Patch(patch) => {
                json_patch::patch(&mut object, patch).expect("the patch applies");
            }
            Decision::Allow => {}
        }
        body["request"]["object"] = object.clone();
        if let Decision::Deny(_) = review::validate(policy, &request(&body)).decision {
            denied.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        allowed.fetch_add(1, Ordering::Relaxed);
        let result = &object["status"];
        let errors: Vec<String> = validator
            .iter_errors(result)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        prop_assert!(
            errors.is_empty(),
            "allowed but schema-invalid for {:?} (policy {}):\n{}\nold: {}\nsent: {}\nresult: {}",
            user,
            p,
            errors.join("\n"),
            old,
            new,
            result
        );
        Ok(())
    });
    let (cases, allowed, denied) = (
        cases.into_inner(),
        allowed.into_inner(),
        denied.into_inner(),
    );
    println!(
        "schema property: {cases} generated updates, {allowed} allowed and schema-valid, {denied} denied"
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(
        allowed * 5 > cases,
        "too few allowed cases ({allowed} of {cases}) for the property to mean much"
    );
}

/// Statuses kubernaut's CRD accepts and refuses (read off its schema: the condition rules of
/// metav1.Condition, `executionStatus.status` required, the enums, `workflowName`); the CRD the
/// chart installs must give each the same answer. The e2e suite shows the same for the real
/// API server with kubernaut's real writes.
#[test]
fn the_crd_accepts_and_refuses_what_kubernauts_does() {
    let validator = status_validator();
    let condition = |edit: &dyn Fn(&mut Value)| {
        let mut c = json!({"type": "Ready", "status": "True", "reason": "Ready",
            "message": "Workflow execution completed", "lastTransitionTime": "2026-03-01T12:00:00Z",
            "observedGeneration": 1});
        edit(&mut c);
        json!({"conditions": [c]})
    };
    let details = |edit: &dyn Fn(&mut Value)| {
        let mut d = json!({"failedTaskIndex": 0, "failedTaskName": "", "reason": "Unknown",
            "message": "m", "failedAt": "2026-03-01T12:00:00Z", "naturalLanguageSummary": "s"});
        edit(&mut d);
        json!({"failureDetails": d})
    };
    let accepted = [
        ("empty", json!({})),
        ("a full condition", condition(&|_| {})),
        ("an empty message", condition(&|c| c["message"] = json!(""))),
        (
            "a reason with a colon and a comma",
            condition(&|c| c["reason"] = json!("a:b,c_1")),
        ),
        (
            "a prefixed type",
            condition(&|c| c["type"] = json!("example.com/Custom-type.v1")),
        ),
        (
            "a type twice (an atomic list)",
            json!({"conditions": [
            {"type": "Ready", "status": "True", "reason": "A", "message": "", "lastTransitionTime": "2026-03-01T12:00:00Z"},
            {"type": "Ready", "status": "False", "reason": "B", "message": "", "lastTransitionTime": "2026-03-01T12:00:00Z"}]}),
        ),
        (
            "free-text executionStatus.status",
            json!({"executionStatus": {"status": "Succeeded"}}),
        ),
        ("workflowName", json!({"workflowName": "restart"})),
        (
            "credential IDs",
            json!({"ephemeralCredentialIDs": [42, 55]}),
        ),
        ("failure details", details(&|_| {})),
        (
            "a clearance without clearedAt",
            json!({"blockClearance": {
            "clearedBy": "alice", "clearReason": "r", "clearMethod": "StatusField"}}),
        ),
        (
            "the orchestrator's reason",
            json!({"phase": "Failed",
            "failureReason": "Parent RR entered terminal phase: Cancelled"}),
        ),
    ];
    let refused = [
        (
            "a condition without message",
            condition(&|c| {
                c.as_object_mut().map(|c| c.remove("message"));
            }),
        ),
        (
            "a condition without lastTransitionTime",
            condition(&|c| {
                c.as_object_mut().map(|c| c.remove("lastTransitionTime"));
            }),
        ),
        (
            "a condition without reason",
            condition(&|c| {
                c.as_object_mut().map(|c| c.remove("reason"));
            }),
        ),
        ("an empty reason", condition(&|c| c["reason"] = json!(""))),
        (
            "a reason with a space",
            condition(&|c| c["reason"] = json!("Not ready")),
        ),
        (
            "a reason starting with a digit",
            condition(&|c| c["reason"] = json!("1Ready")),
        ),
        (
            "a reason ending with a colon",
            condition(&|c| c["reason"] = json!("Ready:")),
        ),
        (
            "a type with a space",
            condition(&|c| c["type"] = json!("Ready now")),
        ),
        (
            "a status outside the enum",
            condition(&|c| c["status"] = json!("Maybe")),
        ),
        (
            "a message past 32768",
            condition(&|c| c["message"] = json!("m".repeat(32769))),
        ),
        (
            "a reason past 1024",
            condition(&|c| c["reason"] = json!("R".repeat(1025))),
        ),
        (
            "a negative observedGeneration",
            condition(&|c| c["observedGeneration"] = json!(-1)),
        ),
        (
            "executionStatus without status",
            json!({"executionStatus": {"reason": "Running"}}),
        ),
        (
            "failure details without a summary",
            details(&|d| {
                d.as_object_mut()
                    .map(|d| d.remove("naturalLanguageSummary"));
            }),
        ),
        (
            "a failure reason outside the enum",
            details(&|d| d["reason"] = json!("RaceConditionError")),
        ),
        (
            "a clearance without clearMethod",
            json!({"blockClearance": {"clearedBy": "alice", "clearReason": "r"}}),
        ),
        (
            "a clearance method outside the enum",
            json!({"blockClearance": {
            "clearedBy": "alice", "clearReason": "r", "clearMethod": "kubectl"}}),
        ),
        ("an unknown phase", json!({"phase": "Paused"})),
        (
            "credential IDs that are not integers",
            json!({"ephemeralCredentialIDs": ["42"]}),
        ),
        ("a time that is not one", json!({"startTime": "yesterday"})),
    ];
    for (what, status) in accepted {
        let errors: Vec<String> = validator
            .iter_errors(&status)
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "{what} is accepted by kubernaut's CRD: {errors:?}"
        );
    }
    for (what, status) in refused {
        assert!(
            !validator.is_valid(&status),
            "{what} is refused by kubernaut's CRD"
        );
    }
}
