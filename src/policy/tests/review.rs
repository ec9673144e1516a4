//! The phase rules of docs/policy.md through `review::validate`, the requests both endpoints leave alone, and
//! the AdmissionReview fixtures in `tests/data/`.

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use serde_json::{Value, json};

use super::support::*;
use crate::policy::Policy;
use crate::policy::review::{self, Decision, DenyReason, Verdict};

const PHASES: [&str; 4] = ["Pending", "Running", "Completed", "Failed"];
const LEGAL: [(&str, &str); 4] = [
    ("Pending", "Running"),
    ("Pending", "Failed"),
    ("Running", "Completed"),
    ("Running", "Failed"),
];

fn phase(p: &str) -> Value {
    json!({"phase": p, "observedGeneration": 1})
}

/// The validating verdict for the raw request and for the request after the mutating webhook
/// (which is what the API server sends to the validating webhook).
fn both_ways(policy: &Policy, review: &Value) -> (Verdict, Verdict) {
    let raw = validate(policy, review);
    let mutated = run_review(policy, review);
    let after = match mutated.verdict.decision {
        Decision::Deny(_) => mutated.verdict,
        _ => validate(policy, &mutated.mutated_review(review)),
    };
    (raw, after)
}

#[test]
fn exactly_the_four_spec_moves_are_legal_and_staying_is_always_legal() {
    let p = policy();
    for from in PHASES {
        for to in PHASES {
            let review = update(CONTROLLER, phase(from), phase(to));
            let (raw, after) = both_ways(&p, &review);
            for v in [&raw, &after] {
                if from == to || LEGAL.contains(&(from, to)) {
                    assert_eq!(v.decision, Decision::Allow, "{from} -> {to}");
                } else {
                    let message = denied(v, DenyReason::IllegalPhaseTransition);
                    assert!(message.contains(&format!("{from} → {to}")), "{message}");
                    assert!(message.contains(CONTROLLER), "names the user: {message}");
                    assert!(
                        message.contains("controller"),
                        "names the writer: {message}"
                    );
                }
                let expected = (from != to).then(|| (from.to_string(), to.to_string()));
                assert_eq!(v.subject.transition, expected, "{from} -> {to}");
            }
        }
    }
}

#[test]
fn illegal_moves_say_what_would_have_been_legal() {
    let p = policy();
    let cases = [
        (
            "Completed",
            "Running",
            "Completed is terminal, it can only stay Completed",
        ),
        (
            "Failed",
            "Completed",
            "Failed is terminal, it can only stay Failed",
        ),
        (
            "Running",
            "Pending",
            "from Running the legal moves are to Completed, Failed",
        ),
        (
            "Pending",
            "Completed",
            "from Pending the legal moves are to Running, Failed",
        ),
    ];
    for (from, to, hint) in cases {
        let v = validate(&p, &update(CONTROLLER, phase(from), phase(to)));
        let message = denied(&v, DenyReason::IllegalPhaseTransition);
        assert!(message.contains(hint), "{message}");
        assert!(
            message.starts_with(&format!("WorkflowExecution {NAMESPACE}/{NAME}: ")),
            "{message}"
        );
        assert!(message.contains(&format!("{from} → {to}")), "{message}");
        assert!(
            message.contains(&format!("{CONTROLLER} (controller, executor)")),
            "{message}"
        );
        assert!(!v.dry_run);
    }
}

#[test]
fn an_empty_or_absent_old_phase_is_pending() {
    let p = policy();
    for old in [json!({"phase": ""}), json!({}), json!({"phase": null})] {
        let v = validate(&p, &update(CONTROLLER, old.clone(), phase("Running")));
        assert_eq!(v.decision, Decision::Allow, "{old}");
        assert_eq!(
            v.subject.transition,
            Some(("Pending".into(), "Running".into()))
        );
        let v = validate(&p, &update(CONTROLLER, old.clone(), phase("Completed")));
        let message = denied(&v, DenyReason::IllegalPhaseTransition);
        assert!(message.contains("Pending → Completed"), "{message}");
    }
    // No stored status at all.
    let review = review_json(CONTROLLER, &[], None, Some(phase("Running")));
    assert_eq!(validate(&p, &review).decision, Decision::Allow);
    let review = review_json(CONTROLLER, &[], None, Some(phase("Completed")));
    denied(&validate(&p, &review), DenyReason::IllegalPhaseTransition);
}

#[test]
fn an_absent_new_phase_keeps_the_old_one() {
    let p = policy();
    for old in ["Completed", "Failed", "Running"] {
        for new in [json!({"observedGeneration": 2}), json!({"phase": null})] {
            let review = update(OPERATOR, phase(old), new.clone());
            let (raw, after) = both_ways(&p, &review);
            assert_eq!(raw.decision, Decision::Allow, "{old} {new}");
            assert_eq!(after.decision, Decision::Allow, "{old} {new}");
            assert_eq!(raw.subject.transition, None);
        }
    }
    // Nor does a missing status.
    let review = review_json(OPERATOR, &[], Some(phase("Completed")), None);
    assert_eq!(validate(&p, &review).decision, Decision::Allow);
}

#[test]
fn an_empty_new_phase_means_pending() {
    let p = policy();
    let v = validate(&p, &update(CONTROLLER, phase("Running"), phase("")));
    let message = denied(&v, DenyReason::IllegalPhaseTransition);
    assert!(message.contains("Running → Pending"), "{message}");
    let v = validate(&p, &update(CONTROLLER, phase("Pending"), phase("")));
    assert_eq!(v.decision, Decision::Allow);
}

#[test]
fn values_outside_the_enum_are_denied() {
    let p = policy();
    for value in ["Paused", "running", "COMPLETED", "Succeeded", " Running"] {
        let review = update(CONTROLLER, phase("Running"), phase(value));
        let (raw, after) = both_ways(&p, &review);
        for v in [raw, after] {
            let message = denied(&v, DenyReason::UnknownPhase);
            assert!(message.contains(&format!("{value:?}")), "{message}");
            assert!(
                message.contains("Pending, Running, Completed, Failed"),
                "{message}"
            );
            assert!(message.contains(CONTROLLER), "{message}");
            // From which phase to which, and what would have been legal.
            assert!(message.contains(&format!("Running → {value}")), "{message}");
            assert!(message.contains("Completed, Failed"), "{message}");
        }
    }
}

#[test]
fn denials_outside_the_enum_read_as_one_line() {
    let p = policy();
    let v = validate(&p, &update(CONTROLLER, phase("Running"), phase("Paused")));
    assert_eq!(
        denied(&v, DenyReason::UnknownPhase),
        format!(
            "WorkflowExecution {NAMESPACE}/{NAME}: unknown phase \"Paused\" (Running → Paused) by \
             {CONTROLLER} (controller, executor); the phases are Pending, Running, Completed, \
             Failed; from Running the legal moves are to Completed, Failed"
        )
    );
    let v = validate(
        &p,
        &update(CONTROLLER, phase("Completed"), json!({"phase": 3})),
    );
    assert_eq!(
        denied(&v, DenyReason::UnknownPhase),
        format!(
            "WorkflowExecution {NAMESPACE}/{NAME}: status.phase sent by {CONTROLLER} (controller, \
             executor) must be a string, one of Pending, Running, Completed, Failed; the stored \
             phase is Completed, Completed is terminal, it can only stay Completed"
        )
    );
    let v = validate(&p, &update(OPERATOR, phase("Running"), phase("Completed")));
    assert_eq!(
        denied(&v, DenyReason::PhaseNotOwned),
        format!(
            "WorkflowExecution {NAMESPACE}/{NAME}: {OPERATOR} (operator) may not move \
             status.phase Running → Completed; only controller may change the phase"
        )
    );
}

#[test]
fn a_stored_phase_outside_the_enum_can_be_repaired() {
    let p = policy();
    let v = validate(&p, &update(CONTROLLER, phase("Paused"), phase("Running")));
    assert_eq!(v.decision, Decision::Allow);
    let v = validate(&p, &update(CONTROLLER, phase("Paused"), phase("Paused")));
    assert_eq!(v.decision, Decision::Allow, "staying is legal");
    let v = validate(&p, &update(CONTROLLER, phase("Paused"), phase("Halted")));
    denied(&v, DenyReason::UnknownPhase);
}

#[test]
fn a_phase_that_is_not_a_string_is_denied() {
    let p = policy();
    for value in [
        json!(3),
        json!(true),
        json!({"name": "Running"}),
        json!(["Running"]),
    ] {
        let review = update(
            CONTROLLER,
            phase("Running"),
            json!({"phase": value.clone()}),
        );
        let (raw, after) = both_ways(&p, &review);
        for v in [raw, after] {
            let message = denied(&v, DenyReason::UnknownPhase);
            assert!(message.contains("status.phase"), "{message}");
            assert!(message.contains("must be a string"), "{message}");
            assert!(message.contains(CONTROLLER), "{message}");
        }
    }
}

#[test]
fn a_writer_that_does_not_own_the_phase_cannot_move_it() {
    let p = policy();
    let separate = policy_with(separate_executor);
    let cases: [(&Policy, &str, &str); 5] = [
        (&p, OPERATOR, "operator"),
        (&p, WEBHOOK, "webhook"),
        (&p, ANONYMOUS, "no writer"),
        (&p, "", "no writer"),
        (&separate, EXECUTOR, "executor"),
    ];
    for (policy, user, role) in cases {
        let review = update(user, phase("Running"), phase("Completed"));
        let (raw, after) = both_ways(policy, &review);
        for v in [raw, after] {
            let message = denied(&v, DenyReason::PhaseNotOwned);
            assert!(message.contains("Running → Completed"), "{message}");
            assert!(message.contains(&format!("({role})")), "{message}");
            assert!(message.contains("only controller"), "{message}");
        }
        // Even a legal move is not theirs to make; staying is.
        let v = validate(policy, &update(user, phase("Running"), phase("Running")));
        assert_eq!(v.decision, Decision::Allow, "{user}");
    }
}

#[test]
fn requests_outside_the_policy_are_left_alone() {
    let p = policy();
    let base = update(CONTROLLER, phase("Completed"), phase("Running"));
    type Edit = fn(&mut Value);
    let edits: [(&str, Edit); 7] = [
        ("CREATE", |r| {
            r["request"]["operation"] = json!("CREATE");
            r["request"]["oldObject"] = Value::Null;
        }),
        ("DELETE", |r| {
            r["request"]["operation"] = json!("DELETE");
            r["request"]["object"] = Value::Null;
        }),
        ("CONNECT", |r| r["request"]["operation"] = json!("CONNECT")),
        ("main resource", |r| {
            let req = r["request"].as_object_mut().expect("request");
            req.remove("subResource");
            req.remove("requestSubResource");
        }),
        ("other subresource", |r| {
            r["request"]["subResource"] = json!("scale");
        }),
        ("other resource", |r| {
            r["request"]["resource"]["resource"] = json!("remediationrequests");
        }),
        ("other group", |r| {
            r["request"]["resource"]["group"] = json!("example.com");
        }),
    ];
    for (what, edit) in edits {
        let mut review = base.clone();
        edit(&mut review);
        for dry_run in [false, true] {
            review["request"]["dryRun"] = json!(dry_run);
            for v in [validate(&p, &review), mutate(&p, &review)] {
                assert!(v.ignored, "{what}");
                assert_eq!(v.decision, Decision::Allow, "{what}");
                assert!(v.warnings.is_empty(), "{what}");
                assert_eq!(v.dry_run, dry_run, "{what}");
            }
        }
    }
}

#[test]
fn another_version_of_the_same_resource_is_guarded() {
    let p = policy();
    let mut review = update(CONTROLLER, phase("Completed"), phase("Running"));
    review["request"]["resource"]["version"] = json!("v1beta1");
    denied(&validate(&p, &review), DenyReason::IllegalPhaseTransition);
}

#[test]
fn an_update_without_the_old_object_is_refused_as_malformed() {
    let p = policy();
    let mut review = update(CONTROLLER, phase("Pending"), phase("Running"));
    review["request"]["oldObject"] = Value::Null;
    for v in [validate(&p, &review), mutate(&p, &review)] {
        let message = denied(&v, DenyReason::MissingObject);
        assert!(message.contains("oldObject"), "{message}");
        assert!(!v.ignored);
    }
    let mut review = update(CONTROLLER, phase("Pending"), phase("Running"));
    review["request"]["object"] = Value::Null;
    for v in [validate(&p, &review), mutate(&p, &review)] {
        let message = denied(&v, DenyReason::MissingObject);
        assert!(message.contains("no object"), "{message}");
    }
}

#[test]
fn a_status_that_is_not_an_object_is_refused() {
    let p = policy();
    for bad in [json!("Running"), json!(["Running"]), json!(1)] {
        let review = update(CONTROLLER, phase("Pending"), bad.clone());
        for v in [validate(&p, &review), mutate(&p, &review)] {
            let message = denied(&v, DenyReason::InvalidStatus);
            assert!(message.contains("status must be an object"), "{message}");
        }
    }
    // A stored status that is not an object is read as empty (Pending), so it can be repaired.
    let review = update(CONTROLLER, json!("garbage"), phase("Running"));
    assert_eq!(validate(&p, &review).decision, Decision::Allow);
    let out = run_review(&p, &review);
    assert_eq!(out.status()["startTime"], now_text());
}

#[test]
fn dry_run_is_carried_on_every_verdict() {
    let p = policy();
    let cases = [
        update(CONTROLLER, phase("Failed"), phase("Running")),
        update(CONTROLLER, phase("Pending"), phase("Running")),
        update(OPERATOR, phase("Pending"), phase("Running")),
    ];
    for mut review in cases {
        review["request"]["dryRun"] = json!(true);
        assert!(validate(&p, &review).dry_run);
        assert!(mutate(&p, &review).dry_run);
        review["request"]["dryRun"] = json!(false);
        assert!(!validate(&p, &review).dry_run);
        assert!(!mutate(&p, &review).dry_run);
    }
}

#[test]
fn the_subject_names_the_object_and_the_writer() {
    let p = policy();
    let v = validate(&p, &update(CONTROLLER, phase("Pending"), phase("Running")));
    let s = &v.subject;
    assert_eq!(s.api_version, "kubernaut.ai/v1alpha1");
    assert_eq!(s.kind, "WorkflowExecution");
    assert_eq!(s.namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(s.name, NAME);
    assert_eq!(
        s.uid.as_deref(),
        Some("5b0d2c8e-3f47-4c1e-9a0b-6d2f8e1c7a43")
    );
    assert_eq!(s.user, CONTROLLER);
    assert_eq!(s.writers, "controller, executor");
}

#[test]
fn validation_agrees_with_the_clearance_rules() {
    let p = policy();
    let failed = json!({"phase": "Failed", "completionTime": at(-60)});
    let mut new = failed.clone();
    new["blockClearance"] = json!({
        "clearedBy": "bob@example.com",
        "clearReason": LONG_REASON,
        "clearMethod": "APIEndpoint",
    });
    let review = update(OPERATOR, failed.clone(), new.clone());
    let (raw, after) = both_ways(&p, &review);
    let message = denied(&raw, DenyReason::BlockClearanceRejected);
    assert!(message.contains(OPERATOR), "{message}");
    assert_eq!(after.decision, Decision::Allow);
    new["blockClearance"]["clearReason"] = json!(NINE_WORDS);
    let review = update(OPERATOR, failed, new);
    let (raw, after) = both_ways(&p, &review);
    denied(&raw, DenyReason::BlockClearanceRejected);
    denied(&after, DenyReason::BlockClearanceRejected);
}

// ---- Fixtures ------------------------------------------------------------------------------

fn fixture(text: &str) -> (Value, AdmissionRequest<DynamicObject>) {
    let value: Value = serde_json::from_str(text).expect("the fixture is JSON");
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_str(text).expect("the fixture is an AdmissionReview");
    assert_eq!(review.types.api_version, "admission.k8s.io/v1");
    assert_eq!(review.types.kind, "AdmissionReview");
    let req: AdmissionRequest<DynamicObject> = review.try_into().expect("it has a request");
    assert!(!req.uid.is_empty());
    (value, req)
}

fn patch_of(v: &Verdict) -> &json_patch::Patch {
    match &v.decision {
        Decision::Patch(p) => p,
        other => panic!("expected a patch, got {other:?}"),
    }
}

/// Paths the patch touches, e.g. `/status/startTime`.
fn patched_paths(v: &Verdict) -> Vec<String> {
    let value = serde_json::to_value(patch_of(v)).expect("a patch serialises");
    let mut paths: Vec<String> = value
        .as_array()
        .expect("a list of operations")
        .iter()
        .map(|op| op["path"].as_str().expect("a path").to_string())
        .collect();
    paths.sort();
    paths
}

#[test]
fn fixture_pending_to_running() {
    let p = policy();
    let (value, req) = fixture(include_str!(
        "../../../tests/data/update-pending-to-running.json"
    ));
    let m = review::mutate(&p, &req, now());
    assert_eq!(
        patched_paths(&m),
        ["/status/conditions", "/status/startTime"]
    );
    let out = run_review(&p, &value);
    assert_eq!(out.status()["startTime"], now_text());
    assert_eq!(
        condition_types(out.status()),
        [
            "Ready",
            "AuditRecorded",
            "ExecutionCreated",
            "ExecutionRunning"
        ],
        "the stored AuditRecorded stays in place, new types are appended"
    );
    assert_eq!(review::validate(&p, &req).decision, Decision::Allow);
    assert_eq!(
        validate(&p, &out.mutated_review(&value)).decision,
        Decision::Allow
    );
}

#[test]
fn fixture_completed_to_running() {
    let p = policy();
    let (value, req) = fixture(include_str!(
        "../../../tests/data/update-completed-to-running.json"
    ));
    let m = review::mutate(&p, &req, now());
    assert_eq!(m.decision, Decision::Allow, "the phase is never rewritten");
    run_review(&p, &value);
    let v = review::validate(&p, &req);
    let message = denied(&v, DenyReason::IllegalPhaseTransition);
    assert_eq!(
        message,
        format!(
            "WorkflowExecution {NAMESPACE}/{NAME}: illegal phase transition Completed → Running \
             by {CONTROLLER} (controller, executor); Completed is terminal, it can only stay \
             Completed"
        )
    );
    assert!(!v.dry_run);
}

#[test]
fn fixture_merge_patch_with_one_condition() {
    let p = policy();
    let (value, req) = fixture(include_str!(
        "../../../tests/data/update-merge-one-condition.json"
    ));
    let old = &value["request"]["oldObject"]["status"];
    assert!(old["conditions"].as_array().is_some_and(|c| c.len() >= 6));
    let m = review::mutate(&p, &req, now());
    let paths = patched_paths(&m);
    for path in [
        "/status/conditions",
        "/status/completionTime",
        "/status/duration",
    ] {
        assert!(paths.contains(&path.to_string()), "{paths:?}");
    }
    let out = run_review(&p, &value);
    let s = out.status();
    assert_eq!(condition_types(s), condition_types(old));
    assert_eq!(find_condition(s, "ExecutionComplete")["status"], "True");
    for kind in [
        "Ready",
        "ExecutionCreated",
        "ExecutionRunning",
        "TektonPipelineCreated",
    ] {
        assert_eq!(find_condition(s, kind), find_condition(old, kind), "{kind}");
    }
    assert_eq!(s["completionTime"], now_text());
    assert_eq!(s["duration"], "3m30s");
    assert_eq!(review::validate(&p, &req).decision, Decision::Allow);
    assert_eq!(
        validate(&p, &out.mutated_review(&value)).decision,
        Decision::Allow
    );
}

#[test]
fn fixture_controller_drops_executor_fields() {
    let (value, req) = fixture(include_str!(
        "../../../tests/data/update-controller-drops-executor-fields.json"
    ));
    let old = &value["request"]["oldObject"]["status"];
    // Default writers: the executor shares the controller's identity, so only the operator's
    // clearance comes back.
    let p = policy();
    let m = review::mutate(&p, &req, now());
    assert_eq!(patched_paths(&m), ["/status/blockClearance"]);
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    let out = run_review(&p, &value);
    assert_eq!(out.status()["blockClearance"], old["blockClearance"]);
    assert!(out.status().get("ephemeralCredentialIDs").is_none());
    assert_eq!(review::validate(&p, &req).decision, Decision::Allow);
    // The executor configured as its own identity: its credentials come back too.
    let p = policy_with(separate_executor);
    let out = run_review(&p, &value);
    assert_eq!(out.status()["blockClearance"], old["blockClearance"]);
    assert_eq!(
        out.status()["ephemeralCredentialIDs"],
        old["ephemeralCredentialIDs"]
    );
    assert_eq!(review::validate(&p, &req).decision, Decision::Allow);
}

#[test]
fn fixture_operator_block_clearance() {
    let p = policy();
    let (value, req) = fixture(include_str!(
        "../../../tests/data/update-operator-block-clearance.json"
    ));
    let m = review::mutate(&p, &req, now());
    assert_eq!(patched_paths(&m), ["/status/blockClearance"]);
    assert!(
        m.warnings
            .iter()
            .any(|w| w.contains("status.blockClearance.clearedBy")),
        "{:?}",
        m.warnings
    );
    let out = run_review(&p, &value);
    let bc = &out.status()["blockClearance"];
    assert_eq!(bc["clearedBy"], "alice@example.com");
    assert_eq!(bc["clearedAt"], now_text());
    assert_eq!(bc["clearMethod"], "StatusField");
    // Without the mutating webhook the forged attribution is refused; after it, allowed.
    let message = denied(
        &review::validate(&p, &req),
        DenyReason::BlockClearanceRejected,
    );
    assert!(message.contains("alice@example.com"), "{message}");
    assert_eq!(
        validate(&p, &out.mutated_review(&value)).decision,
        Decision::Allow
    );
}

#[test]
fn fixture_operator_short_reason() {
    let p = policy();
    let (_, req) = fixture(include_str!(
        "../../../tests/data/update-operator-short-reason.json"
    ));
    for v in [review::mutate(&p, &req, now()), review::validate(&p, &req)] {
        let message = denied(&v, DenyReason::BlockClearanceRejected);
        assert!(message.contains("at least 10 words (got 3)"), "{message}");
        assert!(message.contains("alice@example.com"), "{message}");
    }
}

#[test]
fn fixture_dry_run_illegal() {
    let p = policy();
    let (value, req) = fixture(include_str!(
        "../../../tests/data/update-dry-run-illegal.json"
    ));
    assert!(req.dry_run);
    let v = review::validate(&p, &req);
    let message = denied(&v, DenyReason::IllegalPhaseTransition);
    assert!(message.contains("Failed → Running"), "{message}");
    assert!(v.dry_run, "events are skipped for dry runs");
    let m = review::mutate(&p, &req, now());
    assert!(m.dry_run);
    allowed(&m);
    run_review(&p, &value);
}

#[test]
fn fixture_create_is_ignored() {
    let p = policy();
    let (_, req) = fixture(include_str!("../../../tests/data/create-wfe.json"));
    assert!(req.old_object.is_none());
    for v in [review::mutate(&p, &req, now()), review::validate(&p, &req)] {
        assert!(v.ignored);
        assert_eq!(v.decision, Decision::Allow);
    }
}

#[test]
fn fixture_other_resource_is_ignored() {
    let p = policy();
    let (_, req) = fixture(include_str!(
        "../../../tests/data/update-other-resource.json"
    ));
    for v in [review::mutate(&p, &req, now()), review::validate(&p, &req)] {
        assert!(v.ignored);
        assert_eq!(v.decision, Decision::Allow);
    }
}

#[test]
fn fixture_no_old_object() {
    let p = policy();
    let (_, req) = fixture(include_str!(
        "../../../tests/data/update-no-old-object.json"
    ));
    for v in [review::mutate(&p, &req, now()), review::validate(&p, &req)] {
        let message = denied(&v, DenyReason::MissingObject);
        assert!(message.contains("oldObject"), "{message}");
    }
}
