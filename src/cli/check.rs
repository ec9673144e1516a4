//! `wfe-admission check`: the verdict for an UPDATE of the status from OLD to NEW, exactly as the
//! two webhooks would give it (mutating pass, then validating pass on the mutated object).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use jiff::Timestamp;
use kube::core::DynamicObject;
use serde_json::Value;

use crate::offline::{self, Outcome};

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The stored object (YAML or JSON).
    #[arg(long)]
    pub old: PathBuf,
    /// The object the writer sends (YAML or JSON).
    #[arg(long)]
    pub new: PathBuf,
    /// The writer's user name as the API server would authenticate it.
    #[arg(
        long,
        env = "WFE_CHECK_USER",
        default_value = "system:serviceaccount:kubernaut-system:workflowexecution-controller"
    )]
    pub user: String,
    /// The writer's groups; repeat the flag.
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// Policy file (YAML); defaults to the WorkflowExecution policy.
    #[arg(long, env = "WFE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The time the webhook sees as now (RFC 3339); defaults to the wall clock.
    #[arg(long)]
    pub now: Option<Timestamp>,
}

fn read_object(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value: Value = serde_saphyr::from_str(&text)
        .map_err(|e| format!("{} is not valid YAML or JSON: {e}", path.display()))?;
    if !value.is_object() {
        return Err(format!("{} must hold one object", path.display()));
    }
    Ok(value)
}

fn dynamic(value: Value, path: &Path) -> Result<DynamicObject, String> {
    serde_json::from_value(value)
        .map_err(|e| format!("{} is not a Kubernetes object: {e}", path.display()))
}

pub fn run(args: CheckArgs) -> ExitCode {
    match check(&args) {
        Ok(outcome) => {
            if let Err(message) = super::print_json(&outcome) {
                eprintln!("error: {message}");
                return ExitCode::from(2);
            }
            if outcome.allowed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn check(args: &CheckArgs) -> Result<Outcome, String> {
    let policy = super::load_policy(args.config.as_deref())?;
    let old = read_object(&args.old)?;
    let new = read_object(&args.new)?;
    // Both must read as Kubernetes objects, like the API server would have them.
    dynamic(old.clone(), &args.old)?;
    dynamic(new.clone(), &args.new)?;
    let write = offline::Write {
        old,
        new,
        user: &args.user,
        groups: &args.groups,
        dry_run: false,
    };
    let req = offline::request(&policy, write)?;
    offline::evaluate(&policy, req, args.now.unwrap_or_else(Timestamp::now))
}
