//! `serve`'s policy file, reloaded when it changes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::metrics::{Attempt, Metrics};
use crate::policy::Policy;
use crate::server::files;

/// The policy file comes from a ConfigMap in a cluster: reload it when it changes. A file that
/// does not parse or validate leaves the current policy in force.
pub fn reload_policy_on_change(
    path: PathBuf,
    policy: Arc<ArcSwap<Policy>>,
    metrics: Metrics,
    interval: Duration,
) {
    let watched = path.clone();
    files::spawn(&[watched.as_path()], interval, move || {
        let loaded = crate::config::Config::from_file(&path).and_then(Policy::new);
        match loaded {
            Ok(new) if new.config == policy.load().config => {}
            Ok(new) => {
                policy.store(Arc::new(new));
                metrics.config_reload(Attempt::Success);
                tracing::info!(config = %path.display(), "policy reloaded");
            }
            Err(e) => {
                metrics.config_reload(Attempt::Failure);
                tracing::error!(config = %path.display(), error = %e, "policy not reloaded; keeping the current one");
            }
        }
    });
}
