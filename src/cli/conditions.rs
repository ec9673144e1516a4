//! `wfe-admission match-conditions`: the built-in CEL match conditions for a policy, as the chart
//! renders them, for webhook configurations written by hand or patched after a policy change
//! outside Helm (the certificate modes in which the webhook cannot update them itself).

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;

use crate::policy::match_conditions::{
    MUTATE_MATCH_CONDITION, VALIDATE_MATCH_CONDITION, mutate_match_condition,
    validate_match_condition,
};

#[derive(Debug, clap::Args)]
pub struct MatchConditionsArgs {
    /// Policy file (YAML); defaults to the WorkflowExecution policy.
    #[arg(long, env = "WFE_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Prints `{"mutating": [...], "validating": [...]}`, each a `matchConditions` list. The mutating
/// list is empty when the policy has no controller to recognise (and needs Kubernetes 1.33).
pub fn run(args: MatchConditionsArgs) -> ExitCode {
    let policy = match super::load_policy(args.config.as_deref()) {
        Ok(p) => p,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let mutating: Vec<_> = mutate_match_condition(&policy.config)
        .map(|e| json!({"name": MUTATE_MATCH_CONDITION, "expression": e}))
        .into_iter()
        .collect();
    let out = json!({
        "mutating": mutating,
        "validating": [{"name": VALIDATE_MATCH_CONDITION,
            "expression": validate_match_condition(&policy.config)}],
    });
    match super::print_json(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}
