//! AdmissionRequest -> verdict for each endpoint. The HTTP shell turns a verdict into an
//! AdmissionReview; events and metrics read it after the answer.

use jiff::Timestamp;
use json_patch::Patch;
use kube::core::admission::{AdmissionRequest, Operation};
use serde_json::Value;

use super::combine::{Status, clearance_denial, combine};
use super::object::ReviewObject;
use super::patch::status_patch;
use super::reads::ValidateReads;
use super::transitions::{PhaseValue, TransitionError};
use super::{Policy, Writer};

/// Why a request was refused. The name doubles as the Event reason and the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    IllegalPhaseTransition,
    UnknownPhase,
    PhaseNotOwned,
    BlockClearanceRejected,
    InvalidStatus,
    MissingObject,
}

impl DenyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::IllegalPhaseTransition => "IllegalPhaseTransition",
            DenyReason::UnknownPhase => "UnknownPhase",
            DenyReason::PhaseNotOwned => "PhaseNotOwned",
            DenyReason::BlockClearanceRejected => "BlockClearanceRejected",
            DenyReason::InvalidStatus => "InvalidStatus",
            DenyReason::MissingObject => "MissingObject",
        }
    }

    /// HTTP-style code inside the AdmissionResponse status: 403 for policy, 400 for bad input.
    pub fn code(self) -> u16 {
        match self {
            DenyReason::InvalidStatus | DenyReason::MissingObject => 400,
            _ => 403,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    pub reason: DenyReason,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Allowed as sent.
    Allow,
    /// Allowed with this (non-empty) patch.
    Patch(Patch),
    Deny(Denial),
}

/// The object a verdict is about, for Events.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Subject {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: Option<String>,
    pub user: String,
    pub writers: String,
    /// The phase move the writer asked for, when it moved.
    pub transition: Option<(String, String)>,
    /// `resourceVersion` of `oldObject`: the stored version the verdict was judged against.
    pub judged_version: Option<String>,
    /// `resourceVersion` of `object`: the version the writer named, if any.
    pub sent_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub decision: Decision,
    pub warnings: Vec<String>,
    /// Fields the mutating webhook put back.
    pub corrections: Vec<String>,
    /// Set when the request is outside the policy (other resource or operation).
    pub ignored: bool,
    pub dry_run: bool,
    pub subject: Subject,
}

impl Verdict {
    fn new(decision: Decision, subject: Subject, dry_run: bool) -> Self {
        Self {
            decision,
            warnings: Vec::new(),
            corrections: Vec::new(),
            ignored: false,
            dry_run,
            subject,
        }
    }

    fn ignored(dry_run: bool) -> Self {
        Self {
            ignored: true,
            ..Self::new(Decision::Allow, Subject::default(), dry_run)
        }
    }

    fn deny(reason: DenyReason, message: String, subject: Subject, dry_run: bool) -> Self {
        Self::new(Decision::Deny(Denial { reason, message }), subject, dry_run)
    }
}

/// What both endpoints read from a request they guard.
struct Input<'r> {
    old: Option<&'r Status>,
    new: Option<&'r Status>,
    object: &'r Value,
    writer: Writer<'r>,
    subject: Subject,
    dry_run: bool,
}

fn status_in(object: &Value) -> Result<Option<&Status>, ()> {
    match object.get("status") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(()),
    }
}

/// Reads a request; `Err` is the verdict to answer directly (ignored or malformed).
fn read_request<'r, K: ReviewObject>(
    policy: &Policy,
    req: &'r AdmissionRequest<K>,
) -> Result<Input<'r>, Box<Verdict>> {
    let dry_run = req.dry_run;
    if req.operation != Operation::Update
        || !policy.guards(
            &req.resource.group,
            &req.resource.resource,
            req.sub_resource.as_deref(),
        )
    {
        return Err(Box::new(Verdict::ignored(dry_run)));
    }
    let user = req.user_info.username.as_deref().unwrap_or("");
    let groups: &[String] = req.user_info.groups.as_deref().unwrap_or(&[]);
    let writer = policy.writer(user, groups);
    let version = |o: Option<&K>| {
        o.and_then(|o| o.meta().resource_version.clone())
            .filter(|v| !v.is_empty())
    };
    let object_name = |o: Option<&K>| {
        o.and_then(|o| o.meta().name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| req.name.clone())
    };
    let mut subject = Subject {
        api_version: if req.kind.group.is_empty() {
            req.kind.version.clone()
        } else {
            format!("{}/{}", req.kind.group, req.kind.version)
        },
        kind: req.kind.kind.clone(),
        namespace: req.namespace.clone().filter(|n| !n.is_empty()),
        name: object_name(req.object.as_ref()),
        uid: req.object.as_ref().and_then(|o| o.meta().uid.clone()),
        user: user.to_string(),
        writers: policy.writers.names(writer.roles),
        transition: None,
        judged_version: version(req.old_object.as_ref()),
        sent_version: version(req.object.as_ref()),
    };
    let (Some(object), Some(old_object)) = (req.object.as_ref(), req.old_object.as_ref()) else {
        let missing = if req.object.is_none() {
            "object"
        } else {
            "oldObject"
        };
        let message = format!(
            "{}: the UPDATE request has no {missing}, so the status change cannot be checked",
            subject_line(&subject)
        );
        subject.name = object_name(req.old_object.as_ref());
        return Err(Box::new(Verdict::deny(
            DenyReason::MissingObject,
            message,
            subject,
            dry_run,
        )));
    };
    let Ok(new) = status_in(object.body()) else {
        let message = format!("{}: status must be an object", subject_line(&subject));
        return Err(Box::new(Verdict::deny(
            DenyReason::InvalidStatus,
            message,
            subject,
            dry_run,
        )));
    };
    // A stored status that is not an object cannot be merged with; treat it as empty.
    let old = status_in(old_object.body()).ok().flatten();
    Ok(Input {
        old,
        new,
        object: object.body(),
        writer,
        subject,
        dry_run,
    })
}

fn subject_line(s: &Subject) -> String {
    match &s.namespace {
        Some(ns) => format!("{} {ns}/{}", s.kind, s.name),
        None => format!("{} {}", s.kind, s.name),
    }
}

fn writer_line(s: &Subject) -> String {
    let user = if s.user.is_empty() {
        "<no user>"
    } else {
        &s.user
    };
    format!("{user} ({})", s.writers)
}

/// The mutating endpoint: combine the writer's status with the stored one (the combine rules).
pub fn mutate<K: ReviewObject>(
    policy: &Policy,
    req: &AdmissionRequest<K>,
    now: Timestamp,
) -> Verdict {
    let input = match read_request(policy, req) {
        Ok(input) => input,
        Err(verdict) => return *verdict,
    };
    let combined = combine(policy, input.old, input.new, input.writer, now);
    if let Some(message) = combined.denial {
        let message = format!(
            "{}: clearance by {} refused: {message}",
            subject_line(&input.subject),
            writer_line(&input.subject)
        );
        return Verdict::deny(
            DenyReason::BlockClearanceRejected,
            message,
            input.subject,
            input.dry_run,
        );
    }
    let patch = status_patch(input.object, &combined.status);
    let decision = if patch.0.is_empty() {
        Decision::Allow
    } else {
        Decision::Patch(patch)
    };
    // A write the validating endpoint will refuse is never stored: its corrections did not
    // happen, so they are not reported (the denial is, by the validating endpoint).
    let refused = matches!(
        judge(
            policy,
            input.old,
            Some(&combined.status),
            input.writer,
            input.subject.clone(),
            input.dry_run,
        )
        .decision,
        Decision::Deny(_)
    );
    Verdict {
        warnings: combined.warnings,
        corrections: if refused {
            Vec::new()
        } else {
            combined.corrections
        },
        ..Verdict::new(decision, input.subject, input.dry_run)
    }
}

/// The validating endpoint: the phase move and the clearance rules.
pub fn validate<K: ReviewObject>(policy: &Policy, req: &AdmissionRequest<K>) -> Verdict {
    let Input {
        old,
        new,
        writer,
        subject,
        dry_run,
        ..
    } = match read_request(policy, req) {
        Ok(input) => input,
        Err(verdict) => return *verdict,
    };
    judge(policy, old, new, writer, subject, dry_run)
}

/// The checks of the validating endpoint on one `old → new` status.
fn judge(
    policy: &Policy,
    old: Option<&Status>,
    new: Option<&Status>,
    writer: Writer<'_>,
    mut subject: Subject,
    dry_run: bool,
) -> Verdict {
    let phases = &policy.phases;
    // Only the fields declared in `reads`: /validate's parser builds nothing else.
    let reads = ValidateReads::of(&policy.config);
    let from = phases.current(PhaseValue::read(old, reads.phase));
    // Phase values come from writers: shown escaped, so that a message stays on one line.
    let shown_from = from.escape_debug();
    let Some(to) = phases.requested(from, PhaseValue::read(new, reads.phase)) else {
        let message = format!(
            "{}: status.{} sent by {} must be a string, one of {}; the stored phase is {shown_from}{}",
            subject_line(&subject),
            phases.field,
            writer_line(&subject),
            policy.config.phase.values.join(", "),
            legal_moves(policy, from)
                .map(|m| format!(", {m}"))
                .unwrap_or_default()
        );
        return Verdict::deny(DenyReason::UnknownPhase, message, subject, dry_run);
    };
    let shown_to = to.escape_debug();
    if from != to {
        subject.transition = Some((from.to_string(), to.to_string()));
        let owners = policy.field_owners(&phases.field);
        if !writer.roles.intersects(owners) && policy.granted_move(writer.roles, from, to).is_none()
        {
            let granted = policy
                .granted_moves_text(writer.roles)
                .map(|m| format!("; {} may only move {m}", policy.writers.names(writer.roles)))
                .unwrap_or_default();
            let message = format!(
                "{}: {} may not move status.{} {shown_from} → {shown_to}; only {} may change the phase{granted}",
                subject_line(&subject),
                writer_line(&subject),
                phases.field,
                policy.writers.names(owners)
            );
            return Verdict::deny(DenyReason::PhaseNotOwned, message, subject, dry_run);
        }
        if let Err(err) = phases.check(from, to) {
            let reason = match err {
                TransitionError::UnknownPhase { .. } => DenyReason::UnknownPhase,
                TransitionError::Illegal { .. } => DenyReason::IllegalPhaseTransition,
            };
            // Name the move and what would have been legal, also when the
            // target is not a phase at all.
            let (what, hint) = match (&err, legal_moves(policy, from)) {
                (TransitionError::UnknownPhase { .. }, Some(moves)) => (
                    format!("{} ({shown_from} → {shown_to})", err.what()),
                    format!("{}; {moves}", err.hint()),
                ),
                _ => (err.what(), err.hint()),
            };
            let message = format!(
                "{}: {what} by {}; {hint}",
                subject_line(&subject),
                writer_line(&subject),
            );
            return Verdict::deny(reason, message, subject, dry_run);
        }
    }
    if let Some(message) = clearance_problem(policy, reads.clearance, old, new, writer.user) {
        let message = format!(
            "{}: clearance by {} refused: {message}",
            subject_line(&subject),
            writer_line(&subject)
        );
        return Verdict::deny(
            DenyReason::BlockClearanceRejected,
            message,
            subject,
            dry_run,
        );
    }
    Verdict::new(Decision::Allow, subject, dry_run)
}

/// What a stored phase may become (`None` for a stored value outside the enum, which may move to
/// any phase), worded like the hint of an illegal move.
fn legal_moves(policy: &Policy, from: &str) -> Option<String> {
    let phases = &policy.phases;
    phases.is_known(from).then(|| {
        TransitionError::Illegal {
            from: from.to_string(),
            to: String::new(),
            legal: phases.legal_targets(from).to_vec(),
        }
        .hint()
    })
}

/// The clearance rules again, as a check: without the mutating webhook in front, a forged or
/// unexplained clearance must still not get in.
fn clearance_problem(
    policy: &Policy,
    field: &str,
    old: Option<&Status>,
    new: Option<&Status>,
    user: &str,
) -> Option<String> {
    let bc = &policy.config.block_clearance;
    fn get<'s>(s: Option<&'s Status>, field: &str) -> Option<&'s Status> {
        s.and_then(|s| s.get(field)).and_then(Value::as_object)
    }
    fn attribution<'s>(m: Option<&'s Status>, field: &str) -> Option<&'s str> {
        m.and_then(|m| m.get(field)).and_then(Value::as_str)
    }
    // A clearance that is not an object can say neither why nor by whom: refused, unless it is
    // the stored value unchanged (absent or null removes a clearance, which its owner may do).
    fn raw<'s>(s: Option<&'s Status>, field: &str) -> Option<&'s Value> {
        s.and_then(|s| s.get(field)).filter(|v| !v.is_null())
    }
    if let Some(sent) = raw(new, field)
        && !sent.is_object()
        && raw(old, field) != Some(sent)
    {
        return Some(format!(
            "status.{} must be an object with a {}",
            field, bc.reason
        ));
    }
    let (old_bc, new_bc) = (get(old, field), get(new, field)?);
    if old_bc == Some(new_bc) {
        return None;
    }
    if let Some(denial) = clearance_denial(bc, old_bc, new_bc, user) {
        return Some(denial);
    }
    // A stored attribution stays; a missing one is this request's user.
    let expected = attribution(old_bc, &bc.cleared_by).unwrap_or(user);
    (attribution(Some(new_bc), &bc.cleared_by) != Some(expected)).then(|| {
        format!(
            "status.{}.{} must name the user who cleared the block ({expected})",
            field, bc.cleared_by,
        )
    })
}
