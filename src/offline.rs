//! Both webhooks' verdict on one status write, judged without a server, as the API server
//! would ask them: the mutating pass, then the validating pass on the mutated object.
//! `check` judges one write; `replay` a recorded log of them.

use jiff::Timestamp;
use kube::core::admission::{AdmissionRequest, Operation};
use kube::core::{DynamicObject, TypeMeta};
use serde_json::{Value, json};

use crate::policy::Policy;
use crate::policy::review::{self, Decision, Verdict};

/// One status write: the stored object, the object the writer's request makes of it, and who.
#[derive(Debug, Clone)]
pub struct Write<'a> {
    pub old: Value,
    pub new: Value,
    pub user: &'a str,
    pub groups: &'a [String],
    pub dry_run: bool,
}

/// Both webhooks' answer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub allowed: bool,
    pub message: Option<String>,
    pub patch: Value,
    pub warnings: Vec<String>,
    /// The status as it would be stored (the writer's, with the patch applied).
    pub status: Value,
}

impl Outcome {
    pub fn patched(&self) -> bool {
        self.patch.as_array().is_some_and(|ops| !ops.is_empty())
    }
}

/// Builds the request the API server would send for an update of the status subresource of
/// one of the resources `policy` guards.
pub fn request(
    policy: &Policy,
    write: Write<'_>,
) -> Result<AdmissionRequest<DynamicObject>, String> {
    let Write {
        old,
        new,
        user,
        groups,
        dry_run,
    } = write;
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
    let Some(resource) = policy.resources().find(|r| r.group == group) else {
        return Err(format!(
            "the objects are {api_version} {kind}, but the policy guards group {:?}",
            policy.config.resource.group
        ));
    };
    let meta = |v: &Value, key: &str| v.pointer(&format!("/metadata/{key}")).cloned();
    let review = json!({
        "uid": "offline",
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
        "dryRun": dry_run,
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
) -> Result<Outcome, String> {
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
            req.object = Some(
                serde_json::from_value(object.clone())
                    .map_err(|e| format!("mutated object unreadable: {e}"))?,
            );
            let validated = review::validate(policy, &req);
            warnings.extend(validated.warnings.iter().cloned());
            denied(&validated)
        }
    };
    let status = object.get("status").cloned().unwrap_or(Value::Null);
    Ok(Outcome {
        allowed: message.is_none(),
        message,
        patch: serde_json::to_value(&patch).map_err(|e| e.to_string())?,
        warnings,
        status,
    })
}
