//! What a write the match conditions let past a webhook must satisfy: the check the e2e suite
//! makes on writes the API server skipped, and the celcost suite on writes kube-apiserver's
//! evaluator skips offline.

use anyhow::ensure;
use jiff::Timestamp;
use serde_json::Value;
use wfe_admission::policy::combine::{Status, combine};
use wfe_admission::policy::{Policy, Writer};

/// A write let past /mutate must be one that combining returns as it was sent, with nothing to
/// say: no warning, no correction, no denial.
pub fn combining_keeps(
    policy: &Policy,
    writer: Writer<'_>,
    old: &Status,
    new: &Status,
) -> anyhow::Result<()> {
    let combined = combine(policy, Some(old), Some(new), writer, Timestamp::now());
    ensure!(
        combined.status == *new
            && combined.warnings.is_empty()
            && combined.corrections.is_empty()
            && combined.denial.is_none(),
        "skipped /mutate, but combining would have changed it:\nstored {}\nwritten {}\ncombined {:?}",
        Value::Object(old.clone()),
        Value::Object(new.clone()),
        combined
    );
    Ok(())
}
