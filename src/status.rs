//! The webhook's own status writes: read the latest object, apply a closure, write once with the
//! read resourceVersion; on 409 read again and retry with a short jittered backoff, bounded.
//! The phase move is checked before every write and every write is counted. Never called from
//! inside an admission answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, ApiResource, PostParams};
use kube::core::DynamicObject;
use kube::{Client, Error as KubeError};
use serde_json::{Value, json};

use crate::policy::Policy;
use crate::policy::combine::Status;
use crate::policy::time;
use crate::policy::transitions::{PhaseValue, TransitionError};
use crate::server::metrics::{Attempt, Metrics};

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] KubeError),
    #[error("refusing to write: {0}")]
    IllegalMove(TransitionError),
    #[error("gave up after {0} conflicting writes")]
    Conflicts(u32),
    #[error("the object has no {0}")]
    Incomplete(&'static str),
}

pub type Result<T, E = StatusError> = std::result::Result<T, E>;

/// A condition the webhook records on an object after denying a write to it.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectionCondition {
    pub condition_type: String,
    pub reason: String,
    pub message: String,
}

/// What an update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The closure changed nothing: no write.
    Unchanged,
    /// One successful write after `attempts` tries (1 = no conflict).
    Written { attempts: u32 },
}

/// Called between the read and the write of every attempt; tests use it to race a second
/// writer and force a conflict.
pub type RaceHook = Arc<dyn Fn(u32) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

#[derive(Clone)]
pub struct StatusManager {
    metrics: Metrics,
    max_attempts: u32,
    backoff: Duration,
    backoff_cap: Duration,
    race_hook: Option<RaceHook>,
}

impl std::fmt::Debug for StatusManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusManager")
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .finish()
    }
}

/// A uniform number in [0, 1): splitmix64 over a process-wide counter seeded from the clock, so
/// that writers racing in one process (or several started together) draw different delays.
fn random_unit() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut seed = STATE.load(Ordering::Relaxed);
    if seed == 0 {
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let _ = STATE.compare_exchange(
            0,
            clock ^ u64::from(std::process::id()) << 32 | 1,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        seed = STATE.load(Ordering::Relaxed);
    }
    let mut z = seed.wrapping_add(STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// `base` scaled by a factor in [0.5, 1.5) so that retries do not run in lockstep.
pub fn jitter(base: Duration) -> Duration {
    base.mul_f64(0.5 + random_unit())
}

/// The wait before retry `attempt` (1 = after the first conflict): uniform in [0, `base` ·
/// 2^(attempt − 1)] capped at `cap` ("full jitter"). Writers that conflicted together spread
/// over the whole window instead of meeting again a fixed time later.
pub fn backoff(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let window = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(cap);
    window.mul_f64(random_unit())
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
            metrics,
            // With full jitter, 16 writers racing on one object all get through (wfe-bench's
            // status-manager rows); a writer still conflicting after ~4 s of waiting gives up.
            max_attempts: 10,
            backoff: Duration::from_millis(25),
            backoff_cap: Duration::from_secs(1),
            race_hook: None,
        }
    }

    pub fn with_attempts(mut self, attempts: u32, backoff: Duration) -> Self {
        self.max_attempts = attempts.max(1);
        self.backoff = backoff;
        self
    }

    pub fn with_race_hook(mut self, hook: RaceHook) -> Self {
        self.race_hook = Some(hook);
        self
    }

    /// The one loop behind every write: read, let `prepare` build the object to write (`None`:
    /// nothing to do), write it with the read resourceVersion, and on 409 start over. Returns
    /// the API server's answer and the attempts it took.
    async fn write_with_retry<K, P, R, RF, W, WF>(
        &self,
        name: &str,
        read: R,
        mut prepare: P,
        write: W,
    ) -> Result<Option<(K, u32)>>
    where
        K: kube::Resource,
        P: FnMut(K) -> Result<Option<K>>,
        R: Fn() -> RF,
        RF: Future<Output = kube::Result<K>>,
        W: Fn(K) -> WF,
        WF: Future<Output = kube::Result<K>>,
    {
        for attempt in 1..=self.max_attempts {
            let Some(object) = prepare(read().await?)? else {
                return Ok(None);
            };
            if object.meta().resource_version.is_none() {
                return Err(StatusError::Incomplete("resourceVersion"));
            }
            if let Some(hook) = &self.race_hook {
                hook(attempt).await;
            }
            match write(object).await {
                Ok(answer) => {
                    self.metrics.status_write(Attempt::Success);
                    return Ok(Some((answer, attempt)));
                }
                Err(KubeError::Api(e)) if e.code == 409 => {
                    self.metrics.status_write(Attempt::Conflict);
                    tracing::debug!(name, attempt, "write conflicted; reading again");
                    if attempt < self.max_attempts {
                        let wait = backoff(self.backoff, self.backoff_cap, attempt);
                        tokio::time::sleep(wait).await;
                    }
                }
                Err(e) => {
                    self.metrics.status_write(Attempt::Failure);
                    return Err(e.into());
                }
            }
        }
        tracing::warn!(
            name,
            attempts = self.max_attempts,
            "gave up after conflicting writes"
        );
        Err(StatusError::Conflicts(self.max_attempts))
    }

    /// Reads `name`, lets `apply` change its status (returning whether it did), checks the
    /// phase move and writes once with the read resourceVersion; retries on conflict.
    pub async fn update<F>(
        &self,
        api: &Api<DynamicObject>,
        name: &str,
        policy: &Policy,
        mut apply: F,
    ) -> Result<Outcome>
    where
        F: FnMut(&mut Status) -> bool,
    {
        let phases = &policy.phases;
        let prepare = |mut object: DynamicObject| {
            let old = status_of(&object.data);
            let mut status = old.clone();
            if !apply(&mut status) || status == old {
                return Ok(None);
            }
            let from = phases.current(PhaseValue::read(Some(&old), &phases.field));
            let to = phases
                .requested(from, PhaseValue::read(Some(&status), &phases.field))
                .ok_or(StatusError::Incomplete("phase that is a string"))?;
            phases.check(from, to).map_err(StatusError::IllegalMove)?;
            object.data["status"] = Value::Object(status);
            Ok(Some(object))
        };
        let written = self.write_with_retry(
            name,
            || api.get_status(name),
            prepare,
            move |object| async move {
                api.replace_status(name, &PostParams::default(), &object)
                    .await
            },
        );
        Ok(outcome(written.await?))
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
            let mut status = status_of(&object.data);
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
        let written = self.write_with_retry(
            name,
            || api.get_status(name),
            prepare,
            move |object| async move { api.replace_status(name, dry, &object).await },
        );
        Ok(written.await?.map(|(answer, _)| answer))
    }

    /// The same retried write for a whole object (the webhook's own configurations).
    pub async fn update_object<K, F>(
        &self,
        api: &Api<K>,
        name: &str,
        mut apply: F,
    ) -> Result<Outcome>
    where
        K: kube::Resource
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        F: FnMut(&mut K) -> bool,
    {
        let prepare = |mut object: K| Ok(apply(&mut object).then_some(object));
        let written = self.write_with_retry(
            name,
            || api.get(name),
            prepare,
            move |object| async move { api.replace(name, &PostParams::default(), &object).await },
        );
        Ok(outcome(written.await?))
    }

    /// Records the latest rejection as a condition on the object.
    pub async fn record_rejection(
        &self,
        client: &Client,
        policy: &Policy,
        regarding: &ObjectReference,
        rejection: &RejectionCondition,
    ) -> Result<Outcome> {
        let (Some(api_version), Some(kind), Some(name)) = (
            regarding.api_version.as_deref(),
            regarding.kind.as_deref(),
            regarding.name.as_deref(),
        ) else {
            return Err(StatusError::Incomplete("reference"));
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

fn outcome<K>(written: Option<(K, u32)>) -> Outcome {
    match written {
        Some((_, attempts)) => Outcome::Written { attempts },
        None => Outcome::Unchanged,
    }
}

/// An object's status (an empty one when it has none, or one that is not an object).
pub fn status_of(data: &Value) -> Status {
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
    fn backoff_spreads_over_a_window_that_doubles_up_to_the_cap() {
        let (base, cap) = (Duration::from_millis(25), Duration::from_secs(1));
        for attempt in 1..=10u32 {
            let window = (base * 2u32.pow(attempt - 1)).min(cap);
            let draws: Vec<Duration> = (0..200).map(|_| backoff(base, cap, attempt)).collect();
            assert!(draws.iter().all(|d| *d <= window), "{attempt}");
            // Spread: draws land in both halves of the window, and rarely twice on one value.
            assert!(draws.iter().any(|d| *d < window / 2) && draws.iter().any(|d| *d > window / 2));
            let mut distinct = draws.clone();
            distinct.sort();
            distinct.dedup();
            assert!(distinct.len() > 190, "{attempt}: {}", distinct.len());
        }
    }

    #[test]
    fn jitter_stays_within_half_and_one_and_a_half() {
        for _ in 0..100 {
            let d = jitter(Duration::from_millis(100));
            assert!(
                d >= Duration::from_millis(50) && d < Duration::from_millis(150),
                "{d:?}"
            );
        }
    }

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
