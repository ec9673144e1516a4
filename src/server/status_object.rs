//! The objects of a review as the webhook's hot path parses them, in the HTTP shell.
//!
//! The reviews only look at an object's name, namespace, uid, resourceVersion and `status`.
//! Parsing the whole object into a `DynamicObject` (typed `ObjectMeta` with every
//! `managedFields` entry, plus the flattened rest buffered through serde's `Content`) cost
//! about three quarters of a request's CPU time; [`StatusObject`] skips everything else while
//! parsing (`cargo run --release -p wfe-bench`, docs/benchmarks.md). /validate reads only the
//! status fields `policy::reads` declares: it parses [`UnbuiltObject`]s, whose status is kept as
//! its text, and builds just those fields from it ([`only_fields`]).

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::admission::AdmissionRequest;
use kube::core::{ApiResource, DynamicResourceScope, Resource};
use serde::de::value::SeqAccessDeserializer;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::policy::object::ReviewObject;

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

/// [`StatusObject`]'s metadata, with the status left as its JSON text.
#[derive(Debug, Clone, Default)]
pub struct UnbuiltObject {
    pub metadata: ObjectMeta,
    status: Option<Box<RawValue>>,
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

/// `Some` for a present key, `null` included (an absent key stays `None`).
fn key_present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(bound = "S: Deserialize<'de>")]
struct Lean<S> {
    #[serde(default)]
    metadata: LeanMeta,
    #[serde(default = "none", deserialize_with = "key_present")]
    status: Option<S>,
}

fn none<S>() -> Option<S> {
    None
}

impl<'de> Deserialize<'de> for StatusObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let lean = Lean::<Value>::deserialize(d)?;
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

impl<'de> Deserialize<'de> for UnbuiltObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let lean = Lean::<Box<RawValue>>::deserialize(d)?;
        Ok(Self {
            metadata: lean.metadata.into_meta(),
            status: lean.status,
        })
    }
}

/// The object with only `fields` of its status built. The others are read as strictly as
/// building them would be, so the same bytes are refused here and by a whole parse.
pub fn only_fields(
    object: UnbuiltObject,
    fields: &[&str],
) -> Result<StatusObject, serde_json::Error> {
    let mut data = Map::new();
    if let Some(raw) = object.status {
        let mut de = serde_json::Deserializer::from_str(raw.get());
        let status = de.deserialize_any(OnlyFields(fields))?;
        de.end()?;
        data.insert("status".into(), status);
    }
    Ok(StatusObject {
        metadata: object.metadata,
        data: Value::Object(data),
    })
}

/// A request whose objects have only `fields` of their status built.
pub fn request_with_only(
    req: AdmissionRequest<UnbuiltObject>,
    fields: &[&str],
) -> Result<AdmissionRequest<StatusObject>, serde_json::Error> {
    let built = |o: Option<UnbuiltObject>| o.map(|o| only_fields(o, fields)).transpose();
    Ok(AdmissionRequest {
        types: req.types,
        uid: req.uid,
        kind: req.kind,
        resource: req.resource,
        sub_resource: req.sub_resource,
        request_kind: req.request_kind,
        request_resource: req.request_resource,
        request_sub_resource: req.request_sub_resource,
        name: req.name,
        namespace: req.namespace,
        operation: req.operation,
        user_info: req.user_info,
        object: built(req.object)?,
        old_object: built(req.old_object)?,
        dry_run: req.dry_run,
        options: req.options,
    })
}

/// A status with only the named keys when it is an object; anything else is built whole, so
/// that it is judged as the whole status would be.
struct OnlyFields<'k>(&'k [&'k str]);

impl<'de> Visitor<'de> for OnlyFields<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if self.0.iter().any(|k| *k == key) {
                out.insert(key.into_owned(), map.next_value::<Value>()?);
            } else {
                map.next_value::<ReadStrictly>()?;
            }
        }
        Ok(Value::Object(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        Value::deserialize(SeqAccessDeserializer::new(seq))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// A status field /validate does not read: built into nothing, but read as strictly as building
/// it would be. serde_json's own skipping (`IgnoredAny`) lets through what building refuses
/// (half a surrogate pair, a number out of f64's range, nesting past its depth limit), so the
/// same bytes would be judged by /validate and refused by /mutate.
struct ReadStrictly;

impl<'de> Deserialize<'de> for ReadStrictly {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ReadStrictly)
    }
}

impl<'de> Visitor<'de> for ReadStrictly {
    type Value = ReadStrictly;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ReadStrictly, A::Error> {
        while map.next_entry::<ReadStrictly, ReadStrictly>()?.is_some() {}
        Ok(ReadStrictly)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ReadStrictly, A::Error> {
        while seq.next_element::<ReadStrictly>()?.is_some() {}
        Ok(ReadStrictly)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<ReadStrictly, E> {
        Ok(ReadStrictly)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<ReadStrictly, E> {
        Ok(ReadStrictly)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<ReadStrictly, E> {
        Ok(ReadStrictly)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<ReadStrictly, E> {
        Ok(ReadStrictly)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<ReadStrictly, E> {
        Ok(ReadStrictly)
    }

    fn visit_unit<E: de::Error>(self) -> Result<ReadStrictly, E> {
        Ok(ReadStrictly)
    }

    fn visit_none<E: de::Error>(self) -> Result<ReadStrictly, E> {
        Ok(ReadStrictly)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<ReadStrictly, D::Error> {
        d.deserialize_any(self)
    }
}

/// Both objects are dynamic resources typed by an `ApiResource`, like `DynamicObject`.
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
dynamic_resource!(StatusObject, UnbuiltObject);

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::DynamicObject;
    use serde_json::json;

    fn both(v: Value) -> (DynamicObject, StatusObject) {
        (
            serde_json::from_value(v.clone()).expect("dynamic"),
            serde_json::from_value(v).expect("lean"),
        )
    }

    fn kept(keep: &[&str], text: &str) -> Result<StatusObject, serde_json::Error> {
        serde_json::from_str::<UnbuiltObject>(text).and_then(|o| only_fields(o, keep))
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
        assert_eq!(
            kept(&["phase"], r#"{"status": null}"#)
                .expect("kept")
                .body()
                .get("status"),
            Some(&Value::Null)
        );
        let (d, s) = both(json!({"metadata": {"name": "a"}}));
        assert_eq!(s.body().get("status"), None);
        assert_eq!(s.body().get("status"), d.body().get("status"));
        let (_, s) = both(json!({}));
        assert_eq!(s.meta().name, None);
    }

    #[test]
    fn only_the_fields_asked_for_are_built() {
        let v = json!({"metadata": {"name": "a", "uid": "u"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready"}], "x": {"y": 1}}});
        let only = kept(&["phase", "x"], &v.to_string()).expect("kept");
        assert_eq!(
            only.body(),
            &json!({"status": {"phase": "Running", "x": {"y": 1}}})
        );
        assert_eq!(only.meta().uid.as_deref(), Some("u"));
        // The whole parse is not affected by one that keeps fields.
        let full: StatusObject = serde_json::from_value(v.clone()).expect("lean");
        assert_eq!(
            full.body(),
            v.get("status")
                .map(|s| json!({"status": s}))
                .as_ref()
                .expect("status")
        );
        for status in [
            json!(null),
            json!("text"),
            json!([1, {"a": [true, 1.5, -2]}]),
            json!(7),
        ] {
            let v = json!({"metadata": {}, "status": status});
            let full: StatusObject = serde_json::from_value(v.clone()).expect("lean");
            assert_eq!(kept(&["phase"], &v.to_string()).expect("kept"), full, "{v}");
        }
        assert_eq!(
            kept(&["phase"], r#"{"metadata": {}}"#)
                .expect("kept")
                .body()
                .get("status"),
            None
        );
    }

    #[test]
    fn keeping_fields_refuses_what_building_refuses() {
        let nested = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        for field in [
            r#""0\uD822ply""#.to_string(),
            r#""\uDC00""#.to_string(),
            "1e400".to_string(),
            "-1e999".to_string(),
            nested,
            r#"{"k": [1, "\uD800\uD800"]}"#.to_string(),
        ] {
            let text = format!(r#"{{"status": {{"phase": "Running", "skipped": {field}}}}}"#);
            let built = serde_json::from_str::<StatusObject>(&text).map(|_| ());
            let skipped = kept(&["phase"], &text);
            assert!(built.is_err(), "{field}");
            assert!(skipped.is_err(), "{field}");
        }
        // What building accepts, keeping accepts too: escapes, pairs, big and small numbers.
        let text = r#"{"status": {"phase": "Running", "skipped":
            [{"m": "\uD83D\uDE00 \n \u00e9", "n": [1e308, -0.0, 18446744073709551615, null]}]}}"#;
        assert_eq!(
            kept(&["phase"], text).expect("kept").body(),
            &json!({"status": {"phase": "Running"}})
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
            assert!(kept(&["phase"], &v.to_string()).is_err(), "{v}");
        }
    }
}
