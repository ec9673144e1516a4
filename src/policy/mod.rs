//! Pure decisions: no IO, no clock (callers pass `now`), no async.

pub mod combine;
pub mod lint;
pub mod match_conditions;
pub mod object;
pub mod patch;
pub mod reads;
pub mod review;
pub mod time;
pub mod transitions;
pub mod writers;

use std::collections::{HashMap, HashSet};

use crate::config::{Config, ConfigError, GuardedResource};
use transitions::PhaseMachine;
use writers::{WriterTable, Writers};

/// The configuration compiled for fast decisions.
#[derive(Debug, Clone)]
pub struct Policy {
    pub config: Config,
    pub phases: PhaseMachine,
    pub writers: WriterTable,
    field_owners: HashMap<String, Writers>,
    default_field_owners: Writers,
    condition_owners: HashMap<String, Writers>,
    default_condition_owners: Writers,
    removable: HashSet<String>,
    moves: Vec<(Writers, crate::config::WriterMove)>,
}

/// Who is writing: the user name the API server authenticated and the writers it matches.
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    pub user: &'a str,
    pub roles: Writers,
}

impl Policy {
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        let writers = WriterTable::new(config.writers.iter());
        let set = |names: &Vec<String>| writers.set(names);
        let field_owners = config
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), set(v)))
            .collect();
        let condition_owners = config
            .conditions
            .owners
            .iter()
            .map(|(k, v)| (k.clone(), set(v)))
            .collect();
        Ok(Self {
            phases: PhaseMachine::new(&config.phase),
            default_field_owners: set(&config.default_field_owners),
            default_condition_owners: set(&config.conditions.default_owners),
            removable: config.conditions.removable.iter().cloned().collect(),
            moves: config
                .moves
                .iter()
                .flat_map(|(w, moves)| {
                    let who = writers.set(std::slice::from_ref(w));
                    moves.iter().map(move |m| (who, m.clone()))
                })
                .collect(),
            field_owners,
            condition_owners,
            writers,
            config,
        })
    }

    /// Resolves the requesting user to writers.
    pub fn writer<'a>(&self, user: &'a str, groups: &[String]) -> Writer<'a> {
        Writer {
            user,
            roles: self.writers.identify(user, groups),
        }
    }

    pub fn field_owners(&self, field: &str) -> Writers {
        self.field_owners
            .get(field)
            .copied()
            .unwrap_or(self.default_field_owners)
    }

    pub fn condition_owners(&self, condition_type: &str) -> Writers {
        self.condition_owners
            .get(condition_type)
            .copied()
            .unwrap_or(self.default_condition_owners)
    }

    /// When `from → to` is a move granted to one of `roles` (`moves`), the fields that write
    /// may set besides the phase; `None` when no such move is granted.
    pub fn granted_move(&self, roles: Writers, from: &str, to: &str) -> Option<Vec<&str>> {
        let mut granted = None;
        for (who, m) in &self.moves {
            if roles.intersects(*who) && m.to == to && m.from.iter().any(|f| f == from) {
                granted
                    .get_or_insert_with(Vec::new)
                    .extend(m.fields.iter().map(String::as_str));
            }
        }
        granted
    }

    /// The moves granted to `roles`, worded for a message (`Pending, Running → Failed`).
    pub fn granted_moves_text(&self, roles: Writers) -> Option<String> {
        let text: Vec<String> = self
            .moves
            .iter()
            .filter(|(who, _)| roles.intersects(*who))
            .map(|(_, m)| format!("{} → {}", m.from.join(", "), m.to))
            .collect();
        (!text.is_empty()).then(|| text.join("; "))
    }

    pub fn removable(&self, condition_type: &str) -> bool {
        self.removable.contains(condition_type)
    }

    /// The resources this policy guards: the main one, then `extraResources`.
    pub fn resources(&self) -> impl Iterator<Item = &GuardedResource> {
        std::iter::once(&self.config.resource).chain(&self.config.extra_resources)
    }

    /// Whether this policy guards `group/resource/subresource` (any version: matchPolicy
    /// Equivalent may send another version of the same resource).
    pub fn guards(&self, group: &str, resource: &str, subresource: Option<&str>) -> bool {
        self.resources().any(|r| {
            r.group == group
                && r.resource == resource
                && subresource == Some(r.subresource.as_str())
        })
    }
}

#[cfg(test)]
mod tests;
