//! Typed configuration. The defaults are kubernaut's WorkflowExecution policy, so a plain
//! install needs no file; a YAML file (`--config`) overrides any part of it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Everything the policy can be told. Field names are the YAML keys (camelCase).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Config {
    /// The resource whose status updates are guarded.
    pub resource: GuardedResource,
    /// Further resources guarded by the same policy (same status shape).
    pub extra_resources: Vec<GuardedResource>,
    pub phase: PhaseConfig,
    /// Writer name -> how to recognise it from the request's user info.
    pub writers: BTreeMap<String, WriterMatch>,
    /// Writer name -> the phase moves it may make without owning the phase field, each with
    /// the fields it may set in that same write.
    pub moves: BTreeMap<String, Vec<WriterMove>>,
    /// Top-level status field -> writers that own it.
    pub fields: BTreeMap<String, Vec<String>>,
    /// Owners of status fields not listed in `fields`.
    pub default_field_owners: Vec<String>,
    pub conditions: ConditionsConfig,
    /// Fields that keep their first value.
    pub write_once: Vec<String>,
    pub derived: DerivedConfig,
    pub block_clearance: BlockClearanceConfig,
    pub events: EventsConfig,
    /// The by-name maps of this file are whole: they replace the defaults instead of merging
    /// with them (the Helm chart renders them so, from values that hold the defaults).
    pub replace_maps: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GuardedResource {
    pub group: String,
    /// Version the webhook's own writes use (requests of any version are guarded).
    #[serde(default = "default_version")]
    pub version: String,
    #[serde(default = "default_kind")]
    pub kind: String,
    pub resource: String,
    #[serde(default = "default_subresource")]
    pub subresource: String,
}

fn default_subresource() -> String {
    "status".into()
}

fn default_version() -> String {
    "v1alpha1".into()
}

fn default_kind() -> String {
    "WorkflowExecution".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PhaseConfig {
    /// Status field that holds the phase.
    pub field: String,
    /// What an absent or empty phase means.
    pub initial: String,
    /// Every legal value.
    pub values: Vec<String>,
    /// from -> legal targets. Staying in the same phase is always legal.
    pub transitions: BTreeMap<String, Vec<String>>,
    /// Phases that stamp `completionTime` when entered; they have no way out.
    pub terminal: Vec<String>,
    /// The phase that stamps `startTime` when entered.
    pub running: String,
}

/// How a writer is recognised. A request matches when any user pattern or any group matches;
/// `anyOtherUser` matches every authenticated user that no other writer matched.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WriterMatch {
    /// Exact user names; `*` matches any run of characters within one `:`-separated segment.
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub any_other_user: bool,
}

/// A phase move granted to a writer that does not own the phase (e.g. an orchestrator that fails
/// a child when its parent ends), with the fields that move may carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WriterMove {
    pub from: Vec<String>,
    pub to: String,
    #[serde(default)]
    pub fields: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ConditionsConfig {
    /// Status field that holds the conditions list.
    pub field: String,
    /// Condition type -> writers that own it.
    pub owners: BTreeMap<String, Vec<String>>,
    /// Owners of condition types not listed (older or future types are kept, never dropped).
    pub default_owners: Vec<String>,
    /// Types that their owner may remove; every other type, once present, stays.
    pub removable: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DerivedConfig {
    pub start_time: String,
    pub completion_time: String,
    pub duration: String,
    /// Deprecated mirror field and the object/key it mirrors.
    pub failure_reason: String,
    pub failure_details: String,
    pub failure_details_reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct BlockClearanceConfig {
    pub field: String,
    pub cleared_by: String,
    pub cleared_at: String,
    pub reason: String,
    /// A clearance whose reason has fewer words is denied.
    pub min_reason_words: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Record denials as Events.
    pub denials: bool,
    /// Record mutating corrections (`StatusFieldRestored`) as Events.
    pub corrections: bool,
    /// Also record the latest denial as a status condition through the status manager.
    pub rejection_condition: bool,
    /// Type of that condition (owned by the webhook writer).
    pub rejection_condition_type: String,
}

pub const CONTROLLER: &str = "controller";
pub const EXECUTOR: &str = "executor";
pub const OPERATOR: &str = "operator";
pub const WEBHOOK: &str = "webhook";
pub const ORCHESTRATOR: &str = "orchestrator";

/// kubernaut's RemediationOrchestrator, in any namespace.
pub const ORCHESTRATOR_USER: &str = "system:serviceaccount:*:remediationorchestrator-controller";

/// The maps a partial file merges into the defaults by key instead of replacing them.
const MERGED_MAPS: [&[&str]; 4] = [
    &["writers"],
    &["fields"],
    &["conditions", "owners"],
    &["moves"],
];

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_string()).collect()
}

impl Default for GuardedResource {
    fn default() -> Self {
        Self {
            group: "kubernaut.ai".into(),
            version: default_version(),
            kind: default_kind(),
            resource: "workflowexecutions".into(),
            subresource: default_subresource(),
        }
    }
}

impl Default for PhaseConfig {
    fn default() -> Self {
        Self {
            field: "phase".into(),
            initial: "Pending".into(),
            values: strings(&["Pending", "Running", "Completed", "Failed"]),
            transitions: BTreeMap::from([
                ("Pending".into(), strings(&["Running", "Failed"])),
                ("Running".into(), strings(&["Completed", "Failed"])),
            ]),
            terminal: strings(&["Completed", "Failed"]),
            running: "Running".into(),
        }
    }
}

/// kubernaut's condition types (the last four from older clusters), all the controller's.
pub const CONDITION_TYPES: [&str; 10] = [
    "Ready",
    "ExecutionCreated",
    "ExecutionRunning",
    "ExecutionComplete",
    "AuditRecorded",
    "TokenTTLInsufficient",
    "TektonPipelineCreated",
    "TektonPipelineRunning",
    "TektonPipelineComplete",
    "ResourceLocked",
];

impl Default for ConditionsConfig {
    fn default() -> Self {
        let mut owners: BTreeMap<String, Vec<String>> = CONDITION_TYPES
            .iter()
            .map(|t| ((*t).to_string(), strings(&[CONTROLLER])))
            .collect();
        owners.insert(
            EventsConfig::default().rejection_condition_type,
            strings(&[WEBHOOK]),
        );
        Self {
            field: "conditions".into(),
            owners,
            default_owners: strings(&[CONTROLLER]),
            removable: Vec::new(),
        }
    }
}

impl Default for DerivedConfig {
    fn default() -> Self {
        Self {
            start_time: "startTime".into(),
            completion_time: "completionTime".into(),
            duration: "duration".into(),
            failure_reason: "failureReason".into(),
            failure_details: "failureDetails".into(),
            failure_details_reason: "reason".into(),
        }
    }
}

impl Default for BlockClearanceConfig {
    fn default() -> Self {
        Self {
            field: "blockClearance".into(),
            cleared_by: "clearedBy".into(),
            cleared_at: "clearedAt".into(),
            reason: "clearReason".into(),
            min_reason_words: 10,
        }
    }
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            denials: true,
            corrections: true,
            rejection_condition: false,
            rejection_condition_type: "AdmissionRejected".into(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        let controller_sa = "system:serviceaccount:*:workflowexecution-controller";
        let writers = BTreeMap::from([
            (
                CONTROLLER.into(),
                WriterMatch {
                    users: strings(&[controller_sa]),
                    ..WriterMatch::default()
                },
            ),
            // The executor runs inside the controller's process by default.
            (
                EXECUTOR.into(),
                WriterMatch {
                    users: strings(&[controller_sa]),
                    ..WriterMatch::default()
                },
            ),
            (
                OPERATOR.into(),
                WriterMatch {
                    any_other_user: true,
                    ..WriterMatch::default()
                },
            ),
            (
                WEBHOOK.into(),
                WriterMatch {
                    users: strings(&["system:serviceaccount:wfe-system:wfe-admission"]),
                    ..WriterMatch::default()
                },
            ),
            (
                ORCHESTRATOR.into(),
                WriterMatch {
                    users: strings(&[ORCHESTRATOR_USER]),
                    ..WriterMatch::default()
                },
            ),
        ]);
        // Its cascade fails a child that is not finished yet, with a reason and nothing else.
        let moves = BTreeMap::from([(
            ORCHESTRATOR.into(),
            vec![WriterMove {
                from: strings(&["Pending", "Running"]),
                to: "Failed".into(),
                fields: strings(&["failureReason"]),
            }],
        )]);
        let controller = strings(&[CONTROLLER]);
        // The webhook co-owns the derived fields so that `repair` may fill them in.
        let controller_and_webhook = strings(&[CONTROLLER, WEBHOOK]);
        let mut fields: BTreeMap<String, Vec<String>> = [
            "observedGeneration",
            "phase",
            "executionRef",
            "executionStatus",
            "failureDetails",
            "deduplicatedBy",
        ]
        .iter()
        .map(|f| ((*f).to_string(), controller.clone()))
        .collect();
        for f in ["startTime", "completionTime", "duration", "failureReason"] {
            fields.insert(f.into(), controller_and_webhook.clone());
        }
        fields.insert("ephemeralCredentialIDs".into(), strings(&[EXECUTOR]));
        fields.insert("blockClearance".into(), strings(&[OPERATOR]));
        Self {
            resource: GuardedResource::default(),
            extra_resources: Vec::new(),
            phase: PhaseConfig::default(),
            writers,
            moves,
            fields,
            default_field_owners: controller,
            conditions: ConditionsConfig::default(),
            write_once: strings(&[
                "startTime",
                "completionTime",
                "failureDetails",
                "deduplicatedBy",
            ]),
            derived: DerivedConfig::default(),
            block_clearance: BlockClearanceConfig::default(),
            events: EventsConfig::default(),
            replace_maps: false,
        }
    }
}

/// A configuration that cannot be used; the message names the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid YAML: {message}")]
    Yaml { path: String, message: String },
    #[error("config file {path}: key `{key}`: {message}")]
    Key {
        path: String,
        key: String,
        message: String,
    },
    #[error("config: key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

/// Merges the by-name maps of a file (`writers`, `fields`, `conditions.owners`, `moves`) into
/// the defaults: a key the file names replaces that entry, a key set to `null` removes it, and
/// every other default entry stays.
fn merge_maps(mut value: serde_json::Value) -> Result<serde_json::Value, ConfigError> {
    use serde_json::Value;
    if value.get("replaceMaps") == Some(&Value::Bool(true)) {
        return Ok(value);
    }
    let defaults = serde_json::to_value(Config::default()).map_err(|e| ConfigError::Invalid {
        key: String::new(),
        message: e.to_string(),
    })?;
    for path in MERGED_MAPS {
        let pointer: String = path.iter().map(|k| format!("/{k}")).collect();
        // Only a map the file gives at the full path merges; a wrong type is left for serde to
        // report with its key.
        let (Some(Value::Object(given)), Some(Value::Object(base))) =
            (value.pointer_mut(&pointer), defaults.pointer(&pointer))
        else {
            continue;
        };
        let mut merged = base.clone();
        for (k, v) in std::mem::take(given) {
            if v.is_null() {
                merged.remove(&k);
            } else {
                merged.insert(k, v);
            }
        }
        *given = merged;
    }
    Ok(value)
}

impl Config {
    /// Reads a YAML (or JSON) file; keys it leaves out keep their defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::from_yaml(&text).map_err(|e| match e {
            ConfigError::Yaml { message, .. } => ConfigError::Yaml {
                path: shown,
                message,
            },
            ConfigError::Key { key, message, .. } => ConfigError::Key {
                path: shown,
                key,
                message,
            },
            other => other,
        })
    }

    /// Parses YAML text; an empty document is the default configuration.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let value: serde_json::Value =
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Yaml {
                path: String::new(),
                message: e.to_string(),
            })?;
        let value = if value.is_null() {
            serde_json::Value::Object(Default::default())
        } else {
            merge_maps(value)?
        };
        let config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Key {
                path: String::new(),
                key,
                message: e.into_inner().to_string(),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: names that must refer to each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| Err(ConfigError::Invalid { key, message });
        let phase = &self.phase;
        if phase.values.is_empty() {
            return invalid("phase.values".into(), "must list at least one phase".into());
        }
        let known_phase = |p: &str| phase.values.iter().any(|v| v == p);
        if !known_phase(&phase.initial) {
            return invalid(
                "phase.initial".into(),
                format!("`{}` is not one of phase.values", phase.initial),
            );
        }
        if !known_phase(&phase.running) {
            return invalid(
                "phase.running".into(),
                format!("`{}` is not one of phase.values", phase.running),
            );
        }
        for (from, targets) in &phase.transitions {
            if !known_phase(from) {
                return invalid(
                    format!("phase.transitions.{from}"),
                    format!("`{from}` is not one of phase.values"),
                );
            }
            for to in targets {
                if !known_phase(to) {
                    return invalid(
                        format!("phase.transitions.{from}"),
                        format!("target `{to}` is not one of phase.values"),
                    );
                }
            }
        }
        for t in &phase.terminal {
            if !known_phase(t) {
                return invalid(
                    "phase.terminal".into(),
                    format!("`{t}` is not one of phase.values"),
                );
            }
            if phase.transitions.get(t).is_some_and(|v| !v.is_empty()) {
                return invalid(
                    format!("phase.transitions.{t}"),
                    format!("`{t}` is terminal and cannot have outgoing transitions"),
                );
            }
        }
        if self.writers.len() > 64 {
            return invalid("writers".into(), "at most 64 writers".into());
        }
        for (name, m) in &self.writers {
            if m.users.is_empty() && m.groups.is_empty() && !m.any_other_user {
                return invalid(
                    format!("writers.{name}"),
                    "matches nobody: give users, groups or anyOtherUser".into(),
                );
            }
        }
        let known_writer = |w: &str| self.writers.contains_key(w);
        let owner_lists = self
            .fields
            .iter()
            .map(|(f, o)| (format!("fields.{f}"), o))
            .chain(
                self.conditions
                    .owners
                    .iter()
                    .map(|(t, o)| (format!("conditions.owners.{t}"), o)),
            )
            .chain(std::iter::once((
                "defaultFieldOwners".to_string(),
                &self.default_field_owners,
            )))
            .chain(std::iter::once((
                "conditions.defaultOwners".to_string(),
                &self.conditions.default_owners,
            )));
        let unknown_writer = |w: &str| {
            format!(
                "unknown writer `{w}` (not under `writers`): add `writers.{w}: {{users: [...]}}` \
                 (or `groups`, or `anyOtherUser: true`), or name one of {}",
                self.writers.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        };
        for (key, owners) in owner_lists {
            if let Some(w) = owners.iter().find(|w| !known_writer(w)) {
                return invalid(key, unknown_writer(w));
            }
        }
        for (writer, moves) in &self.moves {
            if !known_writer(writer) {
                return invalid(format!("moves.{writer}"), unknown_writer(writer));
            }
            for (i, m) in moves.iter().enumerate() {
                let key = format!("moves.{writer}[{i}]");
                if m.from.is_empty() {
                    return invalid(key, "`from` must list at least one phase".into());
                }
                for from in &m.from {
                    let legal = phase
                        .transitions
                        .get(from)
                        .is_some_and(|t| t.contains(&m.to));
                    if !legal {
                        return invalid(
                            key,
                            format!(
                                "`{from} → {}` is not a legal move of phase.transitions; a writer \
                                 can only be given moves the table allows",
                                m.to
                            ),
                        );
                    }
                }
                if let Some(f) = m.fields.iter().find(|f| f.is_empty() || **f == phase.field) {
                    return invalid(
                        key,
                        format!("`fields` may not name `{f}`: the move itself sets the phase"),
                    );
                }
            }
        }
        let names = [
            ("phase.field", &phase.field),
            ("conditions.field", &self.conditions.field),
            ("derived.startTime", &self.derived.start_time),
            ("derived.completionTime", &self.derived.completion_time),
            ("derived.duration", &self.derived.duration),
            ("derived.failureReason", &self.derived.failure_reason),
            ("derived.failureDetails", &self.derived.failure_details),
            (
                "derived.failureDetailsReason",
                &self.derived.failure_details_reason,
            ),
            ("blockClearance.field", &self.block_clearance.field),
            ("blockClearance.clearedBy", &self.block_clearance.cleared_by),
            ("blockClearance.clearedAt", &self.block_clearance.cleared_at),
            ("blockClearance.reason", &self.block_clearance.reason),
            ("resource.group", &self.resource.group),
            ("resource.resource", &self.resource.resource),
        ];
        for (key, value) in names {
            // The group of core resources is empty, every other name is required.
            if value.is_empty() && key != "resource.group" {
                return invalid(key.into(), "must not be empty".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_roundtrip_through_yaml() {
        let config = Config::default();
        config.validate().expect("defaults valid");
        let yaml = serde_json::to_string(&config).expect("serialise");
        assert_eq!(Config::from_yaml(&yaml).expect("parse"), config);
    }

    #[test]
    fn empty_file_is_the_default_policy() {
        assert_eq!(Config::from_yaml("").expect("parse"), Config::default());
    }

    #[test]
    fn partial_file_keeps_other_defaults() {
        let config = Config::from_yaml("blockClearance:\n  minReasonWords: 3\n").expect("parse");
        assert_eq!(config.block_clearance.min_reason_words, 3);
        assert_eq!(config.block_clearance.field, "blockClearance");
        assert_eq!(config.phase, PhaseConfig::default());
    }

    #[test]
    fn a_file_naming_one_writer_keeps_the_other_writers() {
        let config = Config::from_yaml(
            "writers:\n  controller: {users: ['system:serviceaccount:ops:my-controller']}\n",
        )
        .expect("a partial writers map loads");
        assert_eq!(
            config.writers["controller"].users,
            vec!["system:serviceaccount:ops:my-controller".to_string()]
        );
        let defaults = Config::default();
        for name in [EXECUTOR, OPERATOR, WEBHOOK, ORCHESTRATOR] {
            assert_eq!(config.writers[name], defaults.writers[name], "{name}");
        }
        assert_eq!(config.fields, defaults.fields);
    }

    #[test]
    fn fields_condition_owners_and_moves_merge_by_name() {
        let config = Config::from_yaml(
            "fields:\n  ephemeralCredentialIDs: [controller]\n\
             conditions:\n  owners:\n    Ready: [operator]\n\
             moves:\n  operator: [{from: [Running], to: Failed}]\n",
        )
        .expect("partial maps load");
        let defaults = Config::default();
        assert_eq!(config.fields["ephemeralCredentialIDs"], vec!["controller"]);
        assert_eq!(
            config.fields["blockClearance"],
            defaults.fields["blockClearance"]
        );
        assert_eq!(config.fields.len(), defaults.fields.len());
        assert_eq!(config.conditions.owners["Ready"], vec!["operator"]);
        assert_eq!(
            config.conditions.owners["ExecutionComplete"],
            defaults.conditions.owners["ExecutionComplete"]
        );
        assert_eq!(config.conditions.field, "conditions");
        assert_eq!(config.moves["operator"][0].to, "Failed");
        assert_eq!(config.moves[ORCHESTRATOR], defaults.moves[ORCHESTRATOR]);
    }

    #[test]
    fn replace_maps_takes_the_maps_whole() {
        let config = Config::from_yaml(
            "replaceMaps: true\nwriters:\n  controller: {users: [c]}\n  operator: {anyOtherUser: true}\n\
             fields: {blockClearance: [operator]}\nconditions:\n  owners: {}\nmoves: {}\n",
        )
        .expect("loads");
        assert_eq!(config.writers.len(), 2);
        assert_eq!(config.fields.len(), 1);
        assert!(config.conditions.owners.is_empty() && config.moves.is_empty());
    }

    #[test]
    fn null_removes_a_default_entry() {
        let config = Config::from_yaml("moves:\n  orchestrator: null\n").expect("loads");
        assert!(config.moves.is_empty());
        let config = Config::from_yaml("fields:\n  deduplicatedBy: ~\n").expect("loads");
        assert!(!config.fields.contains_key("deduplicatedBy"));
    }

    #[test]
    fn removing_a_writer_still_named_says_what_to_write() {
        let err = Config::from_yaml("writers:\n  operator: null\n").expect_err("fails");
        let text = err.to_string();
        assert!(text.contains("fields.blockClearance"), "{text}");
        assert!(
            text.contains("add `writers.operator: {users: [...]}`"),
            "{text}"
        );
    }

    #[test]
    fn a_move_outside_the_table_is_refused() {
        let err = Config::from_yaml("moves:\n  operator: [{from: [Completed], to: Running}]\n")
            .expect_err("fails");
        let text = err.to_string();
        assert!(
            text.contains("moves.operator[0]") && text.contains("Completed → Running"),
            "{text}"
        );
        let err = Config::from_yaml("moves:\n  robot: [{from: [Running], to: Failed}]\n")
            .expect_err("fails");
        assert!(err.to_string().contains("moves.robot"), "{err}");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_yaml("phase:\n  feild: x\n").expect_err("must fail");
        let text = err.to_string();
        assert!(text.contains("phase"), "{text}");
        assert!(text.contains("feild"), "{text}");
    }

    #[test]
    fn wrong_type_is_named_with_its_path() {
        let err = Config::from_yaml("blockClearance:\n  minReasonWords: many\n").expect_err("fail");
        assert!(
            err.to_string().contains("blockClearance.minReasonWords"),
            "{err}"
        );
    }

    #[test]
    fn unknown_writer_is_named() {
        let err = Config::from_yaml("fields:\n  phase: [robot]\n").expect_err("fail");
        let text = err.to_string();
        assert!(
            text.contains("fields.phase") && text.contains("robot"),
            "{text}"
        );
    }

    #[test]
    fn terminal_with_way_out_is_rejected() {
        let err = Config::from_yaml("phase:\n  transitions:\n    Completed: [Running]\n")
            .expect_err("fail");
        assert!(
            err.to_string().contains("phase.transitions.Completed"),
            "{err}"
        );
    }

    #[test]
    fn unknown_transition_target_is_rejected() {
        let err =
            Config::from_yaml("phase:\n  transitions:\n    Pending: [Paused]\n").expect_err("fail");
        assert!(err.to_string().contains("Paused"), "{err}");
    }

    #[test]
    fn invalid_yaml_is_reported() {
        let err = Config::from_yaml("phase: [unclosed\n").expect_err("fail");
        assert!(matches!(err, ConfigError::Yaml { .. }), "{err}");
    }
}
