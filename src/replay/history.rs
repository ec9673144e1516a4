//! Each guarded object's stored state, rebuilt write by write from the log.

use std::collections::HashMap;

use serde_json::Value;

use super::audit::Event;

/// How a write's body becomes the object the API server admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// A whole object (PUT).
    Update,
    /// RFC 7386 merge patch.
    MergePatch,
    /// RFC 6902 JSON patch.
    JsonPatch,
    /// Server-side apply: merged by field ownership, which replay does not rebuild.
    Apply,
}

impl Body {
    /// The API server does not record a patch's content type; the body's shape and the query
    /// tell: an array is a JSON patch, a whole typed object sent with a field manager (or
    /// `force`) is an apply, any other object a merge patch.
    pub fn of(event: &Event) -> Option<Self> {
        match event.verb.as_str() {
            "update" => Some(Body::Update),
            "patch" => {
                let body = event.request_object.as_ref()?;
                if body.is_array() {
                    return Some(Body::JsonPatch);
                }
                let typed = body.get("apiVersion").is_some() && body.get("kind").is_some();
                let managed = event.query().any(|(k, _)| k == "fieldManager");
                let forced = event.query().any(|(k, _)| k == "force");
                Some(if forced || (typed && managed) {
                    Body::Apply
                } else {
                    Body::MergePatch
                })
            }
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Body::Update => "update",
            Body::MergePatch => "merge-patch",
            Body::JsonPatch => "json-patch",
            Body::Apply => "apply",
        }
    }
}

/// The object a write's body makes of the stored one, before admission.
pub fn written(stored: &Value, body: Body, sent: &Value) -> Result<Value, String> {
    match body {
        Body::Update => Ok(sent.clone()),
        Body::MergePatch => {
            let mut object = stored.clone();
            json_patch::merge(&mut object, sent);
            Ok(object)
        }
        Body::JsonPatch => {
            let mut object = stored.clone();
            apply_json_patch(&mut object, sent).map_err(|e| format!("the JSON patch {e}"))?;
            Ok(object)
        }
        Body::Apply => {
            Err("server-side apply merges by field ownership, which replay does not rebuild".into())
        }
    }
}

/// Applies a JSON patch as the log holds it (a write's body, a webhook's patch annotation);
/// the error says whether it `does not read` or `does not apply`.
pub fn apply_json_patch(object: &mut Value, patch: &Value) -> Result<(), String> {
    let patch: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| format!("does not read: {e}"))?;
    json_patch::patch(object, &patch).map_err(|e| format!("does not apply: {e}"))
}

/// `stored` with the status of `other`: a write through the status subresource changes
/// nothing else.
pub fn with_status_of(stored: &Value, other: &Value) -> Value {
    let mut next = stored.clone();
    if let Some(map) = next.as_object_mut() {
        match other.get("status") {
            Some(status) => map.insert("status".into(), status.clone()),
            None => map.remove("status"),
        };
    }
    next
}

/// `written` with the status of `stored`: a write to the main resource leaves the status be.
pub fn with_status_kept(written: &Value, stored: &Value) -> Value {
    with_status_of(written, stored)
}

/// The known state of each object, by `namespace/name`.
#[derive(Debug, Default)]
pub struct States(HashMap<String, Value>);

impl States {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    pub fn set(&mut self, key: &str, object: Value) {
        self.0.insert(key.to_string(), object);
    }

    /// The object's state is no longer known (deleted, or changed in a way not rebuilt).
    pub fn forget(&mut self, key: &str) {
        self.0.remove(key);
    }
}
