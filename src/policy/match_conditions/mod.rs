//! The CEL `matchConditions` the webhook configurations carry, so that the API server skips a
//! call whose answer is known: the validating webhook for an update it cannot deny, the mutating
//! one for a controller write that combining would leave as sent.
//!
//! Both must stay conservative: a skipped call is a rule not applied. Each access is behind a
//! type check, so that evaluation never errors (an error applies `failurePolicy`, and with `Fail`
//! refuses the write). The Helm chart renders the same text from its policy values
//! (`wfe-admission.validateMatchCondition`, `wfe-admission.mutateMatchCondition`); the chart
//! tests compare the two.

use std::collections::BTreeSet;

use super::reads::ValidateReads;
use crate::config::{CONTROLLER, Config};

/// Name of [`validate_match_condition`] in the validating webhook's `matchConditions`.
pub const VALIDATE_MATCH_CONDITION: &str = "phase-or-block-clearance-may-change";

/// Name of [`mutate_match_condition`] in the mutating webhook's `matchConditions`.
pub const MUTATE_MATCH_CONDITION: &str = "status-may-need-combining";

/// The CEL expression under which the API server calls the validating webhook: false only for
/// an UPDATE that `review::validate` cannot deny, so that the common progress write (same phase,
/// same clearance) costs no call. It only skips when the new status is absent, or is an object
/// whose phase is absent or the same string as before and whose clearance is absent or equal
/// (same JSON type) to the stored one. In every other case, including statuses that are not
/// objects, it calls. Reads the fields `policy::reads` declares.
pub fn validate_match_condition(config: &Config) -> String {
    let reads = ValidateReads::of(config);
    let phase = cel_string(reads.phase);
    let clearance = cel_string(reads.clearance);
    let (new, old) = ("object.status", "oldObject.status");
    let old_is_map = format!("has({old}) && type({old}) == map");
    format!(
        "request.operation == 'UPDATE' && has({new}) && !(type({new}) == map && \
         (!({phase} in {new}) || (type({new}[{phase}]) == string && {old_is_map} && \
         {phase} in {old} && type({old}[{phase}]) == string && {new}[{phase}] == {old}[{phase}])) && \
         (!({clearance} in {new}) || ({old_is_map} && {clearance} in {old} && \
         type({new}[{clearance}]) == type({old}[{clearance}]) && {new}[{clearance}] == {old}[{clearance}])))"
    )
}

/// The CEL expression under which the API server calls the mutating webhook: false only for a
/// write by the controller (an explicit user pattern or group of the `controller` writer) that
/// `combine` provably returns unchanged, with no warning and no correction:
///
/// - both statuses are objects with the same keys;
/// - a key differs only if the controller owns it and it is none of the phase, the conditions,
///   the clearance, a write-once field or a derived field (ownership, write-once, clearance);
/// - the conditions are lists of objects with a string `type`, each type once, and each entry is
///   the stored one at its index, or (for a type the controller owns) has the same type, `status`
///   and `lastTransitionTime` (present or not) as it (conditions);
/// - no `completionTime` beside a `startTime` (the duration is then never recomputed), and
///   `failureReason` already mirrors `failureDetails.reason` (derived fields).
///
/// The phase being unchanged, no time is stamped. `None` when the policy has no `controller`
/// writer with users or groups: the mutating webhook is then called for every write.
pub fn mutate_match_condition(config: &Config) -> Option<String> {
    let controller = config.writers.get(CONTROLLER)?;
    let mut who: Vec<String> = controller
        .users
        .iter()
        .map(|u| {
            format!(
                "request.userInfo.username.matches({})",
                cel_string(&user_regex(u))
            )
        })
        .collect();
    if !controller.groups.is_empty() {
        who.push(format!(
            "request.userInfo.groups.exists(g, g in {})",
            cel_list(controller.groups.iter())
        ));
    }
    if who.is_empty() {
        return None;
    }
    let owned = |owners: &Vec<String>| owners.iter().any(|o| o == CONTROLLER);
    let d = &config.derived;
    let conditions = config.conditions.field.as_str();
    let protected: BTreeSet<&str> = [
        config.phase.field.as_str(),
        config.block_clearance.field.as_str(),
        d.start_time.as_str(),
        d.completion_time.as_str(),
        d.duration.as_str(),
        d.failure_reason.as_str(),
    ]
    .into_iter()
    .chain(config.write_once.iter().map(String::as_str))
    .collect();
    let may_differ = config
        .fields
        .iter()
        .filter(|(k, owners)| owned(owners) && !protected.contains(k.as_str()) && *k != conditions)
        .map(|(k, _)| k);
    let mut key_may_differ = format!("k in {}", cel_list(may_differ));
    if owned(&config.default_field_owners) {
        let listed: BTreeSet<&str> = config
            .fields
            .keys()
            .map(String::as_str)
            .chain(protected.iter().copied())
            .chain([conditions])
            .collect();
        key_may_differ = format!("{key_may_differ} || !(k in {})", cel_list(listed));
    }
    let owned_types = config
        .conditions
        .owners
        .iter()
        .filter(|(_, owners)| owned(owners))
        .map(|(t, _)| t);
    let mut type_owned = format!("c['type'] in {}", cel_list(owned_types));
    if owned(&config.conditions.default_owners) {
        type_owned = format!(
            "{type_owned} || !(c['type'] in {})",
            cel_list(config.conditions.owners.keys())
        );
    }

    let (new, old) = ("object.status", "oldObject.status");
    let c = cel_string(conditions);
    let (nc, oc) = (format!("{new}[{c}]"), format!("{old}[{c}]"));
    // Index by index: the stored entry is the same, or (a controller type) differs only in
    // what combining keeps from the writer. `o == c` first: deep equality runs in Go, and
    // most entries of a progress write are unchanged.
    let o = format!("{oc}[i]");
    let same = |key: &str| {
        format!("('{key}' in c ? '{key}' in {o} && {o}['{key}'] == c['{key}'] : !('{key}' in {o}))")
    };
    let entries = format!(
        "{nc}.all(i, c, type(c) == map && 'type' in c && type(c['type']) == string && \
         ({o} == c || (type({o}) == map && 'type' in {o} && {o}['type'] == c['type'] && \
         {status} && {ltt} && ({type_owned}))))",
        status = same("status"),
        ltt = same("lastTransitionTime"),
    );
    let unique = format!("{nc}.all(i, c, {nc}.all(j, d, j <= i || d['type'] != c['type']))");
    let (start, completion) = (cel_string(&d.start_time), cel_string(&d.completion_time));
    let (fd, fdr, fr) = (
        cel_string(&d.failure_details),
        cel_string(&d.failure_details_reason),
        cel_string(&d.failure_reason),
    );
    Some(format!(
        "!(request.operation == 'UPDATE' && ({who}) && \
         has({new}) && type({new}) == map && has({old}) && type({old}) == map && \
         size({new}) == size({old}) && \
         {new}.all(k, k in {old} && (k == {c} || \
         (type({new}[k]) == type({old}[k]) && {new}[k] == {old}[k]) || {key_may_differ})) && \
         (!({c} in {new}) || ({c} in {old} && type({nc}) == list && type({oc}) == list && \
         size({nc}) == size({oc}) && {entries} && {unique})) && \
         !({start} in {new} && {completion} in {new}) && \
         (!({fd} in {new}) || type({new}[{fd}]) != map || !({fdr} in {new}[{fd}]) || \
         type({new}[{fd}][{fdr}]) != string || \
         ({fr} in {new} && type({new}[{fr}]) == string && {new}[{fr}] == {new}[{fd}][{fdr}])))",
        who = who.join(" || "),
    ))
}

/// A writer's user pattern as an anchored RE2 expression: `*` matches within one `:` segment.
fn user_regex(pattern: &str) -> String {
    format!("^{}$", quote_meta(pattern).replace("\\*", "[^:]*"))
}

/// Go's `regexp.QuoteMeta` (what the chart's `regexQuoteMeta` calls).
fn quote_meta(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for ch in s.chars() {
        if "\\.+*?()|[]{}^$".contains(ch) {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// A CEL list literal of string literals, in the iterator's order.
fn cel_list<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    let items: Vec<String> = items.into_iter().map(|s| cel_string(s.as_ref())).collect();
    format!("[{}]", items.join(", "))
}

/// A CEL string literal (single-quoted) for a configured name.
fn cel_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}
