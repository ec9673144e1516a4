//! Scenario 8: the status manager against the real API server. A second writer races its first
//! attempt (409), the retry writes once; an update that would move the phase illegally is
//! refused before anything is written.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Result, bail, ensure};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::Api;
use kube::core::DynamicObject;
use serde_json::{Value, json};
use wfe_admission::metrics::{Attempt, Metrics};
use wfe_admission::retry::{RetryingWriter, WriteError, WriteOutcome};
use wfe_admission::status::{RejectionCondition, StatusManager, api_for};
use wfe_admission::test_hooks::RaceHook;

use super::condition;
use crate::cluster::{merge_status, rv, status_of, text};
use crate::harness::{Ctx, NS};

/// A hook that, on the first attempt only, writes `status` through `api` (the controller's).
pub fn racing_writer(
    api: Api<DynamicObject>,
    name: &str,
    status: Value,
) -> (RaceHook, Arc<AtomicU32>) {
    let raced = Arc::new(AtomicU32::new(0));
    let (name, count) = (name.to_string(), Arc::clone(&raced));
    let hook: RaceHook = Arc::new(move |attempt| {
        let (api, name, status, count) = (api.clone(), name.clone(), status.clone(), count.clone());
        Box::pin(async move {
            if attempt == 1 && count.fetch_add(1, Ordering::SeqCst) == 0 {
                merge_status(&api, &name, status)
                    .await
                    .expect("the racing controller write succeeds");
            }
        })
    });
    (hook, raced)
}

pub async fn conflicts(ctx: Arc<Ctx>) -> Result<()> {
    let policy = ctx.webhook.policy.load_full();
    let name = ctx.create_in("manager", &["Running"]).await?;
    let metrics = Metrics::new();
    let racer_status = json!({"executionStatus": {"status": "Unknown", "reason": "Racing", "message": "a competing write"}});
    let (hook, raced) = racing_writer(ctx.controller(), &name, racer_status);
    let manager =
        StatusManager::with_writer(RetryingWriter::new(metrics.clone()).with_race_hook(hook));

    // The real use: recording the latest rejection as a condition, as the webhook's identity.
    let regarding = ObjectReference {
        api_version: Some("kubernaut.ai/v1alpha1".into()),
        kind: Some("WorkflowExecution".into()),
        name: Some(name.clone()),
        namespace: Some(NS.into()),
        ..ObjectReference::default()
    };
    let rejection = RejectionCondition {
        condition_type: "AdmissionRejected".into(),
        reason: "IllegalPhaseTransition".into(),
        message: "the last write tried Running → Pending".into(),
    };
    let outcome = manager
        .record_rejection(&ctx.clients.webhook, &policy, &regarding, &rejection)
        .await?;
    ensure!(raced.load(Ordering::SeqCst) == 1, "the racer ran once");
    ensure!(
        outcome == WriteOutcome::Written { attempts: 2 },
        "one conflict, then one write: {outcome:?}"
    );
    ensure!(
        metrics.status_writes_count(Attempt::Conflict) == 1
            && metrics.status_writes_count(Attempt::Success) == 1
            && metrics.status_writes_count(Attempt::Failure) == 0,
        "metrics: {}",
        metrics.encode()
    );
    let st = status_of(&ctx.stored(&name).await?);
    ensure!(
        condition(&st, "AdmissionRejected").and_then(|c| c.get("reason"))
            == Some(&json!("IllegalPhaseTransition")),
        "the condition was written: {st:?}"
    );
    ensure!(
        st.get("executionStatus").and_then(|s| s.get("reason")) == Some(&json!("Racing")),
        "the racing writer's field survived the retry: {st:?}"
    );
    ensure!(text(&st, "phase") == Some("Running"), "{st:?}");

    // Same record again: nothing changes, nothing is written.
    let plain = StatusManager::new(metrics.clone());
    let again = plain
        .record_rejection(&ctx.clients.webhook, &policy, &regarding, &rejection)
        .await?;
    ensure!(again == WriteOutcome::Unchanged, "{again:?}");

    // An update whose closure moves Running → Pending is refused before writing.
    let before = ctx.stored(&name).await?;
    let api = api_for(
        &ctx.clients.webhook,
        &policy,
        "kubernaut.ai/v1alpha1",
        "WorkflowExecution",
        Some(NS),
    );
    let result = plain
        .update(&api, &name, &policy, |s| {
            s.insert("phase".into(), json!("Pending"));
            true
        })
        .await;
    match result {
        Err(WriteError::IllegalMove(e)) => {
            println!("    refused: {e:?}");
        }
        other => bail!("an illegal move through the status manager: {other:?}"),
    }
    let after = ctx.stored(&name).await?;
    ensure!(rv(&after) == rv(&before), "nothing was written");
    ensure!(
        metrics.status_writes_count(Attempt::Success) == 1,
        "no write counted"
    );
    Ok(())
}
