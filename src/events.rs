//! Denials and corrections recorded as `events.k8s.io/v1` Events, after the answer.
//!
//! The admission handler only `try_send`s onto a bounded queue: recording never delays or fails
//! an answer. A worker publishes through kube-runtime's recorder (repeats on the same object
//! aggregate into a series), each attempt bounded by a timeout and retried with backoff; a full
//! queue drops the event and counts it.
//!
//! What a flood of made-up reviews can do when anyone reaches the port is bounded too: an Event
//! only regards an object that is stored with the uid the review named, and each object gets a
//! few Events per reason per window ([`budget`]).

pub mod budget;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;

use crate::metrics::{Attempt, Endpoint, Metrics};
use crate::policy::Policy;
use crate::policy::review::{Decision, DenyReason, Verdict};
use crate::policy::transitions::PhaseValue;
use crate::server::VerdictSink;
use crate::status::{RejectionCondition, StatusManager};

/// Reason of the Events recorded for corrections.
pub const CORRECTION_REASON: &str = "StatusFieldRestored";

/// One Event to publish, and optionally the rejection condition to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    pub regarding: ObjectReference,
    pub reason: String,
    pub action: String,
    pub note: String,
    pub rejection: Option<RejectionCondition>,
    /// For a denied phase move: the version it was judged against and the move, so that the
    /// worker can tell a denial the API server superseded (see [`superseded`]).
    pub judged: Option<Judged>,
}

/// What a phase-move denial was judged against.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub version: String,
    pub to: String,
}

/// Events API notes are limited to 1 kB.
const NOTE_LIMIT: usize = 1024;

fn truncate(mut text: String) -> String {
    if text.len() > NOTE_LIMIT {
        let mut cut = NOTE_LIMIT - 3;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

/// What a verdict should record (pure: unit tested without a cluster).
pub fn drafts(policy: &Policy, endpoint: Endpoint, verdict: &Verdict) -> Vec<Draft> {
    let events = &policy.config.events;
    if verdict.dry_run || verdict.ignored {
        return Vec::new();
    }
    let s = &verdict.subject;
    // A write that names another resourceVersion than the one judged is never applied with
    // this verdict: the API server answers 409, or (its copy was stale) judges it again
    // against the stored object. The mutating webhook runs before that check and sees these.
    if let (Some(sent), Some(judged)) = (&s.sent_version, &s.judged_version)
        && sent != judged
    {
        return Vec::new();
    }
    let regarding = ObjectReference {
        api_version: Some(s.api_version.clone()),
        kind: Some(s.kind.clone()),
        name: Some(s.name.clone()),
        namespace: s.namespace.clone(),
        uid: s.uid.clone(),
        ..ObjectReference::default()
    };
    let mut out = Vec::new();
    if let Decision::Deny(denial) = &verdict.decision
        && events.denials
    {
        // The action names the move, so repeats of one move aggregate and different moves don't.
        let action = match &s.transition {
            Some((from, to)) => format!("{from}To{to}"),
            None => format!("Deny{}", endpoint_action(endpoint)),
        };
        let rejection = events.rejection_condition.then(|| RejectionCondition {
            condition_type: events.rejection_condition_type.clone(),
            reason: denial.reason.as_str().to_string(),
            message: truncate(denial.message.clone()),
        });
        let judged = match (&s.judged_version, &s.transition) {
            (Some(version), Some((_, to))) => Some(Judged {
                version: version.clone(),
                to: to.clone(),
            }),
            _ => None,
        };
        out.push(Draft {
            regarding: regarding.clone(),
            reason: denial.reason.as_str().to_string(),
            action,
            note: truncate(denial.message.clone()),
            rejection,
            judged,
        });
    }
    if events.corrections && !verdict.corrections.is_empty() {
        let user = if s.user.is_empty() {
            "<no user>"
        } else {
            &s.user
        };
        out.push(Draft {
            regarding,
            reason: CORRECTION_REASON.into(),
            action: "RestoreStatusFields".into(),
            note: truncate(format!(
                "status written by {user} ({}) was corrected: {}",
                s.writers,
                verdict.warnings.join("; ")
            )),
            rejection: None,
            judged: None,
        });
    }
    out
}

fn endpoint_action(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Mutate => "Mutation",
        Endpoint::Validate => "Validation",
    }
}

/// Bounds and identity of the event worker.
#[derive(Debug, Clone)]
pub struct EventOptions {
    pub capacity: usize,
    pub attempts: u32,
    pub attempt_timeout: Duration,
    pub backoff: Duration,
    /// `reportingController` of the Events.
    pub controller: String,
    /// `reportingInstance`, e.g. the pod name.
    pub instance: Option<String>,
    /// Events per object and reason within `budget_window` at most.
    pub per_object: u32,
    pub budget_window: Duration,
}

impl Default for EventOptions {
    fn default() -> Self {
        Self {
            capacity: 1024,
            attempts: 3,
            attempt_timeout: Duration::from_secs(5),
            backoff: Duration::from_millis(200),
            controller: "wfe-admission".into(),
            instance: std::env::var("POD_NAME").ok(),
            per_object: 20,
            budget_window: Duration::from_secs(600),
        }
    }
}

/// The admission side of the queue.
pub struct EventQueue {
    tx: mpsc::Sender<Draft>,
    policy: Arc<ArcSwap<Policy>>,
    metrics: Metrics,
}

impl VerdictSink for EventQueue {
    fn record(&self, endpoint: Endpoint, verdict: &Verdict) {
        for draft in drafts(&self.policy.load(), endpoint, verdict) {
            if self.tx.try_send(draft).is_err() {
                self.metrics.event(Attempt::Dropped);
            }
        }
    }
}

/// Starts the worker and returns the queue the admission handler feeds.
pub fn spawn(
    client: Client,
    policy: Arc<ArcSwap<Policy>>,
    metrics: Metrics,
    status: Option<StatusManager>,
    options: EventOptions,
) -> EventQueue {
    let (tx, mut rx) = mpsc::channel::<Draft>(options.capacity.max(1));
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: options.controller.clone(),
            instance: options.instance.clone(),
        },
    );
    let worker_metrics = metrics.clone();
    let worker_policy = Arc::clone(&policy);
    tokio::spawn(async move {
        let mut budget = budget::Budget::new(options.per_object, options.budget_window);
        while let Some(draft) = rx.recv().await {
            let current = worker_policy.load_full();
            let name = draft.regarding.name.as_deref().unwrap_or("");
            let live = live_object(&client, &current, &draft, options.attempt_timeout).await;
            if let Some(why) = not_to_record(&current, &draft, &live) {
                tracing::debug!(reason = %draft.reason, name, why, "not recorded");
                continue;
            }
            let namespace = draft.regarding.namespace.as_deref().unwrap_or("");
            if !budget.admit(namespace, name, &draft.reason, std::time::Instant::now()) {
                worker_metrics.event(Attempt::Limited);
                continue;
            }
            publish(&recorder, &draft, &options, &worker_metrics).await;
            if let (Some(rejection), Some(status)) = (&draft.rejection, &status) {
                let policy = worker_policy.load_full();
                if let Err(e) = status
                    .record_rejection(&client, &policy, &draft.regarding, rejection)
                    .await
                {
                    tracing::warn!(error = %e, "cannot record the rejection condition");
                }
            }
        }
    });
    EventQueue {
        tx,
        policy,
        metrics,
    }
}

/// The stored object an Event would regard, as far as the API server answered.
enum Live {
    Found(Box<kube::core::DynamicObject>),
    Gone,
    Unknown,
}

async fn live_object(client: &Client, policy: &Policy, draft: &Draft, limit: Duration) -> Live {
    let r = &draft.regarding;
    let (Some(api_version), Some(kind), Some(name)) = (
        r.api_version.as_deref(),
        r.kind.as_deref(),
        r.name.as_deref(),
    ) else {
        return Live::Unknown;
    };
    let api = crate::status::api_for(client, policy, api_version, kind, r.namespace.as_deref());
    match tokio::time::timeout(limit, api.get(name)).await {
        Ok(Ok(live)) => Live::Found(Box::new(live)),
        Ok(Err(kube::Error::Api(e))) if e.code == 404 => Live::Gone,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, name, "cannot read the object an Event would regard");
            Live::Unknown
        }
        Err(_) => Live::Unknown,
    }
}

/// Why a draft is not recorded, if it is not. Without an answer from the API server it is.
///
/// - The object is not stored, or is stored with another uid: the review named no real
///   write (a made-up review, or one about an object deleted since), so nothing was refused.
/// - A phase-move denial judged against a stale copy and superseded. The API server first
///   judges an update against its watch cache's copy; when that fails it reads the stored
///   object and, if it was newer, runs the update (admission included) again, so the writer
///   never sees the first denial (etcd3 `GuaranteedUpdate`). A quick `Running` then
///   `Completed` from one controller regularly gets `Pending → Completed` denied that way.
///   Recording it would show admins a refusal that never happened, so: when the object is no
///   longer at the judged version and, from its phase now, the move is not refused (it is
///   there already, or the move is legal), the denial is not recorded.
fn not_to_record(policy: &Policy, draft: &Draft, live: &Live) -> Option<&'static str> {
    let live = match live {
        Live::Unknown => return None,
        Live::Gone => return Some("the object it regards is not stored"),
        Live::Found(live) => live,
    };
    if draft.regarding.uid.is_some() && live.metadata.uid != draft.regarding.uid {
        return Some("the object stored under that name has another uid");
    }
    let judged = draft.judged.as_ref()?;
    if live.metadata.resource_version.as_deref() == Some(judged.version.as_str()) {
        return None;
    }
    let phases = &policy.phases;
    let status = live
        .data
        .get("status")
        .and_then(serde_json::Value::as_object);
    let now = phases.current(PhaseValue::read(status, &phases.field));
    let superseded = now == judged.to
        || (draft.reason == DenyReason::IllegalPhaseTransition.as_str()
            && phases.check(now, &judged.to).is_ok());
    superseded.then_some("denial judged against a stale copy and superseded")
}

async fn publish(recorder: &Recorder, draft: &Draft, options: &EventOptions, metrics: &Metrics) {
    let event = Event {
        type_: EventType::Warning,
        reason: draft.reason.clone(),
        note: Some(draft.note.clone()),
        action: draft.action.clone(),
        secondary: None,
    };
    let mut delay = options.backoff;
    for attempt in 1..=options.attempts.max(1) {
        let result = tokio::time::timeout(
            options.attempt_timeout,
            recorder.publish(&event, &draft.regarding),
        )
        .await;
        match result {
            Ok(Ok(())) => {
                metrics.event(Attempt::Success);
                return;
            }
            Ok(Err(e)) => tracing::debug!(attempt, error = %e, "event not recorded"),
            Err(_) => tracing::debug!(attempt, "event recording timed out"),
        }
        if attempt < options.attempts {
            tokio::time::sleep(crate::retry::jitter(delay)).await;
            delay = delay.saturating_mul(2);
        }
    }
    metrics.event(Attempt::Failure);
    tracing::warn!(
        reason = %draft.reason,
        name = draft.regarding.name.as_deref().unwrap_or(""),
        "event dropped after retries"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::policy::review::{Denial, Subject};

    fn verdict(decision: Decision, corrections: Vec<String>, dry_run: bool) -> Verdict {
        Verdict {
            decision,
            warnings: vec!["status.x is owned by executor; the change by bob was reverted".into()],
            corrections,
            ignored: false,
            dry_run,
            subject: Subject {
                api_version: "kubernaut.ai/v1alpha1".into(),
                kind: "WorkflowExecution".into(),
                namespace: Some("default".into()),
                name: "wfe-1".into(),
                uid: Some("u-1".into()),
                user: "bob".into(),
                writers: "operator".into(),
                transition: Some(("Completed".into(), "Running".into())),
                judged_version: Some("7".into()),
                sent_version: Some("7".into()),
            },
        }
    }

    fn deny() -> Decision {
        Decision::Deny(Denial {
            reason: DenyReason::IllegalPhaseTransition,
            message: "WorkflowExecution default/wfe-1: illegal phase transition".into(),
        })
    }

    fn policy(config: Config) -> Policy {
        Policy::new(config).expect("policy")
    }

    #[test]
    fn a_denial_becomes_one_warning_event_regarding_the_object() {
        let p = policy(Config::default());
        let out = drafts(&p, Endpoint::Validate, &verdict(deny(), vec![], false));
        assert_eq!(out.len(), 1);
        let d = &out[0];
        assert_eq!(d.reason, "IllegalPhaseTransition");
        assert_eq!(d.action, "CompletedToRunning");
        assert_eq!(d.regarding.name.as_deref(), Some("wfe-1"));
        assert_eq!(d.regarding.uid.as_deref(), Some("u-1"));
        assert_eq!(d.regarding.kind.as_deref(), Some("WorkflowExecution"));
        assert!(d.note.contains("illegal phase transition"));
        assert!(d.rejection.is_none());
        assert_eq!(
            d.judged,
            Some(Judged {
                version: "7".into(),
                to: "Running".into()
            })
        );
    }

    fn stored(uid: &str, version: &str, phase: &str) -> Live {
        let object: kube::core::DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "kubernaut.ai/v1alpha1", "kind": "WorkflowExecution",
            "metadata": {"name": "wfe-1", "namespace": "default", "uid": uid,
                         "resourceVersion": version},
            "status": {"phase": phase},
        }))
        .expect("object");
        Live::Found(Box::new(object))
    }

    #[test]
    fn only_denials_about_a_stored_object_with_that_uid_that_still_stand_are_recorded() {
        let p = policy(Config::default());
        let d = drafts(&p, Endpoint::Validate, &verdict(deny(), vec![], false)).remove(0);
        // No answer from the API server: recorded.
        assert_eq!(not_to_record(&p, &d, &Live::Unknown), None);
        // A made-up name, or a made-up uid for a real name: nothing was refused.
        assert!(not_to_record(&p, &d, &Live::Gone).is_some());
        assert!(not_to_record(&p, &d, &stored("u-other", "7", "Completed")).is_some());
        // At the judged version: recorded.
        assert_eq!(
            not_to_record(&p, &d, &stored("u-1", "7", "Completed")),
            None
        );
        // Newer, and still Completed: the move is still illegal, recorded.
        assert_eq!(
            not_to_record(&p, &d, &stored("u-1", "9", "Completed")),
            None
        );
        // Newer and already Running: superseded.
        assert!(not_to_record(&p, &d, &stored("u-1", "9", "Running")).is_some());
    }

    #[test]
    fn a_write_naming_another_version_than_the_judged_one_records_nothing() {
        // The API server answers 409 or judges it again: this verdict is never applied.
        let p = policy(Config::default());
        let mut v = verdict(deny(), vec!["ephemeralCredentialIDs".into()], false);
        v.subject.sent_version = Some("6".into());
        assert!(drafts(&p, Endpoint::Mutate, &v).is_empty());
        // A merge patch carries no version of its own: recorded.
        v.subject.sent_version = None;
        assert_eq!(drafts(&p, Endpoint::Mutate, &v).len(), 2);
    }

    #[test]
    fn dry_run_records_nothing() {
        let p = policy(Config::default());
        assert!(
            drafts(
                &p,
                Endpoint::Validate,
                &verdict(deny(), vec!["a".into()], true)
            )
            .is_empty()
        );
    }

    #[test]
    fn corrections_are_recorded_unless_configured_off() {
        let v = verdict(
            Decision::Allow,
            vec!["ephemeralCredentialIDs".into()],
            false,
        );
        let out = drafts(&policy(Config::default()), Endpoint::Mutate, &v);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].reason, CORRECTION_REASON);
        assert!(out[0].note.contains("bob (operator)"), "{}", out[0].note);
        let mut config = Config::default();
        config.events.corrections = false;
        assert!(drafts(&policy(config), Endpoint::Mutate, &v).is_empty());
    }

    #[test]
    fn the_rejection_condition_rides_along_when_enabled() {
        let mut config = Config::default();
        config.events.rejection_condition = true;
        let out = drafts(
            &policy(config),
            Endpoint::Validate,
            &verdict(deny(), vec![], false),
        );
        let rejection = out[0].rejection.as_ref().expect("rejection");
        assert_eq!(rejection.condition_type, "AdmissionRejected");
        assert_eq!(rejection.reason, "IllegalPhaseTransition");
    }

    #[test]
    fn long_notes_are_cut_at_a_char_boundary() {
        let text = "é".repeat(2000);
        let cut = truncate(text);
        assert!(cut.len() <= NOTE_LIMIT);
        assert!(cut.ends_with("..."));
    }
}
