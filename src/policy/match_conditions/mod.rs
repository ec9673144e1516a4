//! The CEL `matchConditions` the webhook configurations carry, so that the API server skips a
//! call whose answer is known: the validating webhook for an update it cannot deny, the mutating
//! one for a controller write that combining would leave as sent.
//!
//! Both must stay conservative: a skipped call is a rule not applied. Each access is behind a
//! type check, and times and durations are parsed only in forms that parse (`cel::TIME_RE`,
//! `cel::DURATION_RE`), so that evaluation never errors (an error applies `failurePolicy`, and
//! with `Fail` refuses the write). The Helm chart renders the same text from its policy values
//! (`wfe-admission.validateMatchCondition`, `wfe-admission.mutateMatchCondition`); the chart
//! tests compare the two.

mod cel;

pub use cel::{DURATION_RE, TIME_RE};

use std::collections::BTreeSet;

use super::reads::ValidateReads;
use crate::config::{CONTROLLER, Config};

/// Name of [`validate_match_condition`] in the validating webhook's `matchConditions`.
pub const VALIDATE_MATCH_CONDITION: &str = "phase-or-block-clearance-may-change";

/// Name of [`mutate_match_condition`] in the mutating webhook's `matchConditions`.
pub const MUTATE_MATCH_CONDITION: &str = "status-may-need-combining";

/// The CEL expression under which the API server calls the validating webhook: false only for
/// an UPDATE that `review::validate` cannot deny. It skips when the new status is absent, or is
/// an object whose phase
///
/// - is absent, or the string `review::validate` reads as the stored phase (no move), or
/// - a move of the table by a user of a writer that owns the phase, or a move `moves` grants
///   to the user's writer,
///
/// and whose clearance is absent or equal (same JSON type) to the stored one. In every other
/// case, including statuses that are not objects, it calls. Reads the fields `policy::reads`
/// declares.
pub fn validate_match_condition(config: &Config) -> String {
    let reads = ValidateReads::of(config);
    let phase = cel::string(reads.phase);
    let clearance = cel::string(reads.clearance);
    let (new, old) = ("object.status", "oldObject.status");
    let from = cel::from_phase(reads.phase, &config.phase.initial, old);
    let to = format!("{new}[{phase}]");
    let mut moves = vec![format!("{to} == {from}")];
    let owners = config
        .fields
        .get(reads.phase)
        .unwrap_or(&config.default_field_owners);
    if let Some(owners) = cel::any_of(config, owners) {
        moves.extend(cel::table_move(config, &owners, &from, &to));
    }
    moves.extend(cel::granted_move(config, &from, &to));
    let old_is_map = format!("has({old}) && type({old}) == map");
    format!(
        "request.operation == 'UPDATE' && has({new}) && !(type({new}) == map && \
         (!({phase} in {new}) || (type({to}) == string && ({moves}))) && \
         (!({clearance} in {new}) || ({old_is_map} && {clearance} in {old} && \
         type({new}[{clearance}]) == type({old}[{clearance}]) && {new}[{clearance}] == {old}[{clearance}])))",
        moves = moves.join(" || "),
    )
}

/// The CEL expression under which the API server calls the mutating webhook: false only for a
/// write by the controller (an explicit user pattern or group of the `controller` writer) that
/// `combine` provably returns unchanged, with no warning and no correction. The stored status
/// may be absent (the first status write), and is read as empty then.
///
/// - A key the controller does not own, or a write-once field already stored, is sent as
///   stored (`n[?k] == o[?k]`: both absent, or equal); a write-once field not stored yet may
///   get its first value. A stored key the controller owns may be left out: combining drops it
///   too.
/// - The phase is the stored one, or (when the controller owns the phase) a move of the table;
///   a move into the running phase sends the start time, into a terminal one the completion
///   time, so that nothing is stamped. A stored phase or conditions list is sent.
/// - Conditions: each type once; the first entries are the stored ones in their order, each the
///   stored entry or (a type the controller owns) with the same `status` and
///   `lastTransitionTime`; any further entry is a type the controller owns with its own
///   `lastTransitionTime`.
/// - Derived fields: with both times, a duration within a second of their difference (the
///   times in `metav1.Time`'s form); a `failureReason` that mirrors `failureDetails.reason`.
///
/// The API server's evaluator pays for every node it visits, so each check is written to visit
/// few: keys by name, one guarded pass over the condition types, no loop the common write
/// does not need. `None` when the policy has no `controller` writer with users or groups: the
/// mutating webhook is then called for every write. Its two-variable comprehensions need an
/// API server of 1.33 or later (the chart renders it only there).
pub fn mutate_match_condition(config: &Config) -> Option<String> {
    let who = cel::who(config.writers.get(CONTROLLER)?)?;
    // The sent and the stored status bound once (`n`, `o`), so that each access below is one
    // lookup and one body serves a first status too: no stored status reads as `{}`.
    let body = format!("type(o) == map && {}", mutate_body(config));
    let stored = cel::bind("o", "has(oldObject.status) ? oldObject.status : {}", &body);
    Some(format!(
        "!(request.operation == 'UPDATE' && ({who}) && has(object.status) && \
         type(object.status) == map && {})",
        cel::bind("n", "object.status", &stored)
    ))
}

/// The mutating condition's checks of the sent status `n` against the stored one `o` (both
/// objects).
fn mutate_body(config: &Config) -> String {
    let (new, old) = ("n", "o");
    let owned = |owners: &Vec<String>| controller_owns(owners);
    let owners_of = |k: &str| config.fields.get(k).unwrap_or(&config.default_field_owners);
    let d = &config.derived;
    let conditions = config.conditions.field.as_str();
    let phase_field = config.phase.field.as_str();
    let fixed = [
        phase_field,
        config.block_clearance.field.as_str(),
        conditions,
    ];
    let write_once: BTreeSet<&str> = config.write_once.iter().map(String::as_str).collect();
    let is_plain = |k: &str, owners: &Vec<String>| {
        owned(owners) && !fixed.contains(&k) && !write_once.contains(k)
    };
    let first_values: BTreeSet<&str> = write_once
        .iter()
        .copied()
        .filter(|k| owned(owners_of(k)))
        .collect();
    let (p, c) = (cel::string(phase_field), cel::string(conditions));
    // Both absent, or both present and equal; a null counts as a value here, so that a null
    // beside an absent key still reaches the webhook.
    let kept = |k: &str| format!("{new}[?{k}] == {old}[?{k}]");
    // Nothing stored yet (or a stored null): the first value is the writer's.
    let unset = |k: &str| format!("{old}[?{k}].orValue(null) == null");
    let keys = if owned(&config.default_field_owners) {
        // Every key but these is the controller's to set or drop, so only these are looked at,
        // each by name.
        let checked: BTreeSet<&str> = config
            .fields
            .iter()
            .filter(|(k, owners)| !is_plain(k, owners))
            .map(|(k, _)| k.as_str())
            .chain(fixed)
            .chain(write_once.iter().copied())
            .filter(|k| *k != phase_field && *k != conditions)
            .collect();
        let each: Vec<String> = checked
            .iter()
            .map(|k| {
                let q = cel::string(k);
                if first_values.contains(k) {
                    format!("({} || {})", kept(&q), unset(&q))
                } else {
                    kept(&q)
                }
            })
            .collect();
        if each.is_empty() {
            "true".to_string()
        } else {
            each.join(" && ")
        }
    } else {
        // Few keys are the controller's: every sent key is looked at, and every stored one
        // must be sent unless the controller may drop it.
        let plain: Vec<&String> = config
            .fields
            .iter()
            .filter(|(k, owners)| is_plain(k, owners))
            .map(|(k, _)| k)
            .collect();
        let plain = cel::list(plain);
        format!(
            "{old}.all(k, k in {new} || k in {plain}) && \
             {new}.all(k, k == {p} || k == {c} || k in {plain} || {} || (k in {} && {}))",
            kept("k"),
            cel::list(&first_values),
            unset("k"),
        )
    };

    let to = format!("{new}[{p}]");
    let table = owned(owners_of(phase_field))
        .then(|| cel::table_move(config, "true", "f", &to))
        .flatten();
    let from = cel::stored_phase(phase_field, &config.phase.initial, old);
    let (start, completion) = (cel::string(&d.start_time), cel::string(&d.completion_time));
    let sent_string = |f: &str| format!("({f} in {new} && type({new}[{f}]) == string)");
    // The stored phase sent again is the common write: no binding, no table.
    let unmoved = format!("{} && {to} != ''", kept(&p));
    let moved = match table {
        Some(table) => cel::bind(
            "f",
            &from,
            &format!(
                "{to} == f || ({table} && ({to} != {running} || {sent_start}) && \
                 (!({to} in {terminal}) || {sent_end}))",
                running = cel::string(&config.phase.running),
                terminal = cel::list(&config.phase.terminal),
                sent_start = sent_string(&start),
                sent_end = sent_string(&completion),
            ),
        ),
        None => format!("{to} == {from}"),
    };
    let phase = format!(
        "({p} in {new} ? type({to}) == string && ({unmoved} || {moved}) : {})",
        unset(&p)
    );

    let type_owned = condition_owned(config);
    // Index by index (`nc` sent, `oc` stored, `ts` the sent types, 0 where an entry has
    // none): the stored entry is the same, or (a controller type) differs only in what
    // combining keeps from the writer. `o == c` first: deep equality runs in Go, and most
    // entries of a progress write are unchanged. Each type once: its first index is its own
    // (`indexOf` runs in Go, a loop in a loop in CEL).
    let o = "oc[i]";
    let same_key = |key: &str| {
        format!("('{key}' in c ? '{key}' in {o} && {o}['{key}'] == c['{key}'] : !('{key}' in {o}))")
    };
    let nc = format!("{new}[{c}]");
    let entries = format!(
        "{nc}.all(i, c, type(ts[i]) == string && ts.indexOf(ts[i]) == i && \
         (i < size(oc) ? ({o} == c || (type({o}) == map && 'type' in {o} && {o}['type'] == c['type'] && \
         {status} && {ltt} && ({type_owned}))) : (({type_owned}) && 'lastTransitionTime' in c && \
         type(c['lastTransitionTime']) == string)))",
        status = same_key("status"),
        ltt = same_key("lastTransitionTime"),
    );
    let types = format!("{nc}.map(c, type(c) == map && 'type' in c ? c['type'] : 0)");
    let lists = cel::bind(
        "oc",
        &format!("{c} in {old} ? {old}[{c}] : []"),
        &format!(
            "size({nc}) >= size(oc) && {}",
            cel::bind("ts", &types, &entries)
        ),
    );
    let conditions = format!(
        "({c} in {new} ? type({nc}) == list && (!({c} in {old}) || type({old}[{c}]) == list) && \
         {lists} : !({c} in {old}))"
    );

    let duration = cel::string(&d.duration);
    let time = |f: &str| format!("timestamp({new}[{f}])");
    let matches = |f: &str, re: &str| {
        format!(
            "{} && {new}[{f}].matches({})",
            sent_string(f),
            cel::string(re)
        )
    };
    // Whole seconds on both sides (the patterns), so within a second is one of three values.
    let duration = format!(
        "(!({start} in {new} && {completion} in {new}) || ({} && {} && {} && \
         {} - {} - duration({new}[{duration}]) in [duration('-1s'), duration('0s'), duration('1s')]))",
        matches(&start, cel::TIME_RE),
        matches(&completion, cel::TIME_RE),
        matches(&duration, cel::DURATION_RE),
        time(&completion),
        time(&start),
    );
    let (fd, fdr, fr) = (
        cel::string(&d.failure_details),
        cel::string(&d.failure_details_reason),
        cel::string(&d.failure_reason),
    );
    let mirror = format!(
        "(!({fd} in {new}) || type({new}[{fd}]) != map || !({fdr} in {new}[{fd}]) || \
         type({new}[{fd}][{fdr}]) != string || \
         ({fr} in {new} && type({new}[{fr}]) == string && {new}[{fr}] == {new}[{fd}][{fdr}]))"
    );
    format!("{keys} && {phase} && {conditions} && {duration} && {mirror}")
}

/// True for a condition `c` whose type the controller owns, as the shorter test: the listed
/// types it does not own when it owns the unlisted ones, else the listed types it owns.
fn condition_owned(config: &Config) -> String {
    let owners = &config.conditions.owners;
    let (mine, others): (Vec<_>, Vec<_>) = owners.iter().partition(|(_, o)| controller_owns(o));
    let types =
        |listed: Vec<(&String, &Vec<String>)>| cel::list(listed.into_iter().map(|(t, _)| t));
    if controller_owns(&config.conditions.default_owners) {
        if others.is_empty() {
            return "true".to_string();
        }
        format!("!(c['type'] in {})", types(others))
    } else {
        format!("c['type'] in {}", types(mine))
    }
}

fn controller_owns(owners: &[String]) -> bool {
    owners.iter().any(|o| o == CONTROLLER)
}
