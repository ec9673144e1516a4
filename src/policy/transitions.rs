//! The phase state machine.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::config::PhaseConfig;

/// What a status says about its phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseValue<'a> {
    /// No phase key, or `null`.
    Absent,
    /// A string (possibly empty, possibly outside the enum).
    Text(&'a str),
    /// Any other JSON type.
    NotAString,
}

impl<'a> PhaseValue<'a> {
    pub fn read(status: Option<&'a Map<String, Value>>, field: &str) -> Self {
        match status.and_then(|s| s.get(field)) {
            None | Some(Value::Null) => PhaseValue::Absent,
            Some(Value::String(s)) => PhaseValue::Text(s),
            Some(_) => PhaseValue::NotAString,
        }
    }
}

/// Why a move is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitionError {
    /// The new phase is not one of the legal values.
    UnknownPhase { value: String, legal: Vec<String> },
    /// The move is not in the table.
    Illegal {
        from: String,
        to: String,
        legal: Vec<String>,
    },
}

impl TransitionError {
    /// What was refused, e.g. `illegal phase transition Completed → Running`.
    pub fn what(&self) -> String {
        match self {
            TransitionError::UnknownPhase { value, .. } => format!("unknown phase {value:?}"),
            TransitionError::Illegal { from, to, .. } => {
                format!("illegal phase transition {from} → {to}")
            }
        }
    }

    /// What would have been legal.
    pub fn hint(&self) -> String {
        match self {
            TransitionError::UnknownPhase { legal, .. } => {
                format!("the phases are {}", legal.join(", "))
            }
            TransitionError::Illegal { from, legal, .. } if legal.is_empty() => {
                format!("{from} is terminal, it can only stay {from}")
            }
            TransitionError::Illegal { from, legal, .. } => {
                format!("from {from} the legal moves are to {}", legal.join(", "))
            }
        }
    }
}

impl std::fmt::Display for TransitionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; {}", self.what(), self.hint())
    }
}

/// The compiled phase table.
#[derive(Debug, Clone)]
pub struct PhaseMachine {
    pub field: String,
    pub initial: String,
    pub running: String,
    values: Vec<String>,
    transitions: HashMap<String, Vec<String>>,
    terminal: Vec<String>,
}

impl PhaseMachine {
    pub fn new(config: &PhaseConfig) -> Self {
        Self {
            field: config.field.clone(),
            initial: config.initial.clone(),
            running: config.running.clone(),
            values: config.values.clone(),
            transitions: config
                .transitions
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            terminal: config.terminal.clone(),
        }
    }

    pub fn is_known(&self, phase: &str) -> bool {
        self.values.iter().any(|v| v == phase)
    }

    pub fn is_terminal(&self, phase: &str) -> bool {
        self.terminal.iter().any(|v| v == phase)
    }

    /// Where a phase may go (besides staying).
    pub fn legal_targets(&self, from: &str) -> &[String] {
        self.transitions.get(from).map(Vec::as_slice).unwrap_or(&[])
    }

    /// A known phase `from` may not move to (`verify` asks the API server for one, expecting a
    /// denial); none when `from` is unknown or may move anywhere.
    pub fn illegal_target(&self, from: &str) -> Option<&str> {
        self.values
            .iter()
            .map(String::as_str)
            .find(|to| self.check(from, to).is_err())
    }

    /// The stored phase: absent or empty means the initial phase.
    pub fn current<'a>(&'a self, old: PhaseValue<'a>) -> &'a str {
        match old {
            PhaseValue::Text(s) if !s.is_empty() => s,
            _ => &self.initial,
        }
    }

    /// The phase the writer asks for: absence is not intent, so it keeps `current`.
    /// An empty string is the initial phase.
    pub fn requested<'a>(&'a self, current: &'a str, new: PhaseValue<'a>) -> Option<&'a str> {
        match new {
            PhaseValue::Absent => Some(current),
            PhaseValue::Text("") => Some(&self.initial),
            PhaseValue::Text(s) => Some(s),
            PhaseValue::NotAString => None,
        }
    }

    /// Checks one move. Staying is always legal; a stored phase outside the enum (written before
    /// this policy was installed) may move to any known phase so that it can be repaired.
    pub fn check(&self, from: &str, to: &str) -> Result<(), TransitionError> {
        if from == to {
            return Ok(());
        }
        if !self.is_known(to) {
            return Err(TransitionError::UnknownPhase {
                value: to.to_string(),
                legal: self.values.clone(),
            });
        }
        if !self.is_known(from) || self.legal_targets(from).iter().any(|t| t == to) {
            return Ok(());
        }
        Err(TransitionError::Illegal {
            from: from.to_string(),
            to: to.to_string(),
            legal: self.legal_targets(from).to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn machine() -> PhaseMachine {
        PhaseMachine::new(&PhaseConfig::default())
    }

    const PHASES: [&str; 4] = ["Pending", "Running", "Completed", "Failed"];

    #[test]
    fn exactly_the_four_spec_moves_are_legal() {
        let m = machine();
        let legal = [
            ("Pending", "Running"),
            ("Pending", "Failed"),
            ("Running", "Completed"),
            ("Running", "Failed"),
        ];
        for from in PHASES {
            for to in PHASES {
                let expected = from == to || legal.contains(&(from, to));
                assert_eq!(m.check(from, to).is_ok(), expected, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn an_illegal_target_is_found_for_each_known_phase() {
        let m = machine();
        for (from, to) in [
            ("Pending", Some("Completed")),
            ("Running", Some("Pending")),
            ("Completed", Some("Pending")),
            ("Failed", Some("Pending")),
            ("Paused", None),
        ] {
            assert_eq!(m.illegal_target(from), to, "{from}");
        }
        // A table where one phase may go anywhere has no illegal target from it.
        let mut config = PhaseConfig::default();
        config.transitions.insert(
            "Pending".into(),
            vec!["Running".into(), "Completed".into(), "Failed".into()],
        );
        assert_eq!(PhaseMachine::new(&config).illegal_target("Pending"), None);
    }

    #[test]
    fn illegal_moves_explain_what_was_legal() {
        let m = machine();
        let err = m.check("Completed", "Running").expect_err("illegal");
        assert_eq!(
            err.to_string(),
            "illegal phase transition Completed → Running; Completed is terminal, it can only stay Completed"
        );
        let err = m.check("Running", "Pending").expect_err("illegal");
        assert_eq!(
            err.to_string(),
            "illegal phase transition Running → Pending; from Running the legal moves are to Completed, Failed"
        );
        assert!(m.check("Pending", "Completed").is_err());
        assert!(m.check("Failed", "Completed").is_err());
    }

    #[test]
    fn unknown_values_are_refused() {
        let m = machine();
        let err = m.check("Running", "Paused").expect_err("unknown");
        assert!(matches!(err, TransitionError::UnknownPhase { .. }));
        assert_eq!(
            err.to_string(),
            "unknown phase \"Paused\"; the phases are Pending, Running, Completed, Failed"
        );
        // Case matters: the enum is exact.
        assert!(m.check("Pending", "running").is_err());
    }

    #[test]
    fn stored_garbage_can_be_repaired() {
        let m = machine();
        assert!(m.check("Paused", "Running").is_ok());
        assert!(m.check("Paused", "Paused").is_ok());
    }

    #[test]
    fn empty_and_absent_old_phase_is_pending() {
        let m = machine();
        let empty = json!({"phase": ""});
        let none = json!({});
        assert_eq!(
            m.current(PhaseValue::read(empty.as_object(), "phase")),
            "Pending"
        );
        assert_eq!(
            m.current(PhaseValue::read(none.as_object(), "phase")),
            "Pending"
        );
        assert_eq!(m.current(PhaseValue::read(None, "phase")), "Pending");
    }

    #[test]
    fn absent_new_phase_keeps_the_old_one_and_empty_means_pending() {
        let m = machine();
        assert_eq!(m.requested("Running", PhaseValue::Absent), Some("Running"));
        assert_eq!(
            m.requested("Running", PhaseValue::Text("")),
            Some("Pending")
        );
        assert_eq!(m.requested("Running", PhaseValue::NotAString), None);
        let status = json!({"phase": 3});
        assert_eq!(
            PhaseValue::read(status.as_object(), "phase"),
            PhaseValue::NotAString
        );
        let status = json!({"phase": null});
        assert_eq!(
            PhaseValue::read(status.as_object(), "phase"),
            PhaseValue::Absent
        );
    }
}
