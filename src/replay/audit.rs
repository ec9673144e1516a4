//! The parts of an API-server audit event (`audit.k8s.io/v1`) that replay reads, and what the
//! API server recorded it did with a write.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Event {
    pub api_version: String,
    pub level: String,
    #[serde(rename = "auditID")]
    pub audit_id: String,
    pub stage: String,
    #[serde(rename = "requestURI")]
    pub request_uri: String,
    pub verb: String,
    pub user: UserInfo,
    pub impersonated_user: Option<UserInfo>,
    pub object_ref: Option<ObjectRef>,
    pub response_status: Option<ResponseStatus>,
    pub request_object: Option<Value>,
    pub response_object: Option<Value>,
    pub request_received_timestamp: Option<String>,
    pub stage_timestamp: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct UserInfo {
    pub username: String,
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ObjectRef {
    pub resource: String,
    pub namespace: String,
    pub name: String,
    pub api_group: String,
    pub api_version: String,
    pub subresource: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ResponseStatus {
    pub code: u16,
    pub reason: String,
    pub message: String,
}

impl Event {
    /// The identity the request acted as: the impersonated user when there is one.
    pub fn acting_user(&self) -> &UserInfo {
        self.impersonated_user.as_ref().unwrap_or(&self.user)
    }

    pub fn code(&self) -> u16 {
        self.response_status.as_ref().map_or(0, |s| s.code)
    }

    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.code())
    }

    /// Whether the request asked for a dry run (`?dryRun=All`).
    pub fn dry_run(&self) -> bool {
        self.query().any(|(k, v)| k == "dryRun" && !v.is_empty())
    }

    pub fn query(&self) -> impl Iterator<Item = (&str, &str)> {
        self.request_uri
            .split_once('?')
            .map(|(_, q)| q)
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
    }

    /// `round_R_index_I` annotations under `prefix`, in the order the API server called them.
    fn webhook_annotations<'a>(&'a self, prefix: &'a str) -> Vec<((u32, u32), &'a str)> {
        let mut found: Vec<((u32, u32), &str)> = self
            .annotations
            .iter()
            .filter_map(|(key, value)| {
                let at = key.strip_prefix(prefix)?.strip_prefix("/round_")?;
                let (round, index) = at.split_once("_index_")?;
                Some(((round.parse().ok()?, index.parse().ok()?), value.as_str()))
            })
            .collect();
        found.sort_by_key(|(at, _)| *at);
        found
    }

    /// The JSON annotations under `prefix`, in call order.
    fn calls(&self, prefix: &str) -> Vec<((u32, u32), Value)> {
        self.webhook_annotations(prefix)
            .into_iter()
            .filter_map(|(at, value)| Some((at, serde_json::from_str::<Value>(value).ok()?)))
            .collect()
    }

    /// The JSON patches the named configurations' mutating webhooks returned, in order.
    pub fn patches(&self, configurations: &[String]) -> Vec<Value> {
        self.calls("patch.webhook.admission.k8s.io")
            .into_iter()
            .filter(|(_, v)| ours(v, configurations))
            .filter_map(|(_, v)| v.get("patch").cloned())
            .collect()
    }

    /// Where the named configurations' mutating webhook was first called (round, index), if it
    /// was: the API server records one annotation per call at every level.
    pub fn mutating_call(&self, configurations: &[String]) -> Option<(u32, u32)> {
        self.calls("mutation.webhook.admission.k8s.io")
            .into_iter()
            .find(|(_, v)| ours(v, configurations))
            .map(|(at, _)| at)
    }

    pub fn mutating_called(&self, configurations: &[String]) -> bool {
        self.mutating_call(configurations).is_some()
    }

    /// Whether the named configurations' mutating webhook was called again after its first call
    /// (a reinvocation after another webhook's change).
    pub fn reinvoked(&self, configurations: &[String]) -> bool {
        self.calls("mutation.webhook.admission.k8s.io")
            .iter()
            .filter(|(_, v)| ours(v, configurations))
            .count()
            > 1
    }

    /// The patches other mutating webhooks made before the named configurations' webhook was
    /// called (all of them when it was not): what it was shown. Each with its webhook's name.
    pub fn patches_before_ours(&self, configurations: &[String]) -> Vec<(String, Value)> {
        self.others_patches(configurations, true)
    }

    /// The patches other mutating webhooks made after the named configurations' webhook was
    /// first called (none when it was not).
    pub fn patches_after_ours(&self, configurations: &[String]) -> Vec<(String, Value)> {
        self.others_patches(configurations, false)
    }

    fn others_patches(&self, configurations: &[String], before: bool) -> Vec<(String, Value)> {
        let ours_at = self.mutating_call(configurations);
        self.calls("patch.webhook.admission.k8s.io")
            .into_iter()
            .filter(|(at, v)| {
                !ours(v, configurations)
                    && match ours_at {
                        None => before,
                        Some(o) => (*at < o) == before,
                    }
            })
            .filter_map(|(_, v)| {
                let name = v
                    .get("webhook")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string();
                Some((name, v.get("patch")?.clone()))
            })
            .collect()
    }

    /// Webhooks that did not answer and that the API server let the write past anyway.
    pub fn failed_open(&self) -> Vec<&str> {
        // One name per webhook: a reinvoked webhook fails open once per round.
        let mut names: Vec<&str> = Vec::new();
        for (_, name) in self
            .annotations
            .iter()
            .filter(|(k, _)| k.starts_with("failed-open."))
        {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        names
    }
}

fn ours(annotation: &Value, configurations: &[String]) -> bool {
    annotation
        .get("configuration")
        .and_then(Value::as_str)
        .is_some_and(|c| configurations.iter().any(|o| o == c))
}

/// What the API server did with a write, as its audit event records it.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    Allowed,
    /// Allowed with these patches from the webhook's mutating configuration.
    Patched(Vec<Value>),
    /// An admission webhook denied it (the message is the API server's).
    Denied(String),
    /// Refused before the webhook's verdict counted: authorization, the schema, a stale
    /// resourceVersion.
    RefusedBeforeAdmission(String),
    /// Any other failure (a webhook that could not be called, a server error).
    Failed(String),
}

impl Recorded {
    pub fn of(event: &Event, configurations: &[String]) -> Self {
        let status = event.response_status.clone().unwrap_or_default();
        if event.succeeded() {
            let patches = event.patches(configurations);
            return if patches.is_empty() {
                Recorded::Allowed
            } else {
                Recorded::Patched(patches)
            };
        }
        let message = status.message.clone();
        if message.contains("admission webhook \"") && message.contains("denied the request") {
            return Recorded::Denied(message);
        }
        let said = if status.reason.is_empty() {
            format!("{}: {message}", status.code)
        } else {
            format!("{} {}: {message}", status.code, status.reason)
        };
        match status.code {
            401 | 403 | 404 | 409 | 422 => Recorded::RefusedBeforeAdmission(said),
            _ => Recorded::Failed(said),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Recorded::Allowed => "allowed",
            Recorded::Patched(_) => "patched",
            Recorded::Denied(_) => "denied",
            Recorded::RefusedBeforeAdmission(_) => "refused-before-admission",
            Recorded::Failed(_) => "failed",
        }
    }
}
