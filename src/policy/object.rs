//! What the review reads from `object` and `oldObject`, and a lean object type for the webhook's
//! hot path.
//!
//! The reviews only look at an object's name, namespace, uid, resourceVersion and `status`.
//! Parsing the whole object into a `DynamicObject` (typed `ObjectMeta` with every
//! `managedFields` entry, plus the flattened rest buffered through serde's `Content`) cost
//! about three quarters of a request's CPU time; [`StatusObject`] skips everything else while
//! parsing (`cargo run --release --bin wfe-bench`, docs/benchmarks.md).

use std::borrow::Cow;
use std::cell::RefCell;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{ApiResource, DynamicObject, DynamicResourceScope, Resource};
use serde::de::value::SeqAccessDeserializer;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
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

thread_local! {
    /// The status fields [`StatusObject`]s keep while parsing; `None` keeps all of them.
    static KEEP: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Runs `parse` with [`StatusObject`]s keeping only the status fields in `keep` (the others are
/// skipped, not built): the validating endpoint reads two of them. A thread-local, because
/// serde's derive of `AdmissionReview` cannot hand a seed down to the objects it holds.
pub fn keeping<T>(keep: &[&str], parse: impl FnOnce() -> T) -> T {
    struct Restore(Option<Vec<String>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let outer = self.0.take();
            KEEP.with(|k| *k.borrow_mut() = outer);
        }
    }
    let keep = keep.iter().map(|k| k.to_string()).collect();
    let _restore = Restore(KEEP.with(|k| k.replace(Some(keep))));
    parse()
}

/// `Some(status)` for a present key, `null` included (an absent key stays `None`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    KEEP.with(|k| match k.borrow().as_deref() {
        Some(keep) => d.deserialize_any(Kept(keep)).map(Some),
        None => Value::deserialize(d).map(Some),
    })
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

/// A status with only `keep`'s keys when it is an object; anything else is built whole, so
/// that it is judged as before.
struct Kept<'k>(&'k [String]);

impl<'de> Visitor<'de> for Kept<'_> {
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
                map.next_value::<Checked>()?;
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
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Checked)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = Checked;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_entry::<Checked, Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_none<E: de::Error>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Checked, D::Error> {
        d.deserialize_any(self)
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
dynamic_resource!(StatusObject);

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

    fn kept(keep: &[&str], v: &Value) -> StatusObject {
        keeping(keep, || serde_json::from_str(&v.to_string())).expect("kept")
    }

    #[test]
    fn keeping_builds_only_the_fields_asked_for() {
        let v = json!({"metadata": {"name": "a", "uid": "u"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready"}], "x": {"y": 1}}});
        let only = kept(&["phase", "x"], &v);
        assert_eq!(
            only.body(),
            &json!({"status": {"phase": "Running", "x": {"y": 1}}})
        );
        assert_eq!(only.meta().uid.as_deref(), Some("u"));
        // Outside `keeping`, and after it, everything is built again.
        let full: StatusObject = serde_json::from_value(v.clone()).expect("lean");
        assert_eq!(
            full.body(),
            v.get("status")
                .map(|s| json!({"status": s}))
                .as_ref()
                .expect("status")
        );
        let after: StatusObject = serde_json::from_str(&v.to_string()).expect("lean");
        assert_eq!(after, full);
        for status in [
            json!(null),
            json!("text"),
            json!([1, {"a": [true, 1.5, -2]}]),
            json!(7),
        ] {
            let v = json!({"metadata": {}, "status": status});
            let full: StatusObject = serde_json::from_value(v.clone()).expect("lean");
            assert_eq!(kept(&["phase"], &v), full, "{v}");
        }
        assert_eq!(
            kept(&["phase"], &json!({"metadata": {}}))
                .body()
                .get("status"),
            None
        );
    }

    #[test]
    fn keeping_refuses_what_building_refuses() {
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
            let skipped = keeping(&["phase"], || serde_json::from_str::<StatusObject>(&text));
            assert!(built.is_err(), "{field}");
            assert_eq!(
                skipped.map(|_| ()).map_err(|e| e.to_string()),
                built.map_err(|e| e.to_string()),
                "{field}"
            );
        }
        // What building accepts, skipping accepts too: escapes, pairs, big and small numbers.
        let text = r#"{"status": {"phase": "Running", "skipped":
            [{"m": "\uD83D\uDE00 \n \u00e9", "n": [1e308, -0.0, 18446744073709551615, null]}]}}"#;
        let only = keeping(&["phase"], || serde_json::from_str::<StatusObject>(text));
        assert_eq!(
            only.expect("kept").body(),
            &json!({"status": {"phase": "Running"}})
        );
    }

    #[test]
    fn keeping_is_undone_when_the_parse_fails_or_panics() {
        let v = json!({"status": {"phase": "Running", "x": 1}});
        let err = keeping(&["phase"], || {
            serde_json::from_str::<StatusObject>("{\"status\": {")
        });
        assert!(err.is_err());
        let panicked = std::panic::catch_unwind(|| keeping(&["phase"], || panic!("inside")));
        assert!(panicked.is_err());
        let after: StatusObject = serde_json::from_value(v.clone()).expect("lean");
        assert_eq!(
            after.body(),
            &json!({"status": {"phase": "Running", "x": 1}})
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
