//! kubernaut's real write sequences (tests/data/kubernaut/writes.yaml) through both endpoints
//! with the default policy, as the API server calls them: every legitimate write passes as sent,
//! what the webhook changes is exactly what the data says and is said out loud, illegal moves
//! are denied.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::support::{self, CONTROLLER, OPERATOR, status};
use crate::policy::review::{Decision, Verdict};

#[path = "../../../tests/support/kubernaut_writes.rs"]
mod writes;

use writes::Who;

const ORCHESTRATOR: &str =
    "system:serviceaccount:kubernaut-system:remediationorchestrator-controller";

fn user(who: Who) -> &'static str {
    match who {
        Who::Controller => CONTROLLER,
        Who::Orchestrator => ORCHESTRATOR,
        Who::Operator => OPERATOR,
    }
}

/// Mutate then validate the mutated object, as the API server chains the two webhooks.
fn admit(
    old: &writes::Status,
    sent: &writes::Status,
    who: Who,
    now: Timestamp,
) -> (Verdict, Result<writes::Status, String>) {
    let policy = support::policy();
    let review = support::update(
        user(who),
        Value::Object(old.clone()),
        Value::Object(sent.clone()),
    );
    let outcome = support::run_review_at(&policy, &review, now);
    let verdict = outcome.verdict.clone();
    if let Decision::Deny(d) = &verdict.decision {
        return (
            verdict.clone(),
            Err(format!("{} {}", d.reason.as_str(), d.message)),
        );
    }
    let validated = support::validate(&policy, &outcome.mutated_review(&review));
    if let Decision::Deny(d) = &validated.decision {
        return (verdict, Err(format!("{} {}", d.reason.as_str(), d.message)));
    }
    (verdict, Ok(status(outcome.status().clone())))
}

/// The value sent at a `changed` path (`blockClearance.clearedBy` inside the clearance).
fn sent_value<'a>(sent: &'a writes::Status, field: &str) -> Option<&'a Value> {
    let mut parts = field.split('.');
    let mut value = sent.get(parts.next()?)?;
    for part in parts {
        value = value.get(part)?;
    }
    (!value.is_null()).then_some(value)
}

#[test]
fn kubernauts_writes_pass_as_sent_and_what_changes_is_said() {
    let data = writes::load().expect("the kubernaut write data loads");
    let start: Timestamp = "2026-03-01T12:00:00Z".parse().expect("time");
    let mut rows = Vec::new();
    for lifecycle in &data.lifecycles {
        let mut stored = writes::Status::new();
        for w in &lifecycle.writes {
            let now = w.clock(start);
            let sent = w.sent(&stored, now);
            let from = stored
                .get("phase")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let context = format!("{} / {}", lifecycle.name, w.what);
            let (verdict, result) = admit(&stored, &sent, w.writer, now);
            match (&w.expect.denied, result) {
                (Some(reason), Err(message)) => {
                    assert!(message.starts_with(reason.as_str()), "{context}: {message}");
                    if let Some(piece) = &w.expect.message {
                        assert!(message.contains(piece.as_str()), "{context}: {message}");
                    }
                    assert!(
                        verdict.corrections.is_empty(),
                        "{context}: nothing stored, nothing corrected"
                    );
                    rows.push(format!("{context}: denied {reason}"));
                }
                (None, Ok(result)) => {
                    let changed = writes::changed(&sent, &result);
                    assert_eq!(
                        changed, w.expect.changed,
                        "{context}: sent {sent:?}, stored {result:?}"
                    );
                    // Whatever changed was said: a warning naming each field, and a counted
                    // correction for each value that was sent and replaced.
                    for field in &changed {
                        assert!(
                            verdict
                                .warnings
                                .iter()
                                .any(|x| x.contains(&format!("status.{field}"))),
                            "{context}: {field} changed silently; warnings {:?}",
                            verdict.warnings
                        );
                        if sent_value(&sent, field).is_some() {
                            assert!(
                                verdict
                                    .corrections
                                    .iter()
                                    .any(|c| c.starts_with(field.as_str())),
                                "{context}: {field} replaced without a correction: {:?}",
                                verdict.corrections
                            );
                        }
                    }
                    if changed.is_empty() {
                        assert!(
                            verdict.warnings.is_empty(),
                            "{context}: {:?}",
                            verdict.warnings
                        );
                        assert!(verdict.corrections.is_empty(), "{context}");
                    }
                    let to = result
                        .get("phase")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    rows.push(format!(
                        "{context}: {from} → {to} allowed, changed {changed:?}"
                    ));
                    stored = result;
                }
                (expected, got) => panic!(
                    "{context}: expected {expected:?}, got {got:?} (warnings {:?})",
                    verdict.warnings
                ),
            }
        }
    }
    println!("{}", rows.join("\n"));
    assert!(rows.len() >= 40, "{} writes", rows.len());
}

#[test]
fn a_duration_one_second_off_the_stored_times_is_kept_and_two_seconds_off_is_corrected() {
    let policy = support::policy();
    let running = json!({"phase": "Running", "startTime": "2026-03-01T11:59:00Z"});
    let completed = |duration: &str| {
        json!({
            "phase": "Completed",
            "startTime": "2026-03-01T11:59:00Z",
            "completionTime": "2026-03-01T11:59:03Z",
            "duration": duration,
        })
    };
    let kept = support::run(&policy, CONTROLLER, running.clone(), completed("4s"));
    assert_eq!(kept.status()["duration"], "4s");
    assert!(
        kept.verdict.warnings.is_empty(),
        "{:?}",
        kept.verdict.warnings
    );
    let fixed = support::run(&policy, CONTROLLER, running, completed("5s"));
    assert_eq!(fixed.status()["duration"], "3s");
    assert_eq!(fixed.verdict.corrections, vec!["duration".to_string()]);
    let warning = fixed.warnings();
    assert!(
        warning.contains("status.duration was recomputed")
            && warning.contains("sent \"5s\", stored \"3s\""),
        "{warning}"
    );
}

#[test]
fn an_illegal_move_that_carries_a_correction_reports_no_correction() {
    let policy = support::policy();
    let completed = json!({
        "phase": "Completed",
        "startTime": "2026-03-01T11:59:00Z",
        "completionTime": "2026-03-01T11:59:30Z",
        "duration": "30s",
    });
    let mut back = completed.clone();
    back["phase"] = json!("Running");
    back["startTime"] = json!("2026-03-01T11:59:10Z");
    let review = support::update(CONTROLLER, completed, back);
    let verdict = support::mutate(&policy, &review);
    assert!(
        verdict
            .warnings
            .iter()
            .any(|w| w.contains("status.startTime is write-once"))
    );
    assert!(verdict.corrections.is_empty(), "{:?}", verdict.corrections);
    let outcome = support::run_review(&policy, &review);
    let validated = support::validate(&policy, &outcome.mutated_review(&review));
    support::denied(
        &validated,
        crate::policy::review::DenyReason::IllegalPhaseTransition,
    );
}

#[test]
fn the_orchestrator_may_fail_an_unfinished_child_and_nothing_else() {
    let policy = support::policy();
    let running = json!({"phase": "Running", "startTime": "2026-03-01T11:59:00Z"});
    // Its cascade: the move and its reason.
    let cascade = json!({"phase": "Failed", "startTime": "2026-03-01T11:59:00Z",
        "failureReason": "Parent RR entered terminal phase: Cancelled"});
    let out = support::run(&policy, ORCHESTRATOR, running.clone(), cascade);
    assert_eq!(
        out.status()["failureReason"],
        "Parent RR entered terminal phase: Cancelled"
    );
    assert_eq!(out.status()["completionTime"], support::now_text());
    assert!(out.verdict.corrections.is_empty());
    // The reason alone, without the move, is not its to write.
    let reason_only = json!({"phase": "Running", "startTime": "2026-03-01T11:59:00Z",
        "failureReason": "Parent RR entered terminal phase: Cancelled"});
    let out = support::run(&policy, ORCHESTRATOR, running.clone(), reason_only);
    assert!(out.status().get("failureReason").is_none());
    assert_eq!(out.verdict.corrections, vec!["failureReason".to_string()]);
    // Any other move is refused, saying which moves it has.
    let done = json!({"phase": "Completed", "startTime": "2026-03-01T11:59:00Z"});
    let verdict = support::validate(&policy, &support::update(ORCHESTRATOR, running, done));
    let message = support::denied(&verdict, crate::policy::review::DenyReason::PhaseNotOwned);
    assert!(
        message.contains("only controller may change the phase; orchestrator may only move Pending, Running → Failed"),
        "{message}"
    );
    // Configured away, it is an operator like anyone else.
    let policy = support::policy_with(|c| {
        c.moves.clear();
    });
    let cascade = json!({"phase": "Failed"});
    let verdict = support::validate(
        &policy,
        &support::update(ORCHESTRATOR, json!({"phase": "Running"}), cascade),
    );
    support::denied(&verdict, crate::policy::review::DenyReason::PhaseNotOwned);
}
