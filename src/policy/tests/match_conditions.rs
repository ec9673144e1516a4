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
    // Not the phase, the clearance, write-once or derived fields; any field nobody is listed
    // for (the controller is the default owner).
    assert!(
        default.contains(
            "|| k in ['executionRef', 'executionStatus', 'observedGeneration'] || !(k in \
             ['blockClearance', 'completionTime', 'conditions', 'deduplicatedBy', 'duration', \
             'ephemeralCredentialIDs', 'executionRef', 'executionStatus', 'failureDetails', \
             'failureReason', 'observedGeneration', 'phase', 'startTime'])))"
        ),
        "{default}"
    );
    assert!(
        default.contains(
            "c['type'] in ['AuditRecorded', 'ExecutionComplete', 'ExecutionCreated', \
             'ExecutionRunning', 'Ready', 'ResourceLocked', 'TektonPipelineComplete', \
             'TektonPipelineCreated', 'TektonPipelineRunning', 'TokenTTLInsufficient'] || \
             !(c['type'] in ['AdmissionRejected', "
        ),
        "{default}"
    );

    // Owners elsewhere: nothing unlisted may differ, and the executor's field never does.
    let mut config = Config {
        default_field_owners: vec!["executor".into()],
        write_once: Vec::new(),
        ..Config::default()
    };
    config.conditions.default_owners = vec!["executor".into()];
    let custom = mutate(&config);
    assert!(
        custom.contains(
            "|| k in ['deduplicatedBy', 'executionRef', 'executionStatus', 'failureDetails', \
             'observedGeneration'])) && "
        ),
        "{custom}"
    );
    assert!(!custom.contains("!(c['type'] in"), "{custom}");
}
