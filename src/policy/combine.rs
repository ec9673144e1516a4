//! Old status + the writer's status + the writer + now -> one consistent status (the combine rules of docs/policy.md).
//!
//! The rules run in the spec's order: ownership, conditions, write-once, derived fields, block
//! clearance. The phase is never rewritten (only carried over when the writer left it out).

use jiff::Timestamp;
use serde_json::{Map, Value};

use super::transitions::PhaseValue;
use super::{Policy, Writer, time};
use crate::config::BlockClearanceConfig;

pub type Status = Map<String, Value>;

/// A freshly written clearance keeps its own `clearedAt` only when it is this recent, so that a
/// reinvocation of the webhook (same request, a moment later) yields an empty patch.
const REINVOCATION_WINDOW_SECONDS: i64 = 30;

/// The outcome of combining.
#[derive(Debug, Clone, PartialEq)]
pub struct Combined {
    pub status: Status,
    /// Admission warnings, each naming a field.
    pub warnings: Vec<String>,
    /// Paths of the fields the webhook put back (for `StatusFieldRestored` events).
    pub corrections: Vec<String>,
    /// Set when the write must be refused (block clearance rules).
    pub denial: Option<String>,
}

struct Combining<'a> {
    policy: &'a Policy,
    writer: Writer<'a>,
    old: &'a Status,
    /// Fields a phase move granted to this writer (`moves`) lets it set in this write.
    granted: Vec<&'a str>,
    out: Combined,
}

/// A value that is there and not `null` (a `null` field is an absent one).
fn non_null(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

/// Combines `new` (the status the writer sent) with `old` (the stored status).
pub fn combine(
    policy: &Policy,
    old: Option<&Status>,
    new: Option<&Status>,
    writer: Writer<'_>,
    now: Timestamp,
) -> Combined {
    let empty = Status::new();
    let old = old.unwrap_or(&empty);
    let phases = &policy.phases;
    let from = phases.current(PhaseValue::read(Some(old), &phases.field));
    let granted = phases
        .requested(from, PhaseValue::read(new, &phases.field))
        .and_then(|to| policy.granted_move(writer.roles, from, to))
        .unwrap_or_default();
    let mut ctx = Combining {
        policy,
        writer,
        old,
        granted,
        out: Combined {
            status: new.cloned().unwrap_or_default(),
            warnings: Vec::new(),
            corrections: Vec::new(),
            denial: None,
        },
    };
    ctx.unattributable_clearance(new);
    ctx.ownership();
    ctx.conditions(now);
    ctx.write_once();
    ctx.derived(now);
    ctx.block_clearance(now);
    ctx.out
}

impl Combining<'_> {
    fn correct(&mut self, path: String, warning: String) {
        self.out.warnings.push(warning);
        self.out.corrections.push(path);
    }

    fn reverted(
        &mut self,
        path: String,
        owners: super::writers::Writers,
        sent: Option<&Value>,
        kept: Option<&Value>,
    ) {
        let warning = format!(
            "status.{path} is owned by {}; the change by {} was reverted ({})",
            self.policy.writers.names(owners),
            shown_user(self.writer.user),
            sent_and_kept(sent, kept)
        );
        self.correct(path, warning);
    }

    fn owns_field(&self, key: &str, owners: super::writers::Writers) -> bool {
        self.writer.roles.intersects(owners) || self.granted.contains(&key)
    }

    /// Rule 5, checked on what was sent: a clearance that nobody can be credited with is refused
    /// outright rather than quietly reverted by rule 1.
    fn unattributable_clearance(&mut self, sent: Option<&Status>) {
        let bc = &self.policy.config.block_clearance;
        let sent_bc = sent.and_then(|s| non_null(s.get(&bc.field)));
        if self.writer.user.is_empty()
            && sent_bc.is_some()
            && sent_bc != non_null(self.old.get(&bc.field))
        {
            self.out.denial = Some(format!(
                "status.{} can only be set by an authenticated user; the request has no user name",
                bc.field
            ));
        }
    }

    /// Rule 1: non-owners cannot drop or change a field.
    fn ownership(&mut self) {
        let (policy, old_status) = (self.policy, self.old);
        let cfg = &policy.config;
        let phase_field = policy.phases.field.as_str();
        let conditions_field = cfg.conditions.field.as_str();
        let mut keys: Vec<String> = old_status
            .keys()
            .chain(self.out.status.keys())
            .filter(|k| *k != phase_field && *k != conditions_field)
            .cloned()
            .collect();
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            let owners = policy.field_owners(&key);
            let owns = self.owns_field(&key, owners);
            let old = non_null(old_status.get(&key));
            let new = non_null(self.out.status.get(&key)).cloned();
            match (old, new) {
                (Some(o), None) if !owns => {
                    self.out.status.insert(key, o.clone());
                }
                (Some(o), Some(n)) if !owns && *o != n => {
                    self.out.status.insert(key.clone(), o.clone());
                    self.reverted(key, owners, Some(&n), Some(o));
                }
                (None, Some(n)) if !owns => {
                    self.out.status.remove(&key);
                    self.reverted(key, owners, Some(&n), None);
                }
                _ => {}
            }
        }
        // Absence is not intent: a status without a phase keeps the stored one.
        if non_null(self.out.status.get(phase_field)).is_none()
            && let Some(p) = non_null(old_status.get(phase_field))
        {
            self.out.status.insert(phase_field.to_string(), p.clone());
        }
    }

    /// Rule 2: conditions merge by type, in stable order, never dropped.
    fn conditions(&mut self, now: Timestamp) {
        let (policy, old_status) = (self.policy, self.old);
        let field = policy.config.conditions.field.clone();
        let old_list: &[Value] = match old_status.get(&field) {
            Some(Value::Array(a)) => a,
            _ => &[],
        };
        let sent = self.out.status.remove(&field);
        let sent_present = sent.is_some();
        let sent_list: Vec<Value> = match sent {
            Some(Value::Array(a)) => a,
            None | Some(Value::Null) => Vec::new(),
            Some(_) => {
                self.out.warnings.push(format!(
                    "status.{field} must be a list; the stored conditions were kept"
                ));
                Vec::new()
            }
        };
        let mut sent_by_type: Vec<(&str, &Value)> = Vec::with_capacity(sent_list.len());
        for c in &sent_list {
            match condition_type(c) {
                Some(t) if !sent_by_type.iter().any(|(seen, _)| *seen == t) => {
                    sent_by_type.push((t, c))
                }
                Some(t) => self.out.warnings.push(format!(
                    "status.{field} lists type {t} more than once; the first entry was used"
                )),
                None => self.out.warnings.push(format!(
                    "status.{field} has an entry without a type; it was ignored"
                )),
            }
        }
        let find = |t: &str| sent_by_type.iter().find(|(s, _)| *s == t).map(|(_, c)| *c);

        let mut merged: Vec<Value> = Vec::with_capacity(old_list.len() + sent_by_type.len());
        let mut seen: Vec<&str> = Vec::with_capacity(old_list.len());
        for old in old_list {
            let Some(t) = condition_type(old) else {
                merged.push(old.clone());
                continue;
            };
            let owners = policy.condition_owners(t);
            let owns = self.writer.roles.intersects(owners);
            // A stored list with a type twice (a CRD without `x-kubernetes-list-type: map`): the
            // writer's entry updates the first one; later ones stay as stored (or go with it
            // when removed), so that a second pass changes nothing.
            if seen.contains(&t) {
                if !(owns && policy.removable(t) && find(t).is_none()) {
                    merged.push(old.clone());
                }
                continue;
            }
            seen.push(t);
            match find(t) {
                Some(new) if owns => merged.push(update_condition(Some(old), new, now)),
                Some(new) => {
                    merged.push(old.clone());
                    if new != old {
                        self.reverted(format!("{field}[{t}]"), owners, Some(new), Some(old));
                    }
                }
                None if owns && policy.removable(t) => {}
                None => merged.push(old.clone()),
            }
        }
        for (t, new) in &sent_by_type {
            if old_list.iter().any(|o| condition_type(o) == Some(t)) {
                continue;
            }
            let owners = policy.condition_owners(t);
            if self.writer.roles.intersects(owners) {
                merged.push(update_condition(None, new, now));
            } else {
                self.reverted(format!("{field}[{t}]"), owners, Some(new), None);
            }
        }
        if !merged.is_empty() || old_status.contains_key(&field) || sent_present {
            self.out.status.insert(field, Value::Array(merged));
        }
    }

    /// Rule 3: write-once fields keep their first value.
    fn write_once(&mut self) {
        let (policy, old_status) = (self.policy, self.old);
        let cfg = &policy.config;
        for field in &cfg.write_once {
            let Some(first) = non_null(old_status.get(field)) else {
                continue;
            };
            match non_null(self.out.status.get(field)) {
                Some(sent) if sent == first => {}
                // Left out (a status rebuilt from scratch): put back without a fuss.
                None => {
                    self.out.status.insert(field.clone(), first.clone());
                }
                Some(sent) => {
                    let shown = sent_and_kept(Some(sent), Some(first));
                    self.out.status.insert(field.clone(), first.clone());
                    self.correct(
                        field.clone(),
                        format!("status.{field} is write-once; its first value was kept ({shown})"),
                    );
                }
            }
        }
        let bc = &cfg.block_clearance;
        let (Some(Value::Object(old_bc)), Some(Value::Object(new_bc))) = (
            old_status.get(&bc.field),
            self.out.status.get_mut(&bc.field),
        ) else {
            return;
        };
        let mut kept = Vec::new();
        for attr in [&bc.cleared_by, &bc.cleared_at] {
            if let Some(first) = non_null(old_bc.get(attr))
                && non_null(new_bc.get(attr)) != Some(first)
            {
                let shown = sent_and_kept(non_null(new_bc.get(attr)), Some(first));
                new_bc.insert(attr.clone(), first.clone());
                kept.push((attr.clone(), shown));
            }
        }
        for (attr, shown) in kept {
            let path = format!("{}.{attr}", bc.field);
            self.correct(
                path.clone(),
                format!(
                    "status.{path} records who cleared the block; its first value was kept ({shown})"
                ),
            );
        }
    }

    /// Rule 4: times stamped on entering a phase, duration and the failure-reason mirror.
    /// What it changes from the write is said: a value replaced is a correction, a value
    /// filled in a warning.
    fn derived(&mut self, now: Timestamp) {
        let phases = &self.policy.phases;
        let from = phases.current(PhaseValue::read(Some(self.old), &phases.field));
        let d = &self.policy.config.derived;
        let fields = [
            &d.start_time,
            &d.completion_time,
            &d.duration,
            &d.failure_reason,
        ];
        let before: Vec<Option<Value>> = fields
            .iter()
            .map(|f| non_null(self.out.status.get(*f)).cloned())
            .collect();
        derive(self.policy, Some(from), &mut self.out.status, now);
        for (field, before) in fields.into_iter().zip(before) {
            let after = non_null(self.out.status.get(field));
            match (&before, after) {
                (Some(b), Some(a)) if b != a => {
                    let warning = format!(
                        "status.{field} was recomputed: {} ({})",
                        derived_rule(d, field),
                        sent_and_kept(Some(b), Some(a))
                    );
                    self.correct(field.clone(), warning);
                }
                (None, Some(a)) => self.out.warnings.push(format!(
                    "status.{field} was filled in as {}: {}",
                    shown_value(a),
                    derived_rule(d, field)
                )),
                _ => {}
            }
        }
    }

    /// Rule 5: a new clearance is attributed to the requesting user, now; its reason must say
    /// enough.
    fn block_clearance(&mut self, now: Timestamp) {
        let (policy, old_status) = (self.policy, self.old);
        let bc = &policy.config.block_clearance;
        let old_bc = old_status.get(&bc.field).and_then(Value::as_object);
        let user = self.writer.user;
        let Some(Value::Object(new_bc)) = self.out.status.get_mut(&bc.field) else {
            return;
        };
        if old_bc == Some(&*new_bc) {
            // Carried over or restored: nothing new to judge or attribute.
            return;
        }
        if let Some(denial) = clearance_denial(bc, old_bc, new_bc, user) {
            self.out.denial = Some(denial);
            return;
        }
        // Rule 3 kept an attribution already stored; what is missing (a new clearance, or a
        // stored one written without attribution) is taken from this request.
        let stored = |attr: &str| old_bc.and_then(|o| non_null(o.get(attr))).is_some();
        let mut forged = false;
        let mut filled = Vec::new();
        let mut replaced_at = None;
        if !stored(&bc.cleared_by) {
            let sent_by = new_bc.get(&bc.cleared_by).and_then(Value::as_str);
            forged = sent_by.is_some_and(|s| !s.is_empty() && s != user);
            if sent_by.is_none_or(str::is_empty) {
                filled.push(&bc.cleared_by);
            }
            new_bc.insert(bc.cleared_by.clone(), Value::String(user.to_string()));
        }
        if !stored(&bc.cleared_at) {
            // Kept only when it is this pass's own stamp seen again on reinvocation.
            let recent = new_bc
                .get(&bc.cleared_at)
                .and_then(Value::as_str)
                .and_then(time::parse)
                .is_some_and(|t| {
                    let age = now.as_second() - t.as_second();
                    (0..=REINVOCATION_WINDOW_SECONDS).contains(&age)
                });
            if !recent {
                let sent_at = non_null(new_bc.get(&bc.cleared_at)).cloned();
                let stamp = Value::String(time::format(now));
                match sent_at {
                    Some(sent) => replaced_at = Some(sent_and_kept(Some(&sent), Some(&stamp))),
                    None => filled.push(&bc.cleared_at),
                }
                new_bc.insert(bc.cleared_at.clone(), stamp);
            }
        }
        let filled: Vec<String> = filled
            .into_iter()
            .map(|attr| {
                let value = new_bc.get(attr).map(shown_value).unwrap_or_default();
                format!(
                    "status.{}.{attr} was filled in as {value}: a clearance is attributed to \
                     the user the API server authenticated, at the time it was made",
                    bc.field
                )
            })
            .collect();
        self.out.warnings.extend(filled);
        if forged {
            let path = format!("{}.{}", bc.field, bc.cleared_by);
            self.correct(
                path.clone(),
                format!(
                    "status.{path} is set from the requesting user; the value sent was replaced"
                ),
            );
        }
        if let Some(shown) = replaced_at {
            let path = format!("{}.{}", bc.field, bc.cleared_at);
            self.correct(
                path.clone(),
                format!("status.{path} is the time of the clearance, now ({shown})"),
            );
        }
    }
}

/// Why a new or changed clearance must be refused, if it must: one whose attribution is taken
/// from this request needs an authenticated user, and a new or changed reason needs at least the
/// configured number of words.
pub fn clearance_denial(
    bc: &BlockClearanceConfig,
    old_bc: Option<&Status>,
    new_bc: &Status,
    user: &str,
) -> Option<String> {
    let attributed = old_bc
        .and_then(|o| non_null(o.get(&bc.cleared_by)))
        .is_some();
    if !attributed && user.is_empty() {
        return Some(format!(
            "status.{} can only be set by an authenticated user; the request has no user name",
            bc.field
        ));
    }
    let reason = new_bc.get(&bc.reason).and_then(Value::as_str).unwrap_or("");
    let old_reason = old_bc
        .and_then(|o| o.get(&bc.reason))
        .and_then(Value::as_str);
    let words = reason.split_whitespace().count();
    (old_reason != Some(reason) && words < bc.min_reason_words).then(|| {
        format!(
            "status.{}.{} must give the reason for the clearance in at least {} words (got {words})",
            bc.field, bc.reason, bc.min_reason_words
        )
    })
}

/// Rule 4 on one status. With `from`, times are stamped on entering a phase; without it (the
/// `repair` command) they are stamped whenever the current phase lacks them.
pub fn derive(policy: &Policy, from: Option<&str>, status: &mut Status, now: Timestamp) {
    let phases = &policy.phases;
    let d = &policy.config.derived;
    let current = phases.current(PhaseValue::read(Some(status), &phases.field));
    let to = match PhaseValue::read(Some(status), &phases.field) {
        PhaseValue::Text(_) => current,
        _ => from.unwrap_or(current),
    }
    .to_string();
    let stamp = time::format(now);
    if from != Some(to.as_str()) {
        if to == phases.running && non_null(status.get(&d.start_time)).is_none() {
            status.insert(d.start_time.clone(), Value::String(stamp.clone()));
        }
        if phases.is_terminal(&to) && non_null(status.get(&d.completion_time)).is_none() {
            status.insert(d.completion_time.clone(), Value::String(stamp));
        }
    }
    let time_of = |f: &str| status.get(f).and_then(Value::as_str).and_then(time::parse);
    if let (Some(start), Some(end)) = (time_of(&d.start_time), time_of(&d.completion_time)) {
        let sent = status
            .get(&d.duration)
            .and_then(Value::as_str)
            .and_then(time::parse_go_duration);
        if !sent.is_some_and(|sent| time::agrees_with_times(sent, start, end)) {
            let duration = Value::String(time::go_duration(start, end));
            status.insert(d.duration.clone(), duration);
        }
    }
    let reason = status
        .get(&d.failure_details)
        .and_then(|fd| fd.get(&d.failure_details_reason))
        .filter(|r| r.is_string())
        .cloned();
    if let Some(reason) = reason {
        status.insert(d.failure_reason.clone(), reason);
    }
}

/// What `repair` would change in a stored status: missing times for its phase, a stale
/// duration, a missing failure-reason mirror. `None` when it is consistent.
pub fn repaired(policy: &Policy, status: &Status, now: Timestamp) -> Option<Status> {
    let mut fixed = status.clone();
    derive(policy, None, &mut fixed, now);
    (fixed != *status).then_some(fixed)
}

fn condition_type(c: &Value) -> Option<&str> {
    c.get("type").and_then(Value::as_str)
}

/// The writer's version of a condition; `lastTransitionTime` only moves when `status` does.
/// Only a transition (a new type or a changed `status`) is stamped with `now`: an unchanged
/// condition stored without a time is left as the writer sent it, the same as when the writer
/// leaves it out, so that a second pass yields the same result.
fn update_condition(old: Option<&Value>, new: &Value, now: Timestamp) -> Value {
    let mut c = new.clone();
    let Some(obj) = c.as_object_mut() else {
        return c;
    };
    let unchanged = old.filter(|o| o.get("status") == new.get("status"));
    let old_ltt = unchanged.and_then(|o| non_null(o.get("lastTransitionTime")));
    match old_ltt {
        Some(ltt) => {
            obj.insert("lastTransitionTime".into(), ltt.clone());
        }
        None if unchanged.is_none() && non_null(obj.get("lastTransitionTime")).is_none() => {
            obj.insert(
                "lastTransitionTime".into(),
                Value::String(time::format(now)),
            );
        }
        None => {}
    }
    c
}

/// Why a derived field has the value it has, for the warning that says it changed.
fn derived_rule(d: &crate::config::DerivedConfig, field: &str) -> String {
    if field == d.duration {
        format!(
            "it is {} − {}, and a value within the second the stored times allow is kept",
            d.completion_time, d.start_time
        )
    } else if field == d.failure_reason {
        format!(
            "it mirrors {}.{}",
            d.failure_details, d.failure_details_reason
        )
    } else {
        "it is stamped when the phase that needs it is entered".into()
    }
}

/// A value for a one-line message: compact JSON, cut at 80 characters.
fn shown_value(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// `sent X, kept Y` for a correction's warning.
fn sent_and_kept(sent: Option<&Value>, kept: Option<&Value>) -> String {
    let show = |v: Option<&Value>| v.map_or_else(|| "nothing".to_string(), shown_value);
    format!("sent {}, stored {}", show(sent), show(kept))
}

fn shown_user(user: &str) -> &str {
    if user.is_empty() { "<no user>" } else { user }
}
