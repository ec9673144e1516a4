//! What the review reads from `object` and `oldObject`, and a lean object type for the webhook's
//! hot path.
//!
//! The reviews only look at an object's name, namespace, uid, resourceVersion and `status`.
//! Parsing the whole object into a `DynamicObject` (typed `ObjectMeta` with every
//! `managedFields` entry, plus the flattened rest buffered through serde's `Content`) cost
//! about three quarters of a request's CPU time; [`StatusObject`] skips everything else while
//! parsing (`cargo run --release --bin wfe-bench`, docs/benchmarks.md).

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{ApiResource, DynamicObject, DynamicResourceScope, Resource};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

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

/// An object parsed for the review only. Its metadata carries `name`, `namespace`, `uid`,
/// `resourceVersion` and `generation` (everything else is left at its default), and its body
/// only `status` (when the object has one, `null` included).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatusObject {
    pub metadata: ObjectMeta,
    pub data: Value,
}

impl ReviewObject for StatusObject {
    fn body(&self) -> &Value {
        &self.data
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct LeanMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    resource_version: Option<String>,
    #[serde(default)]
    generation: Option<i64>,
}

/// `Some(value)` for a present key, `null` included (an absent key stays `None`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct Lean {
    #[serde(default)]
    metadata: LeanMeta,
    #[serde(default, deserialize_with = "present")]
    status: Option<Value>,
}

impl<'de> Deserialize<'de> for StatusObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let lean = Lean::deserialize(d)?;
        let mut data = Map::new();
        if let Some(status) = lean.status {
            data.insert("status".into(), status);
        }
        Ok(Self {
            metadata: lean.metadata.into_meta(),
            data: Value::Object(data),
        })
    }
}

/// An object whose status is kept as raw JSON, to be read later with only the fields the
/// caller needs ([`RawStatusObject::keep`]): the validating endpoint reads two status fields
/// and need not build the rest.
#[derive(Debug, Clone, Default)]
pub struct RawStatusObject {
    pub metadata: ObjectMeta,
    pub status: Option<Box<RawValue>>,
}

/// `Some(raw)` for a present key, `null` included.
fn present_raw<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct LeanRaw {
    #[serde(default)]
    metadata: LeanMeta,
    #[serde(default, deserialize_with = "present_raw")]
    status: Option<Box<RawValue>>,
}

impl<'de> Deserialize<'de> for RawStatusObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let lean = LeanRaw::deserialize(d)?;
        Ok(Self {
            metadata: lean.metadata.into_meta(),
            status: lean.status,
        })
    }
}

impl LeanMeta {
    fn into_meta(self) -> ObjectMeta {
        ObjectMeta {
            name: self.name,
            namespace: self.namespace,
            uid: self.uid,
            resource_version: self.resource_version,
            generation: self.generation,
            ..ObjectMeta::default()
        }
    }
}

/// Reads a JSON object keeping only `keep`'s keys (others are skipped, not built).
struct Only<'k>(&'k [&'k str]);

impl<'de> DeserializeSeed<'de> for Only<'_> {
    type Value = Map<String, Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Only<'_> {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if self.0.contains(&key.as_ref()) {
                out.insert(key.into_owned(), map.next_value::<Value>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(out)
    }
}

impl RawStatusObject {
    /// The object with only the status fields in `keep` (all of them with `None`). A status
    /// that is not an object (or `null`) is kept whole, so that it is judged as before.
    pub fn keep(self, keep: Option<&[&str]>) -> Result<StatusObject, serde_json::Error> {
        let mut data = Map::new();
        if let Some(raw) = self.status {
            let text = raw.get();
            let status = match keep {
                Some(keep) if text.starts_with('{') => {
                    let mut de = serde_json::Deserializer::from_str(text);
                    Value::Object(Only(keep).deserialize(&mut de)?)
                }
                _ => serde_json::from_str(text)?,
            };
            data.insert("status".into(), status);
        }
        Ok(StatusObject {
            metadata: self.metadata,
            data: Value::Object(data),
        })
    }
}

/// Both lean objects are dynamic resources typed by an `ApiResource`, like `DynamicObject`.
macro_rules! dynamic_resource {
    ($($t:ty),*) => {$(
        impl Resource for $t {
            type DynamicType = ApiResource;
            type Scope = DynamicResourceScope;

            fn kind(dt: &ApiResource) -> Cow<'_, str> {
                dt.kind.as_str().into()
            }

            fn group(dt: &ApiResource) -> Cow<'_, str> {
                dt.group.as_str().into()
            }

            fn version(dt: &ApiResource) -> Cow<'_, str> {
                dt.version.as_str().into()
            }

            fn api_version(dt: &ApiResource) -> Cow<'_, str> {
                dt.api_version.as_str().into()
            }

            fn plural(dt: &ApiResource) -> Cow<'_, str> {
                dt.plural.as_str().into()
            }

            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }

            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    )*};
}
dynamic_resource!(RawStatusObject, StatusObject);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn both(v: Value) -> (DynamicObject, StatusObject) {
        (
            serde_json::from_value(v.clone()).expect("dynamic"),
            serde_json::from_value(v).expect("lean"),
        )
    }

    #[test]
    fn lean_object_reads_what_the_review_reads() {
        let (d, s) = both(json!({
            "apiVersion": "kubernaut.ai/v1alpha1", "kind": "WorkflowExecution",
            "metadata": {"name": "a", "namespace": "ns", "uid": "u", "resourceVersion": "7",
                "generation": 2, "managedFields": [{"manager": "m", "operation": "Update"}]},
            "spec": {"x": 1},
            "status": {"phase": "Running", "conditions": [{"type": "Ready"}]},
        }));
        assert_eq!(s.meta().name, d.metadata.name);
        assert_eq!(s.meta().namespace, d.metadata.namespace);
        assert_eq!(s.meta().uid, d.metadata.uid);
        assert_eq!(s.meta().resource_version, d.metadata.resource_version);
        assert_eq!(s.meta().generation, d.metadata.generation);
        assert_eq!(s.body().get("status"), d.body().get("status"));
    }

    #[test]
    fn null_and_absent_status_stay_distinct() {
        let (d, s) = both(json!({"metadata": {"name": "a"}, "status": null}));
        assert_eq!(s.body().get("status"), Some(&Value::Null));
        assert_eq!(s.body().get("status"), d.body().get("status"));
        let (d, s) = both(json!({"metadata": {"name": "a"}}));
        assert_eq!(s.body().get("status"), None);
        assert_eq!(s.body().get("status"), d.body().get("status"));
        let (_, s) = both(json!({}));
        assert_eq!(s.meta().name, None);
    }

    #[test]
    fn raw_status_keeps_only_what_is_asked() {
        let v = json!({"metadata": {"name": "a", "uid": "u"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready"}], "x": {"y": 1}}});
        let raw: RawStatusObject = serde_json::from_str(&v.to_string()).expect("raw");
        let kept = raw.clone().keep(Some(&["phase", "x"])).expect("keep");
        assert_eq!(
            kept.body(),
            &json!({"status": {"phase": "Running", "x": {"y": 1}}})
        );
        assert_eq!(kept.meta().uid.as_deref(), Some("u"));
        let all = raw.keep(None).expect("all");
        let full: StatusObject = serde_json::from_value(v).expect("lean");
        assert_eq!(all, full);
        for status in [json!(null), json!("text"), json!([1])] {
            let v = json!({"metadata": {}, "status": status});
            let raw: RawStatusObject = serde_json::from_str(&v.to_string()).expect("raw");
            let full: StatusObject = serde_json::from_value(v).expect("lean");
            assert_eq!(raw.keep(Some(&["phase"])).expect("keep"), full);
        }
        let raw: RawStatusObject = serde_json::from_str(r#"{"metadata": {}}"#).expect("raw");
        assert_eq!(
            raw.keep(Some(&["phase"]))
                .expect("keep")
                .body()
                .get("status"),
            None
        );
    }

    #[test]
    fn what_is_not_an_object_is_refused_by_both() {
        for v in [json!("text"), json!(1), json!({"metadata": "x"})] {
            assert!(
                serde_json::from_value::<DynamicObject>(v.clone()).is_err(),
                "{v}"
            );
            assert!(
                serde_json::from_value::<StatusObject>(v.clone()).is_err(),
                "{v}"
            );
        }
    }
}
