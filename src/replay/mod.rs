//! Replays an API-server audit log through a policy: rebuilds each guarded object's history
//! from its create and status writes, judges every status write with both webhooks, and says
//! where that verdict differs from the one the API server recorded.

pub mod audit;
pub mod history;

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;

use crate::config::{GuardedResource, WEBHOOK};
use crate::offline::{self, Outcome, Write};
use crate::policy::Policy;
use audit::{Event, Recorded};
use history::{Body, States};

/// Which events replay reads.
#[derive(Debug, Clone)]
pub struct Options {
    /// The webhook's own mutating configurations: their patch annotations are its patches.
    pub configurations: Vec<String>,
    /// `namespace/name` of the objects to report (a trailing `*` matches a prefix); all when
    /// empty.
    pub objects: Vec<String>,
    /// Writes before this time rebuild the history but are not reported (before the webhook
    /// was installed, say).
    pub since: Option<Timestamp>,
}

/// One status write: who wrote what, what the API server recorded, what the policy says.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub time: String,
    pub object: String,
    pub user: String,
    pub writer: String,
    pub verb: String,
    pub dry_run: bool,
    /// The phase move the write asked for.
    #[serde(rename = "move", skip_serializing_if = "Option::is_none")]
    pub phase_move: Option<String>,
    pub recorded: &'static str,
    pub replayed: &'static str,
    pub reason: String,
    /// The top-level status fields the write changes; for a difference, the fields it is in.
    pub fields: Vec<String>,
    /// `None` when the write could not be judged (the reason says why).
    pub agrees: Option<bool>,
    pub audit_id: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub records: Vec<Record>,
}

impl Report {
    pub fn agree(&self) -> usize {
        self.records
            .iter()
            .filter(|r| r.agrees == Some(true))
            .count()
    }

    pub fn differ(&self) -> usize {
        self.records
            .iter()
            .filter(|r| r.agrees == Some(false))
            .count()
    }

    /// `replay: N writes, A agree, D differ` (and how many could not be judged).
    pub fn summary(&self) -> String {
        let (n, a, d) = (self.records.len(), self.agree(), self.differ());
        let rest = n - a - d;
        let tail = if rest > 0 {
            format!(", {rest} not judged")
        } else {
            String::new()
        };
        format!("replay: {n} writes, {a} agree, {d} differ{tail}")
    }
}

/// What the policy made of a write, in the words of a record.
fn replayed_name(outcome: &Outcome) -> &'static str {
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
fn changed(a: &Value, b: &Value) -> Vec<String> {
    let (a, b) = (status_map(a), status_map(b));
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

fn as_status(status: &Value) -> Value {
    serde_json::json!({ "status": status })
}

/// Whether the recorded verdict and the replayed one agree; the reason when they do not.
fn compare(recorded: &Recorded, outcome: &Outcome, written: &Value) -> (bool, String, Vec<String>) {
    let replayed = as_status(&outcome.status);
    let message = outcome.message.clone().unwrap_or_default();
    match (recorded, replayed_name(outcome)) {
        (Recorded::Allowed, "allowed") => (true, String::new(), Vec::new()),
        (Recorded::Patched(patches), "patched") => {
            let mut object = written.clone();
            for p in patches {
                let applied = serde_json::from_value::<json_patch::Patch>(p.clone())
                    .map_err(|e| e.to_string())
                    .and_then(|p| json_patch::patch(&mut object, &p).map_err(|e| e.to_string()));
                if let Err(e) = applied {
                    return (
                        false,
                        format!("the recorded patch does not apply: {e}"),
                        Vec::new(),
                    );
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

fn timestamp(text: Option<&String>) -> Option<Timestamp> {
    text.and_then(|t| t.parse().ok())
}

struct Replay<'p> {
    policy: &'p Policy,
    options: &'p Options,
    states: States,
    report: Report,
}

impl<'p> Replay<'p> {
    fn selected(&self, key: &str) -> bool {
        self.options.objects.is_empty()
            || self
                .options
                .objects
                .iter()
                .any(|o| match o.strip_suffix('*') {
                    Some(prefix) => key.starts_with(prefix),
                    None => key == o,
                })
    }

    /// The guarded resource an event is about, if any.
    fn resource(&self, group: &str, resource: &str) -> Option<&'p GuardedResource> {
        let config = &self.policy.config;
        std::iter::once(&config.resource)
            .chain(&config.extra_resources)
            .find(|r| r.group == group && r.resource == resource)
    }

    fn event(&mut self, event: Event) {
        if event.stage != "ResponseComplete" {
            return;
        }
        let Some(at) = event.object_ref.clone() else {
            return;
        };
        let Some(resource) = self.resource(&at.api_group, &at.resource) else {
            return;
        };
        let key = format!("{}/{}", at.namespace, at.name);
        if at.name.is_empty() || !self.selected(&key) {
            return;
        }
        let stored_by_server = event.succeeded() && !event.dry_run();
        match (event.verb.as_str(), at.subresource.as_str()) {
            ("create", "") if stored_by_server => {
                let created = event.response_object.clone().or_else(|| {
                    // A resource with a status subresource drops the status sent on create.
                    let mut object = event.request_object.clone()?;
                    object.as_object_mut()?.remove("status");
                    Some(object)
                });
                match created {
                    Some(object) => self.states.set(&key, object),
                    None => self.states.forget(&key),
                }
            }
            ("delete", "") if stored_by_server => self.states.forget(&key),
            ("update" | "patch", "") if stored_by_server => self.spec_write(&key, &event),
            ("update" | "patch", sub) if sub == resource.subresource => {
                self.status_write(key, event);
            }
            _ => {}
        }
    }

    /// A write to the main resource: the webhook does not judge it; its status stays.
    fn spec_write(&mut self, key: &str, event: &Event) {
        if let Some(object) = &event.response_object {
            return self.states.set(key, object.clone());
        }
        let next = match (self.states.get(key), Body::of(event), &event.request_object) {
            (Some(stored), Some(body), Some(sent)) => history::written(stored, body, sent)
                .ok()
                .map(|w| history::with_status_kept(&w, stored)),
            _ => None,
        };
        match next {
            Some(object) => self.states.set(key, object),
            None => self.states.forget(key),
        }
    }

    /// The recorded stored object, when the API server stored this write and logged it.
    fn take_recorded_state(&mut self, key: &str, event: &Event) {
        if !event.succeeded() || event.dry_run() {
            return;
        }
        match &event.response_object {
            Some(object) => self.states.set(key, object.clone()),
            None => self.states.forget(key),
        }
    }

    fn status_write(&mut self, key: String, event: Event) {
        let acting = event.acting_user().clone();
        let writer = self.policy.writer(&acting.username, &acting.groups);
        let writer_names = self.policy.writers.names(writer.roles);
        let recorded = Recorded::of(&event, &self.options.configurations);
        let body = Body::of(&event);
        let dry_run = event.dry_run();
        let mut notes = Vec::new();
        if writer_names.split(", ").any(|w| w == WEBHOOK) {
            notes.push("the webhook's own write".to_string());
        }
        let failed_open = event.failed_open();
        if !failed_open.is_empty() {
            notes.push(format!(
                "{} did not answer and the API server let the write through",
                failed_open.join(", ")
            ));
        } else if event.succeeded() && !event.mutating_called(&self.options.configurations) {
            notes.push("the match conditions skipped the mutating webhook".into());
        }
        let mut record = Record {
            time: event.stage_timestamp.clone().unwrap_or_default(),
            object: key.clone(),
            user: acting.username.clone(),
            writer: writer_names,
            verb: body.map_or_else(|| event.verb.clone(), |b| b.name().to_string()),
            dry_run,
            phase_move: None,
            recorded: recorded.name(),
            replayed: "not-judged",
            reason: String::new(),
            fields: Vec::new(),
            agrees: None,
            audit_id: event.audit_id.clone(),
        };
        let judged = self.judge(&key, &event, &recorded, body, &mut record);
        if let Err(reason) = judged {
            notes.insert(0, reason);
        }
        if !record.reason.is_empty() {
            notes.insert(0, std::mem::take(&mut record.reason));
        }
        record.reason = notes.join("; ");
        let at = timestamp(event.stage_timestamp.as_ref());
        if self
            .options
            .since
            .is_none_or(|since| at.is_some_and(|at| at >= since))
        {
            self.report.records.push(record);
        }
    }

    /// `written` with the patches other mutating webhooks made before this one saw it.
    fn other_webhooks(
        &self,
        event: &Event,
        mut written: Value,
        record: &mut Record,
    ) -> Result<Value, String> {
        let mut names = Vec::new();
        for (name, patch) in event.patches_before_ours(&self.options.configurations) {
            let patch: json_patch::Patch = serde_json::from_value(patch)
                .map_err(|e| format!("webhook {name}'s recorded patch does not read: {e}"))?;
            json_patch::patch(&mut written, &patch)
                .map_err(|e| format!("webhook {name}'s recorded patch does not apply: {e}"))?;
            names.push(name);
        }
        if !names.is_empty() {
            record.reason = format!("judged after the recorded patches of {}", names.join(", "));
        }
        Ok(written)
    }

    /// Judges one status write into `record` and moves the object's state on; `Err` says why
    /// the write cannot be judged.
    fn judge(
        &mut self,
        key: &str,
        event: &Event,
        recorded: &Recorded,
        body: Option<Body>,
        record: &mut Record,
    ) -> Result<(), String> {
        if let Recorded::RefusedBeforeAdmission(said) | Recorded::Failed(said) = recorded {
            return Err(format!("the webhook's verdict did not decide it: {said}"));
        }
        let (Some(sent), Some(body)) = (event.request_object.as_ref(), body) else {
            self.take_recorded_state(key, event);
            return Err(format!("recorded without its body (level {})", event.level));
        };
        let Some(stored) = self.states.get(key).cloned() else {
            self.take_recorded_state(key, event);
            return Err("the log holds no earlier state of the object (no create)".into());
        };
        let written = match history::written(&stored, body, sent)
            .and_then(|w| self.other_webhooks(event, w, record))
        {
            Ok(w) => w,
            Err(e) => {
                self.take_recorded_state(key, event);
                return Err(e);
            }
        };
        record.fields = changed(&stored, &written);
        let phase = |o: &Value| {
            o.pointer(&format!("/status/{}", self.policy.phases.field))
                .and_then(Value::as_str)
                .unwrap_or(&self.policy.config.phase.initial)
                .to_string()
        };
        let (from, to) = (phase(&stored), phase(&written));
        if from != to {
            record.phase_move = Some(format!("{from} → {to}"));
        }
        let acting = event.acting_user();
        let judge_at = |now: Timestamp| {
            let write = Write {
                old: stored.clone(),
                new: written.clone(),
                user: &acting.username,
                groups: &acting.groups,
                dry_run: event.dry_run(),
            };
            offline::request(self.policy, write)
                .and_then(|req| offline::evaluate(self.policy, req, now))
        };
        let stage = timestamp(event.stage_timestamp.as_ref())
            .or_else(|| timestamp(event.request_received_timestamp.as_ref()))
            .ok_or("the event has no stageTimestamp")?;
        let mut outcome = judge_at(stage)?;
        let mut verdict = compare(recorded, &outcome, &written);
        // The webhook's clock read a moment inside [received, stage]; stored times have whole
        // seconds, so a write that spans a second boundary is judged at both ends.
        if let Some(received) = timestamp(event.request_received_timestamp.as_ref())
            && !verdict.0
            && received.as_second() != stage.as_second()
        {
            let earlier = judge_at(received)?;
            let again = compare(recorded, &earlier, &written);
            if again.0 {
                (outcome, verdict) = (earlier, again);
            }
        }
        let (mut agrees, mut reason, fields) = verdict;
        if !fields.is_empty() {
            record.fields = fields;
        }
        if event.succeeded()
            && let Some(stored_after) = &event.response_object
        {
            let apart = changed(stored_after, &as_status(&outcome.status));
            if agrees && !apart.is_empty() {
                agrees = false;
                reason = format!(
                    "the recorded stored status and this policy's differ in {}",
                    apart.join(", ")
                );
                record.fields = apart;
            } else if !agrees && outcome.allowed && apart.is_empty() {
                // A patch the API server retried after a conflict keeps the first attempt's
                // annotations; what it stored is the last attempt's, and that is this policy's.
                agrees = true;
                reason = "the recorded patch is an earlier attempt's; the stored status is this \
                          policy's"
                    .into();
                record.fields = Vec::new();
            }
        }
        record.replayed = replayed_name(&outcome);
        record.agrees = Some(agrees);
        let before = std::mem::take(&mut record.reason);
        record.reason = [reason, before]
            .into_iter()
            .filter(|r| !r.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        if !event.dry_run() {
            match (&event.response_object, event.succeeded()) {
                (Some(object), true) => self.states.set(key, object.clone()),
                (Some(_), false) => {}
                (None, _) if outcome.allowed => self.states.set(
                    key,
                    history::with_status_of(&stored, &as_status(&outcome.status)),
                ),
                (None, _) => {}
            }
        }
        Ok(())
    }
}

/// Replays `events` (in log order) through `policy`.
pub fn replay(
    policy: &Policy,
    events: impl IntoIterator<Item = Event>,
    options: &Options,
) -> Report {
    let mut replay = Replay {
        policy,
        options,
        states: States::default(),
        report: Report::default(),
    };
    for event in events {
        replay.event(event);
    }
    replay.report
}

#[cfg(test)]
mod tests;
