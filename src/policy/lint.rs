//! `lint`: what in a phase table would strand an object or a writer, found before the table
//! guards live objects. Pure: the caller loads the files and lists the stored objects.

use std::collections::{BTreeSet, VecDeque};

use super::Policy;
use super::transitions::PhaseMachine;

/// One thing wrong with a policy, in a line a person reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `unreachable`, `dead-end`, `removed`, `writer-cannot-move`, `stranded`.
    pub kind: &'static str,
    pub message: String,
}

fn finding(kind: &'static str, message: String) -> Finding {
    Finding { kind, message }
}

/// Phases reachable from the initial one through the table.
fn reachable(phases: &PhaseMachine) -> BTreeSet<&str> {
    let mut seen = BTreeSet::from([phases.initial.as_str()]);
    let mut queue = VecDeque::from([phases.initial.as_str()]);
    while let Some(from) = queue.pop_front() {
        for to in phases.legal_targets(from) {
            if seen.insert(to.as_str()) {
                queue.push_back(to);
            }
        }
    }
    seen
}

/// Whether a known, non-terminal phase has no way out.
pub fn dead_end(phases: &PhaseMachine, phase: &str) -> bool {
    phases.is_known(phase) && !phases.is_terminal(phase) && phases.legal_targets(phase).is_empty()
}

/// Findings on the table alone, and against the policy it replaces.
pub fn lint(policy: &Policy, against: Option<&Policy>) -> Vec<Finding> {
    let config = &policy.config;
    let phase = &config.phase;
    let reached = reachable(&policy.phases);
    let mut out = Vec::new();
    for value in &phase.values {
        if !reached.contains(value.as_str()) {
            out.push(finding(
                "unreachable",
                format!(
                    "no sequence of moves from the initial phase {} reaches {value}",
                    phase.initial
                ),
            ));
        }
        if dead_end(&policy.phases, value) {
            out.push(finding(
                "dead-end",
                format!(
                    "{value} is not terminal but has no way out: an object there stays forever"
                ),
            ));
        }
    }
    if let Some(old) = against {
        for value in &old.config.phase.values {
            if !policy.phases.is_known(value) {
                out.push(finding(
                    "removed",
                    format!("{value} is a phase of the policy it replaces but not of this one: stored objects in {value} are outside the table"),
                ));
            }
        }
    }
    let owners = config
        .fields
        .get(&phase.field)
        .unwrap_or(&config.default_field_owners);
    if owners.is_empty() {
        out.push(finding(
            "writer-cannot-move",
            format!(
                "no writer owns {}: only the moves in `moves` can ever happen",
                phase.field
            ),
        ));
    }
    for (writer, moves) in &config.moves {
        for m in moves {
            let from: Vec<&String> = m
                .from
                .iter()
                .filter(|f| reached.contains(f.as_str()))
                .collect();
            if from.is_empty() {
                out.push(finding(
                    "writer-cannot-move",
                    format!(
                        "{writer}'s move to {} starts from {}, which no object reaches",
                        m.to,
                        m.from.join(", ")
                    ),
                ));
            }
        }
    }
    out
}

/// A stored object's phase with no legal move under `config` (`name` is `namespace/name`).
pub fn stranded(policy: &Policy, name: &str, phase: &str) -> Option<Finding> {
    dead_end(&policy.phases, phase).then(|| {
        finding(
            "stranded",
            format!("{name} is in {phase}, which has no legal move under this policy"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Running has no way out (and the orchestrator's moves start from Pending only).
    const DEAD_END: &str = "phase:\n  transitions:\n    Pending: [Running, Failed]\n    Running: []\nmoves:\n  orchestrator:\n    - {from: [Pending], to: Failed, fields: [failureReason]}\n";

    fn config(yaml: &str) -> Policy {
        Policy::new(crate::config::Config::from_yaml(yaml).expect("loads")).expect("policy")
    }

    fn kinds(found: &[Finding]) -> Vec<&'static str> {
        found.iter().map(|f| f.kind).collect()
    }

    #[test]
    fn the_default_policy_is_clean() {
        let c = Policy::new(crate::config::Config::default()).expect("policy");
        assert_eq!(lint(&c, Some(&c)), vec![]);
    }

    #[test]
    fn each_broken_table_gets_its_finding() {
        let unreachable =
            config("phase:\n  values: [Pending, Running, Paused, Completed, Failed]\n");
        let found = lint(&unreachable, None);
        assert!(kinds(&found).contains(&"unreachable"), "{found:?}");
        assert!(
            found.iter().any(|f| f.message.contains("reaches Paused")),
            "{found:?}"
        );

        let dead_end = config(DEAD_END);
        let found = lint(&dead_end, None);
        assert_eq!(kinds(&found), ["dead-end", "unreachable"], "{found:?}");
        assert!(found[0].message.starts_with("Running is not terminal"));

        let smaller = config(
            "phase:\n  values: [Pending, Running, Done]\n  transitions:\n    Pending: [Running]\n    Running: [Done]\n  terminal: [Done]\nmoves:\n  orchestrator: []\nfields:\n  completionTime: [controller]\n  failureReason: [controller]\n  startTime: [controller]\n  duration: [controller]\n",
        );
        let default = Policy::new(crate::config::Config::default()).expect("policy");
        let found = lint(&smaller, Some(&default));
        assert_eq!(kinds(&found), ["removed", "removed"], "{found:?}");
        assert!(found[0].message.starts_with("Completed is a phase"));

        let nobody = config("fields:\n  phase: []\ndefaultFieldOwners: []\n");
        let found = lint(&nobody, None);
        assert!(kinds(&found).contains(&"writer-cannot-move"), "{found:?}");

        let late = config(
            "phase:\n  values: [Pending, Running, Held, Completed, Failed]\n  transitions:\n    Pending: [Running, Failed]\n    Running: [Completed, Failed]\n    Held: [Failed]\nmoves:\n  orchestrator:\n    - {from: [Held], to: Failed}\n",
        );
        let found = lint(&late, None);
        assert!(
            found.iter().any(|f| f.kind == "writer-cannot-move"
                && f.message
                    .contains("orchestrator's move to Failed starts from Held")),
            "{found:?}"
        );
    }

    #[test]
    fn only_objects_in_a_dead_end_are_stranded() {
        let c = config(DEAD_END);
        assert!(stranded(&c, "ns/a", "Running").is_some());
        for phase in ["Pending", "Completed", "Gone"] {
            assert!(stranded(&c, "ns/a", phase).is_none(), "{phase}");
        }
    }
}
