//! The combine rules of docs/policy.md, rule by rule, in its order. Every case that goes through `run` is
//! also checked for patch validity and idempotency (see `support::run_review_at`).

use serde_json::{Value, json};

use super::support::*;
use crate::policy::review::{Decision, DenyReason};

const RUN_NAME: &str = "wfe-payment-api-oom-7f3c9-run";

/// A WorkflowExecution three and a half minutes into its run, with fields of every writer.
fn running() -> Value {
    json!({
        "observedGeneration": 1,
        "phase": "Running",
        "startTime": at(-210),
        "executionRef": {"name": RUN_NAME},
        "executionStatus": {
            "status": "Unknown",
            "reason": "Running",
            "message": "2 of 4 tasks completed",
            "completedTasks": 2,
            "totalTasks": 4,
            "retryCount": 0,
        },
        "ephemeralCredentialIDs": [101, 102],
        "conditions": [
            condition("ExecutionCreated", "True", &at(-215)),
            condition("ExecutionRunning", "True", &at(-210)),
            condition("AuditRecorded", "True", &at(-214)),
            condition("TektonPipelineCreated", "True", "2025-12-01T08:00:00Z"),
        ],
    })
}

fn failed() -> Value {
    let mut s = running();
    s["phase"] = json!("Failed");
    s["completionTime"] = json!(at(-60));
    s["duration"] = json!("2m30s");
    s["failureDetails"] = json!({
        "failedTaskIndex": 2,
        "failedTaskName": "apply-memory-limit",
        "failedStepName": "kubectl-patch",
        "reason": "OOMKilled",
        "message": "container kubectl-patch was OOM killed",
        "failedAt": at(-60),
        "naturalLanguageSummary": "The patch step ran out of memory.",
        "exitCode": 137,
        "executionTimeBeforeFailure": "2m30s",
        "wasExecutionFailure": true,
    });
    s["failureReason"] = json!("OOMKilled");
    s
}

fn clearance(reason: &str) -> Value {
    json!({"clearReason": reason, "clearMethod": "StatusField"})
}

fn without(mut status: Value, keys: &[&str]) -> Value {
    let map = status.as_object_mut().expect("a status object");
    for k in keys {
        map.remove(*k);
    }
    status
}

// ---- Rule 1: ownership -------------------------------------------------------------------

#[test]
fn a_field_the_non_owner_dropped_is_carried_over() {
    let p = policy();
    // The operator writes a status that only carries its clearance (a rebuilt status).
    let new = json!({"phase": "Failed", "blockClearance": clearance(LONG_REASON)});
    let out = run(&p, OPERATOR, failed(), new);
    let s = out.status();
    for key in [
        "observedGeneration",
        "startTime",
        "completionTime",
        "executionRef",
        "executionStatus",
        "failureDetails",
        "ephemeralCredentialIDs",
        "conditions",
    ] {
        assert_eq!(s[key], failed()[key], "{key} carried over");
    }
    // A carry-over is silent; only the clearance's attribution, filled in, is said.
    assert!(
        out.verdict
            .warnings
            .iter()
            .all(|w| w.starts_with("status.blockClearance.") && w.contains("was filled in")),
        "a carry-over is silent: {}",
        out.warnings()
    );
    assert!(out.verdict.corrections.is_empty());
}

#[test]
fn an_owners_deliberate_removal_stands() {
    let p = policy();
    let new = without(running(), &["executionStatus", "observedGeneration"]);
    let out = run(&p, CONTROLLER, running(), new);
    assert!(out.status().get("executionStatus").is_none());
    assert!(out.status().get("observedGeneration").is_none());
    assert!(out.verdict.warnings.is_empty(), "{}", out.warnings());
    assert_eq!(out.verdict.decision, Decision::Allow);
}

#[test]
fn a_non_owners_change_is_restored_with_a_warning_naming_the_field() {
    let p = policy();
    let mut new = running();
    new["executionRef"] = json!({"name": "hijacked"});
    new["observedGeneration"] = json!(7);
    let out = run(&p, OPERATOR, running(), new);
    assert_eq!(out.status()["executionRef"]["name"], RUN_NAME);
    assert_eq!(out.status()["observedGeneration"], 1);
    let warnings = out.warnings();
    assert!(warnings.contains("status.executionRef"), "{warnings}");
    assert!(warnings.contains("status.observedGeneration"), "{warnings}");
    assert!(warnings.contains(OPERATOR), "names the writer: {warnings}");
    assert!(
        out.verdict
            .corrections
            .contains(&"executionRef".to_string())
    );
    assert!(matches!(out.verdict.decision, Decision::Patch(_)));
}

#[test]
fn a_field_a_non_owner_adds_is_removed_with_a_warning() {
    let p = policy();
    let mut new = running();
    new["deduplicatedBy"] = json!("wfe-other");
    new["somethingNew"] = json!(true);
    let out = run(&p, OPERATOR, running(), new);
    assert!(out.status().get("deduplicatedBy").is_none());
    assert!(
        out.status().get("somethingNew").is_none(),
        "unlisted fields belong to the controller"
    );
    assert!(out.warnings().contains("status.deduplicatedBy"));
    // The controller owns unlisted fields.
    let mut new = running();
    new["somethingNew"] = json!(true);
    let out = run(&p, CONTROLLER, running(), new);
    assert_eq!(out.status()["somethingNew"], true);
}

#[test]
fn the_executor_owns_its_credentials_when_configured_separately() {
    let p = policy_with(separate_executor);
    let mut new = running();
    new["ephemeralCredentialIDs"] = json!([103]);
    let out = run(&p, EXECUTOR, running(), new.clone());
    assert_eq!(out.status()["ephemeralCredentialIDs"], json!([103]));
    assert!(out.verdict.warnings.is_empty(), "{}", out.warnings());
    // The controller alone no longer owns them.
    let out = run(&p, CONTROLLER, running(), new);
    assert_eq!(out.status()["ephemeralCredentialIDs"], json!([101, 102]));
    assert!(out.warnings().contains("status.ephemeralCredentialIDs"));
    // And the executor owns nothing else.
    let mut new = running();
    new["phase"] = json!("Running");
    new["executionStatus"]["completedTasks"] = json!(4);
    let out = run(&p, EXECUTOR, running(), new);
    assert_eq!(out.status()["executionStatus"]["completedTasks"], 2);
}

#[test]
fn writers_are_matched_by_group() {
    let p = policy_with(|c| {
        let operator = c
            .writers
            .get_mut(crate::config::OPERATOR)
            .expect("operator");
        operator.any_other_user = false;
        operator.groups = vec!["kubernaut-operators".into()];
    });
    let new = json!({"phase": "Failed", "blockClearance": clearance(LONG_REASON)});
    let review = review_json(
        "bob",
        &["kubernaut-operators"],
        Some(failed()),
        Some(new.clone()),
    );
    let out = run_review(&p, &review);
    assert_eq!(out.status()["blockClearance"]["clearedBy"], "bob");
    // Outside the group bob owns nothing: the clearance is removed with a warning.
    let review = review_json("bob", &["developers"], Some(failed()), Some(new));
    let out = run_review(&p, &review);
    assert!(out.status().get("blockClearance").is_none());
    assert!(out.warnings().contains("status.blockClearance"));
}

// ---- Rule 2: conditions ------------------------------------------------------------------

#[test]
fn conditions_merge_by_type_in_stable_order() {
    let p = policy();
    let mut new = running();
    // The controller sends its list in another order, changes one, adds one.
    new["conditions"] = json!([
        condition("Ready", "False", &now_text()),
        condition("ExecutionRunning", "False", &now_text()),
        condition("ExecutionCreated", "True", &at(-215)),
    ]);
    let out = run(&p, CONTROLLER, running(), new);
    assert_eq!(
        condition_types(out.status()),
        [
            "ExecutionCreated",
            "ExecutionRunning",
            "AuditRecorded",
            "TektonPipelineCreated",
            "Ready"
        ]
    );
    assert_eq!(
        find_condition(out.status(), "ExecutionRunning")["status"],
        "False"
    );
    assert_eq!(find_condition(out.status(), "Ready")["status"], "False");
}

#[test]
fn condition_types_are_never_dropped_and_legacy_types_stay() {
    let p = policy();
    let mut old = running();
    old["conditions"].as_array_mut().expect("list").extend([
        condition("ResourceLocked", "False", "2025-12-01T08:00:00Z"),
        condition("SomeFutureType", "True", "2025-12-01T08:00:00Z"),
    ]);
    let mut new = running();
    new["conditions"] = json!([]);
    let out = run(&p, CONTROLLER, old.clone(), new);
    assert_eq!(out.status()["conditions"], old["conditions"]);
    let mut new = running();
    new.as_object_mut().expect("object").remove("conditions");
    let out = run(&p, CONTROLLER, old.clone(), new);
    assert_eq!(out.status()["conditions"], old["conditions"]);
}

#[test]
fn removable_types_are_removed_only_by_their_owner() {
    let p = policy_with(|c| c.conditions.removable = vec!["TokenTTLInsufficient".into()]);
    let mut old = running();
    old["conditions"]
        .as_array_mut()
        .expect("list")
        .push(condition("TokenTTLInsufficient", "True", &at(-100)));
    let mut new = old.clone();
    new["conditions"]
        .as_array_mut()
        .expect("list")
        .retain(|c| c["type"] != "TokenTTLInsufficient" && c["type"] != "AuditRecorded");
    let out = run(&p, CONTROLLER, old.clone(), new.clone());
    let types = condition_types(out.status());
    assert!(
        !types.contains(&"TokenTTLInsufficient".to_string()),
        "{types:?}"
    );
    assert!(
        types.contains(&"AuditRecorded".to_string()),
        "not removable: {types:?}"
    );
    // Not the owner: kept.
    let out = run(&p, OPERATOR, old.clone(), new);
    assert_eq!(out.status()["conditions"], old["conditions"]);
    // The default configuration has no removable types.
    let mut new = old.clone();
    new["conditions"] = json!([]);
    let out = run(&policy(), CONTROLLER, old.clone(), new);
    assert_eq!(out.status()["conditions"], old["conditions"]);
}

#[test]
fn a_non_owner_cannot_change_or_add_conditions() {
    let p = policy();
    let mut new = running();
    new["conditions"] = json!([
        condition("ExecutionRunning", "False", &now_text()),
        condition("OperatorNote", "True", &now_text()),
    ]);
    let out = run(&p, OPERATOR, running(), new);
    assert_eq!(out.status()["conditions"], running()["conditions"]);
    let warnings = out.warnings();
    assert!(
        warnings.contains("conditions[ExecutionRunning]"),
        "{warnings}"
    );
    assert!(warnings.contains("conditions[OperatorNote]"), "{warnings}");
}

#[test]
fn the_webhook_owns_its_rejection_condition() {
    let p = policy();
    let mut new = running();
    new["conditions"] = json!([condition("AdmissionRejected", "True", &now_text())]);
    let out = run(&p, WEBHOOK, running(), new.clone());
    assert_eq!(
        condition_types(out.status()).last().map(String::as_str),
        Some("AdmissionRejected")
    );
    let out = run(&p, CONTROLLER, running(), new);
    assert!(!condition_types(out.status()).contains(&"AdmissionRejected".to_string()));
}

#[test]
fn last_transition_time_is_kept_when_the_status_did_not_change() {
    let p = policy();
    let mut new = running();
    let mut c = condition("ExecutionRunning", "True", &now_text());
    c["message"] = json!("3 of 4 tasks completed");
    new["conditions"] = json!([c]);
    let out = run(&p, CONTROLLER, running(), new);
    let c = find_condition(out.status(), "ExecutionRunning");
    assert_eq!(c["lastTransitionTime"], at(-210));
    assert_eq!(
        c["message"], "3 of 4 tasks completed",
        "the rest is the writer's"
    );
}

#[test]
fn last_transition_time_moves_when_the_status_changed() {
    let p = policy();
    // Without a time of its own the writer gets `now`.
    let mut new = running();
    let c = untimed_condition("ExecutionRunning", "False");
    new["conditions"] = json!([c]);
    let out = run(&p, CONTROLLER, running(), new);
    assert_eq!(
        find_condition(out.status(), "ExecutionRunning")["lastTransitionTime"],
        now_text()
    );
    // With a time of its own, the writer's time stands.
    let mut new = running();
    new["conditions"] = json!([condition("ExecutionRunning", "False", &at(-5))]);
    let out = run(&p, CONTROLLER, running(), new);
    assert_eq!(
        find_condition(out.status(), "ExecutionRunning")["lastTransitionTime"],
        at(-5)
    );
    // A new type without a time gets `now`.
    let mut new = running();
    let c = untimed_condition("Ready", "True");
    new["conditions"] = json!([c]);
    let out = run(&p, CONTROLLER, running(), new);
    assert_eq!(
        find_condition(out.status(), "Ready")["lastTransitionTime"],
        now_text()
    );
}

#[test]
fn a_merge_patch_with_one_condition_keeps_all_others() {
    let p = policy();
    let mut old = running();
    old["conditions"] = json!([
        condition("Ready", "False", &at(-220)),
        condition("ExecutionCreated", "True", &at(-215)),
        condition("ExecutionRunning", "True", &at(-210)),
        condition("ExecutionComplete", "Unknown", &at(-210)),
        condition("AuditRecorded", "True", &at(-214)),
        condition("TokenTTLInsufficient", "False", &at(-216)),
        condition("TektonPipelineRunning", "True", "2025-12-01T08:00:00Z"),
    ]);
    let mut new = old.clone();
    new["phase"] = json!("Completed");
    new["conditions"] = json!([condition("ExecutionComplete", "True", &now_text())]);
    let out = run(&p, CONTROLLER, old.clone(), new);
    let s = out.status();
    assert_eq!(condition_types(s), condition_types(&old));
    assert_eq!(find_condition(s, "ExecutionComplete")["status"], "True");
    assert_eq!(
        find_condition(s, "ExecutionComplete")["lastTransitionTime"],
        now_text()
    );
    for kind in [
        "Ready",
        "ExecutionCreated",
        "TokenTTLInsufficient",
        "TektonPipelineRunning",
    ] {
        assert_eq!(find_condition(s, kind), find_condition(&old, kind));
    }
}

#[test]
fn repeated_or_untyped_sent_conditions_are_reported() {
    let p = policy();
    let mut new = running();
    new["conditions"] = json!([
        condition("Ready", "True", &now_text()),
        condition("Ready", "False", &now_text()),
        {"status": "True"},
    ]);
    let out = run(&p, CONTROLLER, running(), new);
    assert_eq!(
        find_condition(out.status(), "Ready")["status"],
        "True",
        "the first entry"
    );
    assert!(
        out.warnings().contains("more than once"),
        "{}",
        out.warnings()
    );
    assert!(
        out.warnings().contains("without a type"),
        "{}",
        out.warnings()
    );
}

#[test]
fn conditions_that_are_not_a_list_keep_the_stored_ones() {
    let p = policy();
    let mut new = running();
    new["conditions"] = json!({"type": "Ready"});
    let out = run(&p, CONTROLLER, running(), new);
    assert_eq!(out.status()["conditions"], running()["conditions"]);
    assert!(out.warnings().contains("status.conditions"));
}

// ---- Rule 3: write-once ------------------------------------------------------------------

#[test]
fn write_once_fields_keep_their_first_value_even_against_their_owner() {
    let p = policy();
    let mut new = failed();
    new["startTime"] = json!(at(-1));
    new["completionTime"] = json!(at(-1));
    new["failureDetails"]["reason"] = json!("TaskFailed");
    new["deduplicatedBy"] = json!("wfe-other");
    let mut old = failed();
    old["deduplicatedBy"] = json!("wfe-original");
    let out = run(&p, CONTROLLER, old.clone(), new);
    let s = out.status();
    for key in [
        "startTime",
        "completionTime",
        "failureDetails",
        "deduplicatedBy",
    ] {
        assert_eq!(s[key], old[key], "{key}");
        assert!(
            out.warnings()
                .contains(&format!("status.{key} is write-once")),
            "{key}"
        );
    }
    assert_eq!(
        s["failureReason"], "OOMKilled",
        "the mirror follows the kept details"
    );
}

#[test]
fn write_once_fields_are_restored_when_their_owner_drops_them() {
    let p = policy();
    let out = run(
        &p,
        CONTROLLER,
        failed(),
        without(failed(), &["startTime", "completionTime", "failureDetails"]),
    );
    for key in ["startTime", "completionTime", "failureDetails"] {
        assert_eq!(out.status()[key], failed()[key], "{key}");
    }
}

#[test]
fn a_write_once_field_can_be_written_the_first_time() {
    let p = policy();
    let mut new = running();
    new["deduplicatedBy"] = json!("wfe-original");
    let out = run(&p, CONTROLLER, running(), new);
    assert_eq!(out.status()["deduplicatedBy"], "wfe-original");
    assert!(out.verdict.warnings.is_empty(), "{}", out.warnings());
}

#[test]
fn clearance_attribution_keeps_its_first_value() {
    let p = policy();
    let mut old = failed();
    old["blockClearance"] = json!({
        "clearedBy": "carol@example.com",
        "clearedAt": at(-600),
        "clearReason": LONG_REASON,
        "clearMethod": "StatusField",
    });
    let mut new = old.clone();
    new["blockClearance"]["clearReason"] =
        json!("Updated: the limit was raised again after a second OOM in the canary pods");
    new["blockClearance"]["clearedBy"] = json!(OPERATOR);
    new["blockClearance"]["clearedAt"] = json!(now_text());
    let out = run(&p, OPERATOR, old, new);
    let bc = &out.status()["blockClearance"];
    assert_eq!(bc["clearedBy"], "carol@example.com");
    assert_eq!(bc["clearedAt"], at(-600));
    assert!(
        bc["clearReason"]
            .as_str()
            .is_some_and(|r| r.starts_with("Updated"))
    );
    assert!(out.warnings().contains("status.blockClearance.clearedBy"));
    assert!(out.warnings().contains("status.blockClearance.clearedAt"));
}

// ---- Rule 4: derived fields --------------------------------------------------------------

#[test]
fn entering_running_stamps_the_start_time() {
    let p = policy();
    let old = json!({"phase": "Pending", "observedGeneration": 1});
    let new =
        json!({"phase": "Running", "observedGeneration": 1, "executionRef": {"name": RUN_NAME}});
    let out = run(&p, CONTROLLER, old.clone(), new);
    assert_eq!(out.status()["startTime"], now_text());
    assert!(out.status().get("completionTime").is_none());
    assert!(out.status().get("duration").is_none());
    // A start time the controller sent stands.
    let new = json!({"phase": "Running", "startTime": at(-2)});
    let out = run(&p, CONTROLLER, old, new);
    assert_eq!(out.status()["startTime"], at(-2));
}

#[test]
fn staying_running_does_not_stamp() {
    let p = policy();
    let old = without(running(), &["startTime"]);
    let out = run(&p, CONTROLLER, old.clone(), old);
    assert!(out.status().get("startTime").is_none());
    assert_eq!(out.verdict.decision, Decision::Allow);
}

#[test]
fn entering_a_terminal_phase_stamps_completion_and_duration() {
    let p = policy();
    let mut new = running();
    new["phase"] = json!("Completed");
    let out = run(&p, CONTROLLER, running(), new);
    assert_eq!(out.status()["completionTime"], now_text());
    assert_eq!(out.status()["duration"], "3m30s");

    let mut old = running();
    old["startTime"] = json!(at(-3723));
    let mut new = old.clone();
    new["phase"] = json!("Failed");
    new["failureDetails"] = failed()["failureDetails"].clone();
    let out = run(&p, CONTROLLER, old, new);
    assert_eq!(out.status()["completionTime"], now_text());
    assert_eq!(out.status()["duration"], "1h2m3s");
    assert_eq!(out.status()["failureReason"], "OOMKilled");

    // Pending -> Failed: a completion time but no start, so no duration.
    let out = run(
        &p,
        CONTROLLER,
        json!({"phase": "Pending"}),
        json!({"phase": "Failed"}),
    );
    assert_eq!(out.status()["completionTime"], now_text());
    assert!(out.status().get("duration").is_none());
    assert!(out.status().get("startTime").is_none());
}

#[test]
fn duration_is_recomputed_whenever_both_times_exist() {
    let p = policy();
    let mut old = failed();
    old["startTime"] = json!("2026-03-01T10:00:00Z");
    old["completionTime"] = json!("2026-03-01T10:00:45Z");
    old["duration"] = json!("bogus");
    let mut new = old.clone();
    new["duration"] = json!("99s");
    let out = run(&p, CONTROLLER, old.clone(), new);
    assert_eq!(out.status()["duration"], "45s");
    // Even when a non-owner's change was reverted first.
    let mut new = old.clone();
    new["duration"] = json!("1s");
    let out = run(&p, OPERATOR, old, new);
    assert_eq!(out.status()["duration"], "45s");
    // The same instant is 0s.
    let mut s = failed();
    s["startTime"] = s["completionTime"].clone();
    let out = run(&p, CONTROLLER, s.clone(), s);
    assert_eq!(out.status()["duration"], "0s");
}

#[test]
fn failure_reason_mirrors_failure_details() {
    let p = policy();
    let mut old = failed();
    old.as_object_mut().expect("object").remove("failureReason");
    let mut new = old.clone();
    new["failureReason"] = json!("SomethingElse");
    let out = run(&p, CONTROLLER, old.clone(), new);
    assert_eq!(out.status()["failureReason"], "OOMKilled");
    let out = run(&p, CONTROLLER, old.clone(), old);
    assert_eq!(
        out.status()["failureReason"],
        "OOMKilled",
        "filled in for legacy objects"
    );
}

// ---- Rule 5: block clearance -------------------------------------------------------------

#[test]
fn a_new_clearance_is_attributed_to_the_requesting_user_now() {
    let p = policy();
    let mut new = failed();
    new["blockClearance"] = json!({
        "clearedBy": "system:serviceaccount:kubernaut-system:workflowexecution-controller",
        "clearedAt": "2020-01-01T00:00:00Z",
        "clearReason": LONG_REASON,
        "clearMethod": "StatusField",
    });
    let out = run(&p, OPERATOR, failed(), new);
    let bc = &out.status()["blockClearance"];
    assert_eq!(bc["clearedBy"], OPERATOR);
    assert_eq!(bc["clearedAt"], now_text());
    assert_eq!(bc["clearReason"], LONG_REASON);
    assert_eq!(bc["clearMethod"], "StatusField");
    assert!(
        out.warnings().contains("status.blockClearance.clearedBy"),
        "{}",
        out.warnings()
    );

    // Without any attribution it is filled in, said with a warning per field, no correction.
    let mut new = failed();
    new["blockClearance"] = clearance(LONG_REASON);
    let out = run(&p, OPERATOR, failed(), new);
    assert_eq!(out.status()["blockClearance"]["clearedBy"], OPERATOR);
    assert_eq!(out.status()["blockClearance"]["clearedAt"], now_text());
    assert_eq!(out.verdict.warnings.len(), 2, "{}", out.warnings());
    assert!(
        out.warnings()
            .contains("status.blockClearance.clearedBy was filled in as \"alice@example.com\"")
            && out
                .warnings()
                .contains("status.blockClearance.clearedAt was filled in"),
        "{}",
        out.warnings()
    );
    assert!(out.verdict.corrections.is_empty());
}

#[test]
fn a_forged_clearance_time_is_replaced() {
    let p = policy();
    for forged in [at(-3600), at(-31), at(60)] {
        let mut new = failed();
        new["blockClearance"] = clearance(LONG_REASON);
        new["blockClearance"]["clearedBy"] = json!(OPERATOR);
        new["blockClearance"]["clearedAt"] = json!(forged);
        let out = run(&p, OPERATOR, failed(), new);
        assert_eq!(
            out.status()["blockClearance"]["clearedAt"],
            now_text(),
            "{forged}"
        );
    }
}

#[test]
fn a_reinvocation_moments_later_changes_nothing() {
    let p = policy();
    let mut new = failed();
    new["blockClearance"] = clearance(LONG_REASON);
    let review = update(OPERATOR, failed(), new);
    let first = run_review(&p, &review);
    let later = now() + jiff::SignedDuration::from_secs(5);
    let second = run_review_at(&p, &first.mutated_review(&review), later);
    assert_eq!(second.verdict.decision, Decision::Allow);
}

#[test]
fn a_short_clearance_reason_is_denied() {
    let p = policy();
    let mut new = failed();
    new["blockClearance"] = clearance(NINE_WORDS);
    let out = run(&p, OPERATOR, failed(), new.clone());
    let message = denied(&out.verdict, DenyReason::BlockClearanceRejected);
    assert!(message.contains("at least 10 words (got 9)"), "{message}");
    assert!(message.contains(OPERATOR), "{message}");
    // Ten words pass.
    new["blockClearance"]["clearReason"] = json!(format!("{NINE_WORDS} ten"));
    allowed(&run(&p, OPERATOR, failed(), new).verdict);
}

#[test]
fn the_minimum_number_of_words_is_configurable() {
    let p = policy_with(|c| c.block_clearance.min_reason_words = 3);
    let mut new = failed();
    new["blockClearance"] = clearance("memory limit raised");
    allowed(&run(&p, OPERATOR, failed(), new.clone()).verdict);
    new["blockClearance"]["clearReason"] = json!("limit   raised");
    let out = run(&p, OPERATOR, failed(), new);
    let message = denied(&out.verdict, DenyReason::BlockClearanceRejected);
    assert!(message.contains("at least 3 words (got 2)"), "{message}");
}

#[test]
fn an_unchanged_legacy_reason_is_not_re_judged() {
    let p = policy();
    let mut old = failed();
    old["blockClearance"] = json!({
        "clearedBy": "carol@example.com",
        "clearedAt": at(-600),
        "clearReason": "fixed",
        "clearMethod": "Annotation",
    });
    // Another writer's update carries the short legacy reason along.
    let mut new = old.clone();
    new["observedGeneration"] = json!(2);
    allowed(&run(&p, CONTROLLER, old.clone(), new).verdict);
    // Its owner changing it to another short reason is denied.
    let mut new = old.clone();
    new["blockClearance"]["clearReason"] = json!("fixed it");
    denied(
        &run(&p, OPERATOR, old, new).verdict,
        DenyReason::BlockClearanceRejected,
    );
}

#[test]
fn a_clearance_without_a_user_is_denied() {
    // Operators recognised by group, so that a request without a user name still owns the field.
    let p = policy_with(|c| {
        c.writers
            .get_mut(crate::config::OPERATOR)
            .expect("operator")
            .groups = vec!["kubernaut-operators".into()];
    });
    let mut new = failed();
    new["blockClearance"] = clearance(LONG_REASON);
    let review = review_json("", &["kubernaut-operators"], Some(failed()), Some(new));
    let out = run_review(&p, &review);
    let message = denied(&out.verdict, DenyReason::BlockClearanceRejected);
    assert!(message.contains("authenticated user"), "{message}");
}

#[test]
fn a_clearance_by_nobody_never_gets_in() {
    // With the default writers an unauthenticated request owns nothing: whatever the verdict,
    // the clearance must not be stored.
    let p = policy();
    for user in ["", ANONYMOUS] {
        let mut new = failed();
        new["blockClearance"] = clearance(LONG_REASON);
        let out = run(&p, user, failed(), new);
        match out.verdict.decision {
            Decision::Deny(_) => {}
            // Rule 5: a missing user is denied, not merely reverted.
            _ if user.is_empty() => panic!("a clearance without a user was not denied"),
            _ => assert!(out.status().get("blockClearance").is_none(), "{user:?}"),
        }
    }
}

// ---- Writers rebuilding the status ---------------------------------------------------------

#[test]
fn a_controller_rebuild_keeps_the_operators_clearance() {
    let p = policy();
    let mut old = failed();
    old["blockClearance"] = json!({
        "clearedBy": OPERATOR,
        "clearedAt": at(-30),
        "clearReason": LONG_REASON,
        "clearMethod": "StatusField",
    });
    let new = without(old.clone(), &["blockClearance", "ephemeralCredentialIDs"]);
    let out = run(&p, CONTROLLER, old.clone(), new);
    assert_eq!(out.status()["blockClearance"], old["blockClearance"]);
}

#[test]
fn a_controller_rebuild_keeps_the_executors_credentials_when_it_is_separate() {
    let p = policy_with(separate_executor);
    let new = without(running(), &["ephemeralCredentialIDs"]);
    let out = run(&p, CONTROLLER, running(), new);
    assert_eq!(out.status()["ephemeralCredentialIDs"], json!([101, 102]));
}

#[test]
fn with_the_default_shared_identity_the_controller_may_drop_the_credentials() {
    // The executor shares the controller's identity by default (docs/policy.md, writers), so the same
    // user owns `ephemeralCredentialIDs` and its removal stands. Pinned here as documented
    // behaviour; see the report.
    let p = policy();
    let new = without(running(), &["ephemeralCredentialIDs"]);
    let out = run(&p, CONTROLLER, running(), new);
    assert!(out.status().get("ephemeralCredentialIDs").is_none());
}

#[test]
fn an_executor_rebuild_keeps_everything_else() {
    let p = policy_with(separate_executor);
    let new = json!({"ephemeralCredentialIDs": [101, 102, 103]});
    let out = run(&p, EXECUTOR, running(), new);
    let mut expected = running();
    expected["ephemeralCredentialIDs"] = json!([101, 102, 103]);
    assert_eq!(*out.status(), expected);
    assert!(out.verdict.warnings.is_empty(), "{}", out.warnings());
}

#[test]
fn an_empty_status_update_restores_everything() {
    let p = policy();
    let review = review_json(OPERATOR, &[], Some(running()), None);
    let out = run_review(&p, &review);
    assert_eq!(*out.status(), running());
}

#[test]
fn the_first_status_write_on_an_object_without_status() {
    let p = policy();
    let review = review_json(
        CONTROLLER,
        &[],
        None,
        Some(json!({"phase": "Pending", "observedGeneration": 1})),
    );
    let out = run_review(&p, &review);
    assert_eq!(out.verdict.decision, Decision::Allow);
    let review = review_json(CONTROLLER, &[], None, None);
    assert_eq!(run_review(&p, &review).verdict.decision, Decision::Allow);
}

#[test]
fn combine_is_usable_without_the_review_layer() {
    let p = policy();
    let combined = combine_as(&p, OPERATOR, running(), json!({}));
    assert_eq!(Value::Object(combined.status), running());
    assert!(combined.denial.is_none());
}

// ---- Cases the property tests found (pinned) -----------------------------------------------

#[test]
fn found_by_properties_an_unchanged_condition_stored_without_a_time_stays_as_it_is() {
    // A stored condition without lastTransitionTime: carried over when left out, and the same
    // when sent back unchanged (the reinvocation), so the second pass is an empty patch.
    let p = policy();
    let c = untimed_condition("ExecutionRunning", "True");
    let old = json!({"phase": "Running", "conditions": [c.clone()]});
    let out = run(&p, CONTROLLER, old.clone(), json!({"phase": "Running"}));
    assert_eq!(out.status()["conditions"], json!([c.clone()]));
    let out = run(&p, CONTROLLER, old.clone(), old.clone());
    assert_eq!(out.verdict.decision, Decision::Allow);
    // A transition is still stamped.
    let mut changed = c;
    changed["status"] = json!("False");
    let out = run(&p, CONTROLLER, old, json!({"conditions": [changed]}));
    assert_eq!(
        find_condition(out.status(), "ExecutionRunning")["lastTransitionTime"],
        now_text()
    );
}

#[test]
fn found_by_properties_a_stored_clearance_without_attribution_is_attributed_when_changed() {
    // Written before the webhook was installed: no clearedBy/clearedAt. The operator who changes
    // it is recorded (a forged name replaced), and validation agrees with the result.
    let p = policy();
    let mut old = failed();
    old["blockClearance"] = clearance("fixed");
    let mut new = old.clone();
    new["blockClearance"] = clearance(LONG_REASON);
    new["blockClearance"]["clearedBy"] = json!(CONTROLLER);
    let review = update(OPERATOR, old.clone(), new);
    let out = run_review(&p, &review);
    let bc = &out.status()["blockClearance"];
    assert_eq!(bc["clearedBy"], OPERATOR);
    assert_eq!(bc["clearedAt"], now_text());
    assert!(out.warnings().contains("status.blockClearance.clearedBy"));
    assert_eq!(
        validate(&p, &out.mutated_review(&review)).decision,
        Decision::Allow
    );
    // Left unchanged by another writer, it is not attributed to that writer.
    let mut new = old.clone();
    new["observedGeneration"] = json!(2);
    let out = run(&p, CONTROLLER, old.clone(), new);
    assert_eq!(out.status()["blockClearance"], old["blockClearance"]);
}

#[test]
fn found_by_properties_a_clearance_removed_by_its_owner_takes_its_attribution_along() {
    // Pinned as current behaviour (see the report): the operator owns `blockClearance` as a
    // whole, so removing it (absent or null) stands although the attribution is write-once.
    let p = policy();
    let mut old = failed();
    old["blockClearance"] = json!({
        "clearedBy": "carol@example.com",
        "clearedAt": at(-600),
        "clearReason": LONG_REASON,
        "clearMethod": "StatusField",
    });
    let out = run(
        &p,
        OPERATOR,
        old.clone(),
        without(old.clone(), &["blockClearance"]),
    );
    assert!(out.status().get("blockClearance").is_none());
    let mut new = old.clone();
    new["blockClearance"] = Value::Null;
    let out = run(&p, OPERATOR, old, new);
    assert_eq!(out.status()["blockClearance"], Value::Null);
}
