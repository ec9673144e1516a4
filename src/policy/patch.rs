//! The JSON Patch that turns the object the API server sent into the object with the combined
//! status. One operation per changed top-level status field keeps patches small and readable.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation};
use serde_json::{Map, Value};

fn pointer(tokens: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().copied())
}

/// Operations that turn `object`'s status (possibly absent) into `status`.
pub fn status_patch(object: &Value, status: &Map<String, Value>) -> Patch {
    let current = object.get("status");
    let Some(Value::Object(current)) = current else {
        if status.is_empty() && current.is_none() {
            return Patch(Vec::new());
        }
        let op = AddOperation {
            path: pointer(&["status"]),
            value: Value::Object(status.clone()),
        };
        return Patch(vec![PatchOperation::Add(op)]);
    };
    let mut ops = Vec::new();
    for key in current.keys() {
        if !status.contains_key(key) {
            ops.push(PatchOperation::Remove(RemoveOperation {
                path: pointer(&["status", key]),
            }));
        }
    }
    for (key, value) in status {
        match current.get(key) {
            Some(v) if v == value => {}
            Some(_) => ops.push(PatchOperation::Replace(ReplaceOperation {
                path: pointer(&["status", key]),
                value: value.clone(),
            })),
            None => ops.push(PatchOperation::Add(AddOperation {
                path: pointer(&["status", key]),
                value: value.clone(),
            })),
        }
    }
    Patch(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn applied(object: &Value, status: &Value) -> Value {
        let status = status.as_object().expect("object").clone();
        let patch = status_patch(object, &status);
        let mut doc = object.clone();
        json_patch::patch(&mut doc, &patch).expect("patch applies");
        doc
    }

    #[test]
    fn patch_adds_replaces_and_removes() {
        let object = json!({"spec": {"a": 1}, "status": {"keep": 1, "drop": 2, "change": 3}});
        let want = json!({"keep": 1, "change": 4, "new": {"x": [1]}});
        let doc = applied(&object, &want);
        assert_eq!(doc["status"], want);
        assert_eq!(doc["spec"], object["spec"]);
    }

    #[test]
    fn absent_status_is_added_whole() {
        let object = json!({"spec": {}});
        assert_eq!(
            applied(&object, &json!({"phase": "Running"}))["status"]["phase"],
            "Running"
        );
        assert!(status_patch(&object, &Map::new()).0.is_empty());
    }

    #[test]
    fn same_status_is_an_empty_patch() {
        let object = json!({"status": {"a": 1}});
        let status = object["status"].as_object().expect("object").clone();
        assert!(status_patch(&object, &status).0.is_empty());
    }

    #[test]
    fn keys_with_slash_and_tilde_are_escaped() {
        let object = json!({"status": {}});
        let doc = applied(&object, &json!({"a/b~c": 1}));
        assert_eq!(doc["status"]["a/b~c"], 1);
        // The patched object already carries that status: nothing left to do.
        let patch = status_patch(&doc, doc["status"].as_object().expect("object"));
        assert!(patch.0.is_empty());
        let text = serde_json::to_string(&status_patch(
            &object,
            &json!({"a/b~c": 1}).as_object().expect("o").clone(),
        ))
        .expect("json");
        assert!(text.contains("/status/a~1b~0c"), "{text}");
    }
}
