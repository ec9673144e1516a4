//! The webhook's own status writes, through the conflict-retrying writer (`retry`): the phase
//! move is checked before every write. Never called from inside an admission answer.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::api::{Api, ApiResource, PostParams};
use kube::core::DynamicObject;
use serde_json::{Value, json};

use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::policy::combine::Status;
use crate::policy::time;
use crate::policy::transitions::PhaseValue;
use crate::retry::{RetryingWriter, WriteError, WriteOutcome};

pub type Result<T, E = WriteError> = std::result::Result<T, E>;

/// A condition the webhook records on an object after denying a write to it.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectionCondition {
    pub condition_type: String,
    pub reason: String,
    pub message: String,
}

/// The webhook's status writes, through the conflict-retrying writer.
#[derive(Clone, Debug)]
pub struct StatusManager {
    writer: RetryingWriter,
}

/// The API for the policy's guarded resource at the version of `api_version`.
pub fn api_for(
    client: &Client,
    policy: &Policy,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), api_version.to_string()),
    };
    let resource = ApiResource {
        group,
        version,
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        plural: policy.config.resource.resource.clone(),
    };
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

impl StatusManager {
    pub fn new(metrics: Metrics) -> Self {
        Self {
            writer: RetryingWriter::new(metrics),
        }
    }

    /// A manager whose writes go through `writer` (a test's, with a race hook).
    pub fn with_writer(writer: RetryingWriter) -> Self {
        Self { writer }
    }

    /// The conflict-retrying writer behind it, for the webhook's other objects.
    pub fn writer(&self) -> &RetryingWriter {
        &self.writer
    }

    /// Reads `name`, lets `apply` change its status (returning whether it did), checks the
    /// phase move and writes once with the read resourceVersion; retries on conflict.
    pub async fn update<F>(
        &self,
        api: &Api<DynamicObject>,
        name: &str,
        policy: &Policy,
        mut apply: F,
    ) -> Result<WriteOutcome>
    where
        F: FnMut(&mut Status) -> bool,
    {
        let phases = &policy.phases;
        let prepare = |mut object: DynamicObject| {
            let old = stored_status(&object.data);
            let mut status = old.clone();
            if !apply(&mut status) || status == old {
                return Ok(None);
            }
            let from = phases.current(PhaseValue::read(Some(&old), &phases.field));
            let to = phases
                .requested(from, PhaseValue::read(Some(&status), &phases.field))
                .ok_or(WriteError::Incomplete("phase that is a string"))?;
            phases.check(from, to).map_err(WriteError::IllegalMove)?;
            object.data["status"] = Value::Object(status);
            Ok(Some(object))
        };
        let written = self.writer.write_with_retry(
            name,
            || api.get_status(name),
            prepare,
            move |object| async move {
                api.replace_status(name, &PostParams::default(), &object)
                    .await
            },
        );
        Ok(written.await?.into())
    }

    /// `update` as a dry run and without its phase check, returning what the API server would
    /// have stored (`None`: `change` changed nothing, nothing sent). For `verify`, which sends
    /// an illegal move on purpose, to see an admission webhook deny it.
    pub async fn dry_run<F>(
        &self,
        api: &Api<DynamicObject>,
        name: &str,
        mut change: F,
    ) -> Result<Option<DynamicObject>>
    where
        F: FnMut(&mut Status) -> bool,
    {
        let prepare = |mut object: DynamicObject| {
            let mut status = stored_status(&object.data);
            if !change(&mut status) {
                return Ok(None);
            }
            object.data["status"] = Value::Object(status);
            Ok(Some(object))
        };
        let dry = &PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let written = self.writer.write_with_retry(
            name,
            || api.get_status(name),
            prepare,
            move |object| async move { api.replace_status(name, dry, &object).await },
        );
        Ok(written.await?.map(|(answer, _)| answer))
    }

    /// Records the latest rejection as a condition on the object.
    pub async fn record_rejection(
        &self,
        client: &Client,
        policy: &Policy,
        regarding: &ObjectReference,
        rejection: &RejectionCondition,
    ) -> Result<WriteOutcome> {
        let (Some(api_version), Some(kind), Some(name)) = (
            regarding.api_version.as_deref(),
            regarding.kind.as_deref(),
            regarding.name.as_deref(),
        ) else {
            return Err(WriteError::Incomplete("reference"));
        };
        let api = api_for(
            client,
            policy,
            api_version,
            kind,
            regarding.namespace.as_deref(),
        );
        let field = policy.config.conditions.field.clone();
        let now = time::format(Timestamp::now());
        self.update(&api, name, policy, |status| {
            set_condition(status, &field, rejection, &now)
        })
        .await
    }
}

/// An object's status (an empty one when it has none, or one that is not an object).
pub fn stored_status(data: &Value) -> Status {
    data.get("status")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// Sets (or refreshes) the rejection condition; false when it already says the same.
fn set_condition(status: &mut Status, field: &str, r: &RejectionCondition, now: &str) -> bool {
    let list = status
        .entry(field.to_string())
        .or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(list) = list else {
        return false;
    };
    let condition = json!({
        "type": r.condition_type,
        "status": "True",
        "reason": r.reason,
        "message": r.message,
        "lastTransitionTime": now,
    });
    match list
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(&r.condition_type))
    {
        Some(existing) => {
            let same = existing.get("reason") == condition.get("reason")
                && existing.get("message") == condition.get("message")
                && existing.get("status") == condition.get("status");
            if same {
                return false;
            }
            *existing = condition;
        }
        None => list.push(condition),
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    #[test]
    fn rejection_condition_is_added_then_left_alone_when_unchanged() {
        let r = RejectionCondition {
            condition_type: "AdmissionRejected".into(),
            reason: "IllegalPhaseTransition".into(),
            message: "m".into(),
        };
        let mut status = Map::new();
        assert!(set_condition(
            &mut status,
            "conditions",
            &r,
            "2026-01-01T00:00:00Z"
        ));
        assert!(!set_condition(
            &mut status,
            "conditions",
            &r,
            "2026-01-01T00:00:09Z"
        ));
        let changed = RejectionCondition {
            message: "other".into(),
            ..r
        };
        assert!(set_condition(
            &mut status,
            "conditions",
            &changed,
            "2026-01-01T00:00:09Z"
        ));
        assert_eq!(status["conditions"].as_array().map(Vec::len), Some(1));
    }
}
