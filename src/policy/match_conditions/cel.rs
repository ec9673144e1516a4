//! CEL text the match conditions are built from: literals, who the request is, which phase moves
//! are legal for it, and checks of times that never make evaluation error.

use crate::config::{Config, WriterMatch};

/// A stored or sent time that `timestamp()` parses without error and `policy::time::parse`
/// reads the same: `metav1.Time`'s whole-second UTC form, years 2000–2099 (so that a difference
/// of two never overflows a CEL duration), each month with the days it has, leap days included.
pub const TIME_RE: &str = "^20([0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|[0-9]{2}-(0[13-9]|1[0-2])-(29|30)|[0-9]{2}-(0[13578]|1[02])-31|(0[048]|[2468][048]|[13579][26])-02-29)T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z$";

/// A duration that `duration()` parses without error and `policy::time::parse_go_duration` reads
/// the same: Go's `Duration.String()` of whole seconds (`4s`, `1m4s`, `2h0m5s`).
pub const DURATION_RE: &str = "^([0-9]{1,6}h)?([0-9]{1,2}m)?[0-9]{1,2}s$";

/// True when the request's user is one of `writer`'s users or in one of its groups; `None` when
/// the writer names neither (an `anyOtherUser` writer cannot be told apart in CEL).
pub fn who(writer: &WriterMatch) -> Option<String> {
    let mut who: Vec<String> = writer
        .users
        .iter()
        .map(|u| {
            format!(
                "request.userInfo.username.matches({})",
                string(&user_regex(u))
            )
        })
        .collect();
    if !writer.groups.is_empty() {
        who.push(format!(
            "request.userInfo.groups.exists(g, g in {})",
            list(writer.groups.iter())
        ));
    }
    (!who.is_empty()).then(|| who.join(" || "))
}

/// Any of the named writers (those that can be told apart).
pub fn any_of<'a>(config: &Config, names: impl IntoIterator<Item = &'a String>) -> Option<String> {
    let who: Vec<String> = names
        .into_iter()
        .filter_map(|n| config.writers.get(n))
        .filter_map(who)
        .collect();
    (!who.is_empty()).then(|| who.join(" || "))
}

/// The stored phase of `old` as `review::validate` reads it: the string stored in `field`, or
/// `initial` when it is absent, empty or not a string.
pub fn from_phase(field: &str, initial: &str, old: &str) -> String {
    phase_of(
        field,
        initial,
        old,
        &format!("has({old}) && type({old}) == map && "),
    )
}

/// [`from_phase`] of `status`, a variable known to hold an object.
pub fn stored_phase(field: &str, initial: &str, status: &str) -> String {
    phase_of(field, initial, status, "")
}

fn phase_of(field: &str, initial: &str, old: &str, guard: &str) -> String {
    let p = string(field);
    format!(
        "({guard}{p} in {old} && type({old}[{p}]) == string && {old}[{p}] != '' ? {old}[{p}] : \
         {initial})",
        initial = string(initial)
    )
}

/// `body` with `var` bound to `value`, evaluated once: CEL in an API server has no `cel.bind`,
/// so a one-element list's `all` stands in for it.
pub fn bind(var: &str, value: &str, body: &str) -> String {
    format!("[{value}].all({var}, {body})")
}

/// True when the table lets the stored phase `from` move to the string `to` and the request is
/// by an owner of the phase (`owners`, CEL). `None` when the table moves nothing. Only known
/// phases move here: a stored phase outside the enum always reaches the webhook.
pub fn table_move(config: &Config, owners: &str, from: &str, to: &str) -> Option<String> {
    let phase = &config.phase;
    let table: Vec<String> = phase
        .transitions
        .iter()
        .filter(|(f, _)| phase.values.contains(f))
        .map(|(f, targets)| {
            let known: Vec<&String> = targets
                .iter()
                .filter(|t| phase.values.contains(t))
                .collect();
            (f, known)
        })
        .filter(|(_, targets)| !targets.is_empty())
        .map(|(f, targets)| format!("{}: {}", string(f), list(targets)))
        .collect();
    if table.is_empty() {
        return None;
    }
    let table = format!("{{{}}}", table.join(", "));
    Some(format!(
        "(({owners}) && {from} in {table} && {to} in {table}[{from}])"
    ))
}

/// True when the request's writer was granted the move (`moves`) from `from` to `to`.
pub fn granted_move(config: &Config, from: &str, to: &str) -> Option<String> {
    let phase = &config.phase;
    let mut branches = Vec::new();
    for (name, moves) in &config.moves {
        let Some(who) = config.writers.get(name).and_then(who) else {
            continue;
        };
        for m in moves {
            let froms: Vec<&String> = m.from.iter().filter(|f| phase.values.contains(f)).collect();
            if froms.is_empty() || !phase.values.contains(&m.to) {
                continue;
            }
            branches.push(format!(
                "(({who}) && {from} in {} && {to} == {})",
                list(froms),
                string(&m.to)
            ));
        }
    }
    (!branches.is_empty()).then(|| branches.join(" || "))
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
pub fn list<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    let items: Vec<String> = items.into_iter().map(|s| string(s.as_ref())).collect();
    format!("[{}]", items.join(", "))
}

/// A CEL string literal (single-quoted) for a configured name.
pub fn string(s: &str) -> String {
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
