//! Replays an API-server audit log through a policy: rebuilds each guarded object's history
//! from its create and status writes, judges every status write with both webhooks, and says
//! where that verdict differs from the one the API server recorded.

pub mod audit;
mod compare;
pub mod history;
mod report;

use jiff::Timestamp;
use serde_json::Value;

use crate::config::{GuardedResource, WEBHOOK};
use crate::offline::{self, Write};
use crate::policy::Policy;
use audit::{Event, Recorded};
use compare::{as_status, changed, compare, replayed_name};
use history::{Body, States};
pub use report::{Record, Report};

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
        self.policy
            .resources()
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
        let webhook = self.policy.writers.set(&[WEBHOOK.to_string()]);
        if writer.roles.intersects(webhook) {
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
        // The judge's reasons come first, then what the event says of the call.
        let mut lead = Vec::new();
        if let Err(reason) = self.judge(&key, &event, &recorded, body, &mut record, &mut lead) {
            lead.push(reason);
        }
        lead.extend(notes);
        record.reason = lead.join("; ");
        let at = timestamp(event.stage_timestamp.as_ref());
        if self
            .options
            .since
            .is_none_or(|since| at.is_some_and(|at| at >= since))
        {
            self.report.records.push(record);
        }
    }

    /// `written` with the patches other mutating webhooks made before this one saw it; the
    /// reason names them.
    fn other_webhooks(
        &self,
        event: &Event,
        mut written: Value,
        lead: &mut Vec<String>,
    ) -> Result<Value, String> {
        let mut names = Vec::new();
        for (name, patch) in event.patches_before_ours(&self.options.configurations) {
            history::apply_json_patch(&mut written, &patch)
                .map_err(|e| format!("webhook {name}'s recorded patch {e}"))?;
            names.push(name);
        }
        if !names.is_empty() {
            lead.push(format!(
                "judged after the recorded patches of {}",
                names.join(", ")
            ));
        }
        Ok(written)
    }

    /// Judges one status write into `record` and moves the object's state on, with its
    /// reasons in `lead`; `Err` says why the write cannot be judged.
    fn judge(
        &mut self,
        key: &str,
        event: &Event,
        recorded: &Recorded,
        body: Option<Body>,
        record: &mut Record,
        lead: &mut Vec<String>,
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
            .and_then(|w| self.other_webhooks(event, w, lead))
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
        let judge_on = |new: &Value, now: Timestamp| {
            let write = Write {
                old: stored.clone(),
                new: new.clone(),
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
        let stored_after = event.response_object.as_ref().filter(|_| event.succeeded());
        let configurations = &self.options.configurations;
        let later = event.patches_after_ours(configurations);
        if !later.is_empty() {
            let names: Vec<&str> = later.iter().map(|(name, _)| name.as_str()).collect();
            lead.push(format!(
                "stored after the recorded patches of {}",
                names.join(", ")
            ));
        }
        let reinvoked = event.reinvoked(configurations);
        // What the API server stored from this policy's answer: the later webhooks' recorded
        // patches on top, and this webhook's answer to those when it was called again at `again`.
        let settle = |outcome: &offline::Outcome, again: Timestamp| -> Result<Value, String> {
            if later.is_empty() || !outcome.allowed {
                return Ok(outcome.status.clone());
            }
            let mut object = history::with_status_of(&written, &as_status(&outcome.status));
            for (name, patch) in &later {
                history::apply_json_patch(&mut object, patch)
                    .map_err(|e| format!("webhook {name}'s recorded patch {e}"))?;
            }
            if reinvoked {
                return Ok(judge_on(&object, again)?.status);
            }
            Ok(object.get("status").cloned().unwrap_or(Value::Null))
        };
        // The webhook's clock read a moment inside [received, stage] at each call, never
        // earlier than at the one before; stored times have whole seconds, so a write that
        // spans a second boundary is judged at both ends (first call, call again).
        let mut clocks = vec![(stage, stage)];
        if let Some(received) = timestamp(event.request_received_timestamp.as_ref())
            && received.as_second() != stage.as_second()
        {
            clocks.push((received, received));
            if reinvoked && !later.is_empty() {
                clocks.push((received, stage));
            }
        }
        let mut judged = Vec::with_capacity(clocks.len());
        for (first, again) in clocks {
            let outcome = judge_on(&written, first)?;
            let verdict = compare(recorded, &outcome, &written);
            let settled = settle(&outcome, again)?;
            judged.push((outcome, verdict, settled));
        }
        let stored_apart =
            |settled: &Value| stored_after.map(|after| changed(after, &as_status(settled)));
        let stored_as = |settled: &Value| stored_apart(settled).is_none_or(|a| a.is_empty());
        let pick = judged
            .iter()
            .position(|(_, verdict, settled)| verdict.0 && stored_as(settled))
            .or_else(|| judged.iter().position(|(_, verdict, _)| verdict.0))
            .or_else(|| {
                // A patch the API server retried after a conflict keeps the first attempt's
                // annotations; what it stored is the last attempt's.
                judged.iter().position(|(outcome, _, settled)| {
                    outcome.allowed && stored_apart(settled).is_some_and(|a| a.is_empty())
                })
            })
            .unwrap_or(0);
        let (outcome, (mut agrees, mut reason, fields), settled) = judged.swap_remove(pick);
        if !fields.is_empty() {
            record.fields = fields;
        }
        if let Some(apart) = stored_apart(&settled) {
            if agrees && !apart.is_empty() {
                agrees = false;
                reason = format!(
                    "the recorded stored status and this policy's differ in {}",
                    apart.join(", ")
                );
                record.fields = apart;
            } else if !agrees && outcome.allowed && apart.is_empty() {
                agrees = true;
                reason = "the recorded patch is an earlier attempt's; the stored status is this \
                          policy's"
                    .into();
                record.fields = Vec::new();
            }
        }
        record.replayed = replayed_name(&outcome);
        record.agrees = Some(agrees);
        if !reason.is_empty() {
            lead.insert(0, reason);
        }
        if !event.dry_run() {
            match (&event.response_object, event.succeeded()) {
                (Some(object), true) => self.states.set(key, object.clone()),
                (Some(_), false) => {}
                (None, _) if outcome.allowed => self
                    .states
                    .set(key, history::with_status_of(&stored, &as_status(&settled))),
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
