//! The conflict-retrying writer behind every write the webhook makes (statuses, its Secret, its
//! webhook configurations): read the latest object, build the object to write from it, write
//! once with the read resourceVersion; on 409 read again and retry after a wait drawn from a
//! window that doubles ("full jitter"), bounded. Every attempt is counted.

use std::future::Future;
#[cfg(any(test, feature = "test-hooks"))]
use std::pin::Pin;
#[cfg(any(test, feature = "test-hooks"))]
use std::sync::Arc;
use std::time::Duration;

use kube::Error as KubeError;
use kube::api::{Api, PostParams};

use crate::metrics::{Attempt, Metrics};
use crate::policy::transitions::TransitionError;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] KubeError),
    #[error("refusing to write: {0}")]
    IllegalMove(TransitionError),
    #[error("gave up after {0} conflicting writes")]
    Conflicts(u32),
    #[error("the object has no {0}")]
    Incomplete(&'static str),
}

/// What an update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The closure changed nothing: no write.
    Unchanged,
    /// One successful write after `attempts` tries (1 = no conflict).
    Written { attempts: u32 },
}

impl<K> From<Option<(K, u32)>> for WriteOutcome {
    fn from(written: Option<(K, u32)>) -> Self {
        match written {
            Some((_, attempts)) => WriteOutcome::Written { attempts },
            None => WriteOutcome::Unchanged,
        }
    }
}

/// Called between the read and the write of every attempt; tests use it to race a second
/// writer and force a conflict.
#[cfg(any(test, feature = "test-hooks"))]
pub type RaceHook = Arc<dyn Fn(u32) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

#[derive(Clone)]
pub struct RetryingWriter {
    metrics: Metrics,
    max_attempts: u32,
    backoff: Duration,
    backoff_cap: Duration,
    #[cfg(any(test, feature = "test-hooks"))]
    race_hook: Option<RaceHook>,
}

impl std::fmt::Debug for RetryingWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryingWriter")
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

impl RetryingWriter {
    pub fn new(metrics: Metrics) -> Self {
        Self {
            metrics,
            // With full jitter, 16 writers racing on one object all get through (wfe-bench's
            // status-manager rows); a writer still conflicting after ~4 s of waiting gives up.
            max_attempts: 10,
            backoff: Duration::from_millis(25),
            backoff_cap: Duration::from_secs(1),
            #[cfg(any(test, feature = "test-hooks"))]
            race_hook: None,
        }
    }

    #[cfg(any(test, feature = "test-hooks"))]
    pub fn with_race_hook(mut self, hook: RaceHook) -> Self {
        self.race_hook = Some(hook);
        self
    }

    /// The one loop behind every write: read, let `prepare` build the object to write (`None`:
    /// nothing to do), write it with the read resourceVersion, and on 409 start over. Returns
    /// the API server's answer and the attempts it took.
    pub(crate) async fn write_with_retry<K, P, R, RF, W, WF>(
        &self,
        name: &str,
        read: R,
        mut prepare: P,
        write: W,
    ) -> Result<Option<(K, u32)>, WriteError>
    where
        K: kube::Resource,
        P: FnMut(K) -> Result<Option<K>, WriteError>,
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
                return Err(WriteError::Incomplete("resourceVersion"));
            }
            #[cfg(any(test, feature = "test-hooks"))]
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
        Err(WriteError::Conflicts(self.max_attempts))
    }

    /// The same retried write for a whole object (the webhook's own configurations).
    pub async fn update_object<K, F>(
        &self,
        api: &Api<K>,
        name: &str,
        mut apply: F,
    ) -> Result<WriteOutcome, WriteError>
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
        Ok(written.await?.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
