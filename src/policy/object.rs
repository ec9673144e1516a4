//! What the review reads of `object` and `oldObject`: their metadata and their body, of which
//! only `status`. The HTTP shell parses its own lean objects (`server::status_object`).

use kube::core::{DynamicObject, Resource};
use serde_json::Value;

/// An object the review can judge: its metadata (through [`Resource::meta`]) and its body,
/// of which only `status` is read.
pub trait ReviewObject: Resource {
    /// The object as JSON without `metadata`, `apiVersion` and `kind`.
    fn body(&self) -> &Value;
}

impl ReviewObject for DynamicObject {
    fn body(&self) -> &Value {
        &self.data
    }
}
