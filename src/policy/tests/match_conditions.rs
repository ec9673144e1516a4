//! The text of the built-in match conditions. What they skip is proven against the real API
//! server (tests/e2e, `match_condition`): CEL has no evaluator here.

use crate::config::{CONTROLLER, Config};
use crate::policy::match_conditions::{mutate_match_condition, validate_match_condition};

#[test]
fn match_condition_quotes_the_configured_field_names() {
    let mut config = Config::default();
    let default = validate_match_condition(&config);
    assert!(default.contains("'phase' in object.status"), "{default}");
    assert!(
        default.contains("object.status['blockClearance']"),
        "{default}"
    );
    config.phase.field = r"it's\odd".into();
    let odd = validate_match_condition(&config);
    assert!(odd.contains(r"'it\'s\\odd' in object.status"), "{odd}");
}

fn mutate(config: &Config) -> String {
    mutate_match_condition(config).expect("a controller with users")
}

#[test]
fn mutating_condition_skips_only_the_controllers_users() {
    let default = mutate(&Config::default());
    assert!(
        default.starts_with(
            "!(request.operation == 'UPDATE' && (request.userInfo.username.matches(\
             '^system:serviceaccount:[^:]*:workflowexecution-controller$')) && "
        ),
        "{default}"
    );
    // Regex metacharacters are literal; `*` stays inside one segment; CEL escapes backslashes.
    let mut config = Config::default();
    let controller = config.writers.get_mut(CONTROLLER).expect("controller");
    controller.users = vec!["ci.bot+*".into(), r"a\b".into()];
    controller.groups = vec!["ops's".into()];
    let odd = mutate(&config);
    assert!(
        odd.contains(concat!(
            r"(request.userInfo.username.matches('^ci\\.bot\\+[^:]*$') || ",
            r"request.userInfo.username.matches('^a\\\\b$') || ",
            r"request.userInfo.groups.exists(g, g in ['ops\'s']))"
        )),
        "{odd}"
    );
}

#[test]
fn without_a_recognisable_controller_every_write_is_combined() {
    let mut config = Config::default();
    let controller = config.writers.get_mut(CONTROLLER).expect("controller");
    controller.users.clear();
    controller.any_other_user = true;
    assert_eq!(mutate_match_condition(&config), None);
    config.writers.remove(CONTROLLER);
    assert_eq!(mutate_match_condition(&config), None);
}

#[test]
fn only_plain_controller_fields_may_differ() {
    let default = mutate(&Config::default());
    // The sent and stored statuses are bound once, a first status reading as `{}`.
    assert!(
        default.contains(
            "[object.status].all(n, [has(oldObject.status) ? oldObject.status : {}].all(o, \
             type(o) == map && n[?'blockClearance'] == o[?'blockClearance'] && "
        ),
        "{default}"
    );
    // The controller is the default owner: every key is its own to set or drop but the
    // clearance, the executor's field and the write-once ones, each checked by name (a
    // write-once field may get its first value); no loop over the keys.
    for key in ["blockClearance", "ephemeralCredentialIDs"] {
        assert!(
            default.contains(&format!("n[?'{key}'] == o[?'{key}'] && ")),
            "{key}"
        );
    }
    for key in [
        "completionTime",
        "deduplicatedBy",
        "failureDetails",
        "startTime",
    ] {
        assert!(
            default.contains(&format!(
                "(n[?'{key}'] == o[?'{key}'] || o[?'{key}'].orValue(null) == null)"
            )),
            "{key}"
        );
    }
    for key in [
        "duration",
        "executionRef",
        "executionStatus",
        "observedGeneration",
        "failureReason",
    ] {
        assert!(!default.contains(&format!("n[?'{key}']")), "{key}");
    }
    assert!(!default.contains("n.all(k,"), "{default}");
    assert!(!default.contains("o.all(k,"), "{default}");
    // A stored phase or condition list must be sent.
    assert!(
        default.contains(": o[?'phase'].orValue(null) == null)"),
        "{default}"
    );
    assert!(default.contains(": !('conditions' in o))"), "{default}");
    // The one listed type the controller does not own, as the shorter test.
    assert!(
        default.contains("(!(c['type'] in ['AdmissionRejected']))"),
        "{default}"
    );
    // Each condition type once: the types mapped once (0 for an entry without one), each at
    // its own `indexOf`.
    assert!(
        default.contains(
            "[n['conditions'].map(c, type(c) == map && 'type' in c ? c['type'] : 0)].all(ts, \
             n['conditions'].all(i, c, type(ts[i]) == string && ts.indexOf(ts[i]) == i && "
        ),
        "{default}"
    );

    // Owners elsewhere: every sent key is looked at, nothing unlisted may differ, and the
    // executor's field never does.
    let mut config = Config {
        default_field_owners: vec!["executor".into()],
        write_once: Vec::new(),
        ..Config::default()
    };
    config.conditions.default_owners = vec!["executor".into()];
    let custom = mutate(&config);
    let plain = "['completionTime', 'deduplicatedBy', 'duration', 'executionRef', \
                 'executionStatus', 'failureDetails', 'failureReason', 'observedGeneration', \
                 'startTime']";
    assert!(
        custom.contains(&format!(
            "o.all(k, k in n || k in {plain}) && n.all(k, k == 'phase' || k == 'conditions' || \
             k in {plain} || n[?k] == o[?k] || (k in [] && "
        )),
        "{custom}"
    );
    assert!(!custom.contains("!(c['type'] in"), "{custom}");
    assert!(
        custom.contains("c['type'] in ['AuditRecorded', 'ExecutionComplete', "),
        "{custom}"
    );
}

#[test]
fn legal_moves_follow_the_table_and_each_writers_moves() {
    let default = validate_match_condition(&Config::default());
    // The controller owns the phase: the table's moves; the orchestrator: its one move.
    assert!(
        default.contains(
            "in {'Pending': ['Running', 'Failed'], 'Running': ['Completed', 'Failed']} && \
             object.status['phase'] in {'Pending': ['Running', 'Failed'], 'Running': \
             ['Completed', 'Failed']}["
        ),
        "{default}"
    );
    assert!(
        default.contains(
            "((request.userInfo.username.matches(\
             '^system:serviceaccount:[^:]*:remediationorchestrator-controller$')) && "
        ),
        "{default}"
    );
    assert!(
        default.contains("in ['Pending', 'Running'] && object.status['phase'] == 'Failed')"),
        "{default}"
    );
    // Nobody to recognise, no moves: only an unchanged phase is skipped.
    let mut config = Config::default();
    config.moves.clear();
    config
        .fields
        .insert("phase".into(), vec!["operator".into()]);
    let nobody = validate_match_condition(&config);
    assert!(!nobody.contains("in {'Pending'"), "{nobody}");
    assert!(!nobody.contains("matches("), "{nobody}");
    // The mutating condition moves the phase only for the controller, with its times sent.
    // The stored phase sent again needs no table; for a move, the stored phase is read once
    // (`f`).
    let mutate = mutate(&Config::default());
    assert!(
        mutate.contains(
            "('phase' in n ? type(n['phase']) == string && (n[?'phase'] == o[?'phase'] && \
             n['phase'] != '' || "
        ),
        "{mutate}"
    );
    assert!(
        mutate.contains(
            "[('phase' in o && type(o['phase']) == string && o['phase'] != '' ? o['phase'] : \
             'Pending')].all(f, n['phase'] == f || (((true) && f in {'Pending': "
        ),
        "{mutate}"
    );
    assert!(
        mutate.contains(
            "&& (n['phase'] != 'Running' || ('startTime' in n && type(n['startTime']) == \
             string)) && (!(n['phase'] in ['Completed', 'Failed']) || ('completionTime' in n && \
             type(n['completionTime']) == string))"
        ),
        "{mutate}"
    );
    assert!(!mutate.contains("remediationorchestrator"), "{mutate}");
}

#[test]
fn times_are_parsed_only_in_forms_that_parse() {
    use crate::policy::match_conditions::{DURATION_RE, TIME_RE};
    use crate::policy::time;
    let time_re = regex::Regex::new(TIME_RE).expect("RE2-compatible");
    // Every day of every month of the century the pattern admits, and the days after each
    // month's last: the pattern matches exactly the dates that exist.
    for year in 2000..2100 {
        for month in 1..=12 {
            for day in 1..=31 {
                let text = format!("{year}-{month:02}-{day:02}T23:59:59Z");
                let exists = jiff::civil::Date::new(year, month, day).is_ok();
                assert_eq!(time_re.is_match(&text), exists, "{text}");
                if exists {
                    assert!(time::parse(&text).is_some(), "{text}");
                }
            }
        }
    }
    for text in [
        "1999-12-31T23:59:59Z",
        "2100-01-01T00:00:00Z",
        "2026-12-03T24:00:00Z",
        "2026-12-03T05:60:00Z",
        "2026-12-03T05:00:60Z",
        "2026-12-03T05:00:00.5Z",
        "2026-12-03T05:00:00+01:00",
        "2026-12-03t05:00:00z",
        " 2026-12-03T05:00:00Z",
    ] {
        assert!(!time_re.is_match(text), "{text}");
    }
    // Durations: whatever matches reads as Go reads it, whole seconds.
    let duration_re = regex::Regex::new(DURATION_RE).expect("RE2-compatible");
    for (text, secs) in [
        ("0s", 0),
        ("4s", 4),
        ("1m4s", 64),
        ("2h0m5s", 7205),
        ("59m59s", 3599),
    ] {
        assert!(duration_re.is_match(text), "{text}");
        assert_eq!(
            time::parse_go_duration(text),
            Some(secs * 1_000_000_000),
            "{text}"
        );
    }
    for text in ["", "4", "1.5s", "-3s", "250ms", "1h", "1m", "4s ", "1d4s"] {
        assert!(!duration_re.is_match(text), "{text}");
    }
}
