//! `wfe-admission check`: the verdict for an UPDATE of the status from OLD to NEW, exactly as the
//! two webhooks would give it (mutating pass, then validating pass on the mutated object).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use jiff::Timestamp;
use kube::core::admission::{AdmissionRequest, Operation};
use kube::core::{DynamicObject, TypeMeta};
use serde_json::{Value, json};

use crate::policy::Policy;
use crate::policy::review::{self, Decision, Verdict};

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

/// The printed result.
#[derive(Debug, serde::Serialize)]
pub struct CheckVerdict {
    pub allowed: bool,
    pub message: Option<String>,
    pub patch: Value,
    pub warnings: Vec<String>,
    pub status: Value,
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

/// Builds the request the API server would send for `PUT .../status`.
pub fn request(
    policy: &Policy,
    old: Value,
    new: Value,
    user: &str,
    groups: &[String],
) -> Result<AdmissionRequest<DynamicObject>, String> {
    let type_of =
        |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or("").to_string();
    let (api_version, kind) = (type_of(&new, "apiVersion"), type_of(&new, "kind"));
    if kind.is_empty() || api_version.is_empty() {
        return Err("NEW needs apiVersion and kind".into());
    }
    if (type_of(&old, "apiVersion"), type_of(&old, "kind")) != (api_version.clone(), kind.clone()) {
        return Err("OLD and NEW must have the same apiVersion and kind".into());
    }
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), api_version.clone()),
    };
    let resource = &policy.config.resource;
    if group != resource.group {
        return Err(format!(
            "the objects are {api_version} {kind}, but the policy guards group {:?}",
            resource.group
        ));
    }
    let meta = |v: &Value, key: &str| v.pointer(&format!("/metadata/{key}")).cloned();
    let review = json!({
        "uid": "check",
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": resource.resource},
        "subResource": resource.subresource,
        "requestKind": {"group": group, "version": version, "kind": kind},
        "requestResource": {"group": group, "version": version, "resource": resource.resource},
        "requestSubResource": resource.subresource,
        "name": meta(&new, "name").unwrap_or(Value::Null),
        "namespace": meta(&new, "namespace").unwrap_or(Value::Null),
        "operation": "UPDATE",
        "userInfo": {"username": user, "groups": groups},
        "object": new,
        "oldObject": old,
        "dryRun": false,
    });
    let mut req: AdmissionRequest<DynamicObject> =
        serde_json::from_value(review).map_err(|e| format!("cannot build the request: {e}"))?;
    req.operation = Operation::Update;
    req.types = TypeMeta {
        api_version: "admission.k8s.io/v1".into(),
        kind: "AdmissionReview".into(),
    };
    Ok(req)
}

fn denied(verdict: &Verdict) -> Option<String> {
    match &verdict.decision {
        Decision::Deny(d) => Some(d.message.clone()),
        _ => None,
    }
}

/// Mutating pass, then the validating pass over the mutated object.
pub fn evaluate(
    policy: &Policy,
    mut req: AdmissionRequest<DynamicObject>,
    now: Timestamp,
) -> Result<CheckVerdict, String> {
    let mutated = review::mutate(policy, &req, now);
    let patch = match &mutated.decision {
        Decision::Patch(p) => p.clone(),
        _ => json_patch::Patch(Vec::new()),
    };
    let mut warnings = mutated.warnings.clone();
    let mut object = req
        .object
        .as_ref()
        .map(|o| serde_json::to_value(o).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    json_patch::patch(&mut object, &patch)
        .map_err(|e| format!("the mutating patch does not apply: {e}"))?;
    let message = match denied(&mutated) {
        Some(message) => Some(message),
        None => {
            req.object = Some(dynamic_value(object.clone())?);
            let validated = review::validate(policy, &req);
            warnings.extend(validated.warnings.iter().cloned());
            denied(&validated)
        }
    };
    let status = object.get("status").cloned().unwrap_or(Value::Null);
    Ok(CheckVerdict {
        allowed: message.is_none(),
        message,
        patch: serde_json::to_value(&patch).map_err(|e| e.to_string())?,
        warnings,
        status,
    })
}

fn dynamic_value(value: Value) -> Result<DynamicObject, String> {
    serde_json::from_value(value).map_err(|e| format!("mutated object unreadable: {e}"))
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

fn check(args: &CheckArgs) -> Result<CheckVerdict, String> {
    let config = super::load_config(args.config.as_deref()).map_err(|e| e.to_string())?;
    let policy = Policy::new(config).map_err(|e| e.to_string())?;
    let old = read_object(&args.old)?;
    let new = read_object(&args.new)?;
    // Both must read as Kubernetes objects, like the API server would have them.
    dynamic(old.clone(), &args.old)?;
    dynamic(new.clone(), &args.new)?;
    let req = request(&policy, old, new, &args.user, &args.groups)?;
    evaluate(&policy, req, args.now.unwrap_or_else(Timestamp::now))
}
