use serde_json::{Value, json};

use super::audit::{Event, Recorded};
use super::history::Body;
use super::{Options, replay};
use crate::config::Config;
use crate::offline::{self, Write};
use crate::policy::Policy;

const CONTROLLER: &str = "system:serviceaccount:kubernaut-system:workflowexecution-controller";
const OPERATOR: &str = "alice@example.com";

fn event(value: Value) -> Event {
    let mut base = json!({
        "apiVersion": "audit.k8s.io/v1", "kind": "Event", "level": "Request",
        "stage": "ResponseComplete", "auditID": "a",
        "requestURI": "/apis/kubernaut.ai/v1alpha1/namespaces/ns/workflowexecutions/w/status",
        "objectRef": {"resource": "workflowexecutions", "namespace": "ns", "name": "w",
            "apiGroup": "kubernaut.ai", "apiVersion": "v1alpha1", "subresource": "status"},
        "user": {"username": CONTROLLER},
        "responseStatus": {"code": 200},
        "requestReceivedTimestamp": "2026-12-03T10:00:00.100000Z",
        "stageTimestamp": "2026-12-03T10:00:00.200000Z",
    });
    if let (Some(b), Some(v)) = (base.as_object_mut(), value.as_object()) {
        for (k, v) in v {
            b.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(base).expect("an event")
}

fn object(status: Value) -> Value {
    json!({"apiVersion": "kubernaut.ai/v1alpha1", "kind": "WorkflowExecution",
        "metadata": {"name": "w", "namespace": "ns"}, "status": status})
}

/// A create the log recorded with the stored object (the API server drops the status a create
/// sends, so a stored status comes from the log's RequestResponse answer).
fn create() -> Event {
    let mut e = event(json!({"verb": "create", "responseStatus": {"code": 201},
        "requestObject": object(json!({})),
        "responseObject": object(json!({"phase": "Running", "startTime": "2026-12-03T09:59:00Z"}))}));
    if let Some(r) = e.object_ref.as_mut() {
        r.subresource.clear();
    }
    e
}

fn options() -> Options {
    Options {
        configurations: vec!["wfe-admission".into()],
        objects: Vec::new(),
        since: None,
    }
}

fn called() -> Value {
    json!({"mutation.webhook.admission.k8s.io/round_0_index_0":
        r#"{"configuration":"wfe-admission","webhook":"status.mutate","mutated":false}"#})
}

#[test]
fn the_body_and_query_tell_the_patch_type() {
    let patch = |body: Value, query: &str| {
        let mut e = event(json!({"verb": "patch", "requestObject": body}));
        e.request_uri.push_str(query);
        Body::of(&e)
    };
    assert_eq!(patch(json!([]), ""), Some(Body::JsonPatch));
    assert_eq!(
        patch(json!({"status": {}}), "?fieldManager=x"),
        Some(Body::MergePatch)
    );
    assert_eq!(patch(object(json!({})), ""), Some(Body::MergePatch));
    assert_eq!(
        patch(object(json!({})), "?fieldManager=x"),
        Some(Body::Apply)
    );
    assert_eq!(
        patch(json!({"status": {}}), "?force=true"),
        Some(Body::Apply)
    );
    assert_eq!(
        Body::of(&event(json!({"verb": "update"}))),
        Some(Body::Update)
    );
}

#[test]
fn the_recorded_verdict_reads_code_message_and_our_patch_annotations() {
    let configs = ["wfe-admission".to_string()];
    let annotated = |configuration: &str| {
        let value = json!({"configuration": configuration, "webhook": "w",
            "patch": [{"op": "add", "path": "/status/x", "value": 1}], "patchType": "JSONPatch"});
        event(json!({"annotations": {
            "patch.webhook.admission.k8s.io/round_0_index_1": value.to_string()}}))
    };
    assert!(
        matches!(Recorded::of(&annotated("wfe-admission"), &configs), Recorded::Patched(p) if p.len() == 1)
    );
    assert_eq!(
        Recorded::of(&annotated("someone-else"), &configs),
        Recorded::Allowed
    );
    let answered = |code: u16, reason: &str, message: &str| {
        let status = json!({"code": code, "reason": reason, "message": message});
        Recorded::of(&event(json!({"responseStatus": status})), &configs).name()
    };
    let denial = "admission webhook \"status.validate\" denied the request: no";
    assert_eq!(answered(400, "BadRequest", denial), "denied");
    assert_eq!(
        answered(403, "Forbidden", "cannot patch resource"),
        "refused-before-admission"
    );
    assert_eq!(
        answered(422, "Invalid", "status.phase: Unsupported value"),
        "refused-before-admission"
    );
    assert_eq!(
        answered(500, "InternalError", "failed calling webhook"),
        "failed"
    );
}

#[test]
fn a_request_level_history_is_the_replayed_one() {
    let policy = Policy::new(Config::default()).expect("policy");
    let to = |phase: &str, user: &str, code: u16| {
        let mut e = event(
            json!({"verb": "patch", "requestObject": {"status": {"phase": phase}},
            "annotations": called()}),
        );
        e.user.username = user.into();
        if code != 200 {
            e.response_status = serde_json::from_value(json!({"code": code,
                "message": "admission webhook \"v\" denied the request: ns/w"}))
            .ok();
        }
        e
    };
    // The operator's move is denied, so the state stays Running and the controller's
    // Completed is judged from Running (allowed), then Completed → Running is denied.
    let events = vec![
        create(),
        to("Completed", OPERATOR, 403),
        to("Completed", CONTROLLER, 200),
        to("Running", CONTROLLER, 403),
    ];
    let report = replay(&policy, events, &options());
    let moves: Vec<_> = report
        .records
        .iter()
        .map(|r| (r.phase_move.clone(), r.replayed))
        .collect();
    assert_eq!(
        moves,
        vec![
            (Some("Running → Completed".into()), "denied"),
            (Some("Running → Completed".into()), "patched"),
            (Some("Completed → Running".into()), "denied"),
        ],
        "{report:#?}"
    );
    // The controller's completion was recorded as allowed without a patch: replay says the
    // policy would have set the derived fields.
    assert_eq!(report.records[1].agrees, Some(false));
    assert!(
        report.records[1]
            .fields
            .contains(&"completionTime".to_string()),
        "{report:#?}"
    );
    assert!(
        report.records[1].reason.starts_with("stored as sent"),
        "{report:#?}"
    );
}

#[test]
fn writes_without_a_known_state_or_body_are_not_judged() {
    let policy = Policy::new(Config::default()).expect("policy");
    let write =
        event(json!({"verb": "update", "requestObject": object(json!({"phase": "Running"}))}));
    let mut metadata = write.clone();
    metadata.level = "Metadata".into();
    metadata.request_object = None;
    let report = replay(&policy, vec![write, create(), metadata], &options());
    let reasons: Vec<_> = report
        .records
        .iter()
        .map(|r| (r.agrees, r.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 2);
    assert_eq!(reasons[0].0, None);
    assert!(
        reasons[0].1.starts_with("the log holds no earlier state"),
        "{reasons:?}"
    );
    assert!(
        reasons[1]
            .1
            .starts_with("recorded without its body (level Metadata)"),
        "{reasons:?}"
    );
    assert_eq!(
        report.summary(),
        "replay: 2 writes, 0 agree, 0 differ, 2 not judged"
    );
}

/// What the webhook answered `user`'s write of `new` over `old` when its clock read `at`.
fn answered(policy: &Policy, old: Value, new: Value, user: &str, at: &str) -> offline::Outcome {
    let write = Write {
        old,
        new,
        user,
        groups: &[],
        dry_run: false,
    };
    let req = offline::request(policy, write).expect("request");
    offline::evaluate(policy, req, at.parse().expect("time")).expect("verdict")
}

/// A controller's `Running → Completed` and what the webhook answered when its clock read
/// `received`; the sent object and the answer.
fn completed_at(policy: &Policy, received: &str) -> (Value, offline::Outcome) {
    let running = object(json!({"phase": "Running", "startTime": "2026-12-03T09:59:00Z"}));
    let sent = object(json!({"phase": "Completed", "startTime": "2026-12-03T09:59:00Z"}));
    let answer = answered(policy, running, sent.clone(), CONTROLLER, received);
    assert!(answer.patched());
    (sent, answer)
}

/// Annotations saying the webhook was called and answered `patch`.
fn patched_with(patch: &Value) -> Value {
    let mut annotations = called();
    annotations["patch.webhook.admission.k8s.io/round_0_index_0"] = json!(
        json!({"configuration": "wfe-admission", "webhook": "m", "patch": patch}).to_string()
    );
    annotations
}

#[test]
fn a_write_across_a_second_boundary_is_judged_at_both_ends() {
    let policy = Policy::new(Config::default()).expect("policy");
    let received = "2026-12-03T10:00:00.900000Z";
    let (sent, answered) = completed_at(&policy, received);
    let annotations = patched_with(&answered.patch);
    let created = create();
    let recorded = |received: Option<&str>| {
        let mut e = event(
            json!({"verb": "update", "requestObject": sent, "annotations": annotations,
            "stageTimestamp": "2026-12-03T10:00:01.050000Z"}),
        );
        e.request_received_timestamp = received.map(str::to_string);
        let report = replay(&policy, vec![created.clone(), e], &options());
        report.records[0].agrees
    };
    assert_eq!(recorded(Some(received)), Some(true));
    assert_eq!(recorded(None), Some(false));
}

#[test]
fn a_retried_write_across_a_second_boundary_is_judged_by_what_was_stored() {
    let policy = Policy::new(Config::default()).expect("policy");
    let received = "2026-12-03T10:00:00.900000Z";
    let (sent, last) = completed_at(&policy, received);
    // The first attempt met another stored copy, so its annotation sets other times than the
    // attempt that was stored; the answer came back in the next second.
    let annotations = patched_with(&json!([
        {"op": "add", "path": "/status/completionTime", "value": "2026-12-03T10:00:00Z"}]));
    let mut stored = sent.clone();
    stored["status"] = last.status.clone();
    let recorded = |stored: Value| {
        let e = event(
            json!({"verb": "update", "requestObject": sent, "annotations": annotations,
            "requestReceivedTimestamp": received, "responseObject": stored,
            "stageTimestamp": "2026-12-03T10:00:01.050000Z"}),
        );
        replay(&policy, vec![create(), e], &options()).records[0].clone()
    };
    let record = recorded(stored.clone());
    assert_eq!(record.agrees, Some(true), "{record:#?}");
    assert!(record.reason.contains("earlier attempt"), "{record:#?}");
    // Stored at neither end's time: not this policy's.
    stored["status"]["completionTime"] = json!("2026-12-03T10:00:02Z");
    assert_eq!(recorded(stored).agrees, Some(false));
}

#[test]
fn another_webhooks_earlier_patch_is_what_this_one_was_shown() {
    let policy = Policy::new(Config::default()).expect("policy");
    let mut created = create();
    created.response_object = Some(object(json!({
        "phase": "Completed", "startTime": "2026-12-03T09:59:00Z",
        "completionTime": "2026-12-03T09:59:30Z", "duration": "30s"})));
    let stored = created.response_object.clone().expect("stored");
    // Another mutating webhook, called first, moves the phase back; this one then denies.
    let mut shown = stored.clone();
    shown["status"]["phase"] = json!("Running");
    let write = Write {
        old: stored,
        new: shown,
        user: CONTROLLER,
        groups: &[],
        dry_run: false,
    };
    let req = offline::request(&policy, write).expect("request");
    let judged = offline::evaluate(&policy, req, "2026-12-03T10:00:00Z".parse().expect("time"))
        .expect("verdict");
    let message = judged.message.expect("a denial");
    let other = json!({"configuration": "someone-else", "webhook": "other.example.com",
        "patch": [{"op": "replace", "path": "/status/phase", "value": "Running"}],
        "patchType": "JSONPatch"});
    let event = |with_other: bool| {
        let mut annotations = json!({
            "mutation.webhook.admission.k8s.io/round_0_index_1":
                r#"{"configuration":"wfe-admission","webhook":"m","mutated":false}"#});
        if with_other {
            annotations["patch.webhook.admission.k8s.io/round_0_index_0"] =
                json!(other.to_string());
        }
        event(
            json!({"verb": "patch", "requestObject": {"status": {"observedGeneration": 2}},
            "annotations": annotations,
            "responseStatus": {"code": 403,
                "message": format!("admission webhook \"v\" denied the request: {message}")}}),
        )
    };
    let report = replay(&policy, vec![created.clone(), event(true)], &options());
    let record = &report.records[0];
    assert_eq!(
        (record.replayed, record.agrees),
        ("denied", Some(true)),
        "{report:#?}"
    );
    assert!(
        record
            .reason
            .contains("judged after the recorded patches of other.example.com"),
        "{report:#?}"
    );
    let report = replay(&policy, vec![created, event(false)], &options());
    assert_eq!(report.records[0].agrees, Some(false), "{report:#?}");
}

#[test]
fn writes_before_since_build_the_history_unreported() {
    let policy = Policy::new(Config::default()).expect("policy");
    let move_to = |phase: &str, at: &str| {
        event(
            json!({"verb": "patch", "requestObject": {"status": {"phase": phase}},
            "stageTimestamp": at, "requestReceivedTimestamp": at}),
        )
    };
    let events = vec![
        create(),
        move_to("Completed", "2026-12-03T10:00:00Z"),
        move_to("Running", "2026-12-03T10:00:05Z"),
    ];
    let options = Options {
        since: "2026-12-03T10:00:01Z".parse().ok(),
        ..options()
    };
    let report = replay(&policy, events, &options);
    assert_eq!(report.records.len(), 1, "{report:#?}");
    // Judged from the Completed the unreported write left.
    assert_eq!(
        report.records[0].phase_move.as_deref(),
        Some("Completed → Running")
    );
    assert_eq!(report.records[0].replayed, "denied");
}

#[test]
fn the_webhooks_own_write_is_named_and_only_that() {
    let policy = Policy::new(Config::default()).expect("policy");
    let by = |user: &str| {
        let mut e = event(json!({"verb": "patch", "annotations": called(),
            "requestObject": {"status": {"conditions": []}}}));
        e.user.username = user.into();
        e
    };
    let own = "system:serviceaccount:wfe-system:wfe-admission";
    let report = replay(&policy, vec![create(), by(own), by(CONTROLLER)], &options());
    let notes: Vec<bool> = report
        .records
        .iter()
        .map(|r| r.reason.contains("the webhook's own write"))
        .collect();
    assert_eq!(notes, [true, false], "{report:#?}");
    assert_eq!(report.records[0].writer, "webhook");
}

#[test]
fn a_webhook_that_failed_open_in_two_rounds_is_named_once() {
    let name = |round: u32, index: u32| {
        format!("failed-open.mutation.webhook.admission.k8s.io/round_{round}_index_{index}")
    };
    let e = event(json!({"verb": "update", "annotations": {
        name(0, 0): "a.example.com", name(0, 1): "b.example.com",
        name(1, 0): "a.example.com", name(1, 1): "b.example.com"}}));
    assert_eq!(e.failed_open(), vec!["a.example.com", "b.example.com"]);
}

#[test]
fn a_later_webhooks_patch_and_the_reinvocation_are_in_what_was_stored() {
    let policy = Policy::new(Config::default()).expect("policy");
    let failed = object(
        json!({"phase": "Failed", "startTime": "2026-12-03T09:59:00Z",
        "completionTime": "2026-12-03T09:59:30Z", "duration": "30s"}),
    );
    let mut created = create();
    created.response_object = Some(failed.clone());
    let clearance = json!({"status": {"blockClearance": {"clearReason":
        "the failed restart was looked into and the deployment is healthy again, unblock it",
        "clearMethod": "StatusField", "clearedBy": "somebody-else@example.com"}}});
    let mut sent = failed.clone();
    json_patch::merge(&mut sent, &clearance);
    let received = "2026-12-03T10:00:00.900000Z";
    let ours = answered(&policy, failed, sent.clone(), OPERATOR, received);
    assert!(ours.patched(), "{ours:#?}");
    // Another webhook, called after ours, stamps the clearance with its own clock, a second
    // later; ours, called again, keeps that recent stamp.
    let later = json!([
        {"op": "add", "path": "/status/blockClearance/clearedBy", "value": OPERATOR},
        {"op": "add", "path": "/status/blockClearance/clearedAt", "value": "2026-12-03T10:00:01Z"}]);
    let call = |configuration: &str, mutated: bool| {
        json!({"configuration": configuration, "webhook": "m", "mutated": mutated}).to_string()
    };
    let mut stored = sent.clone();
    stored["status"] = ours.status.clone();
    stored["status"]["blockClearance"]["clearedAt"] = json!("2026-12-03T10:00:01Z");
    let recorded = |reinvoked: bool| {
        let mut annotations = patched_with(&ours.patch);
        annotations["mutation.webhook.admission.k8s.io/round_0_index_1"] =
            json!(call("other", true));
        annotations["patch.webhook.admission.k8s.io/round_0_index_1"] = json!(
            json!({"configuration": "other", "webhook": "other.example.com", "patch": later})
                .to_string()
        );
        if reinvoked {
            annotations["mutation.webhook.admission.k8s.io/round_1_index_0"] =
                json!(call("wfe-admission", false));
        }
        let e = event(json!({"verb": "patch", "requestObject": clearance,
            "requestURI": "/apis/kubernaut.ai/v1alpha1/namespaces/ns/workflowexecutions/w/status?dryRun=All",
            "user": {"username": OPERATOR}, "annotations": annotations,
            "requestReceivedTimestamp": received, "responseObject": stored,
            "stageTimestamp": "2026-12-03T10:00:01.050000Z"}));
        replay(&policy, vec![created.clone(), e], &options()).records[0].clone()
    };
    let record = recorded(true);
    assert_eq!(record.agrees, Some(true), "{record:#?}");
    assert!(
        record
            .reason
            .contains("stored after the recorded patches of other.example.com"),
        "{record:#?}"
    );
    // Not called again: the other's patch alone goes on top, and its stamp is the stored one.
    assert_eq!(recorded(false).agrees, Some(true));
}
