//! The validating webhook's built-in match condition (`validate_match_condition`, as the chart
//! installs it): a write that keeps the block clearance and keeps the phase, or moves it as the
//! table allows its owner or `moves` allows its writer, never reaches /validate; every other
//! move and every clearance still does and is still judged.

use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use serde_json::json;
use wfe_bench::e2e::series_total;

use super::CLEAR_REASON;
use crate::cluster::{api_error, merge_status, put_status};
use crate::harness::Ctx;

/// Reviews the webhook has answered on `endpoint`, whatever the outcome.
pub(super) fn calls(ctx: &Ctx, endpoint: &str) -> u64 {
    let label = format!("endpoint=\"{endpoint}\"");
    series_total(
        &ctx.webhook.metrics.encode(),
        "wfe_admission_requests_total",
        &label,
    ) as u64
}

/// (mutate, validate) calls made while `write` ran. The scenarios run one at a time, so no
/// other write is counted.
pub(super) async fn counted<T>(ctx: &Ctx, write: impl Future<Output = T>) -> (T, u64, u64) {
    let (m, v) = (calls(ctx, "mutate"), calls(ctx, "validate"));
    let out = write.await;
    (out, calls(ctx, "mutate") - m, calls(ctx, "validate") - v)
}

/// `write` reaches /validate and is refused with 403 and `expected` in the message.
async fn denied_by_validate<T>(
    ctx: &Ctx,
    write: impl Future<Output = std::result::Result<T, kube::Error>>,
    what: &str,
    expected: &str,
) -> Result<()> {
    let (moved, _, v) = counted(ctx, write).await;
    let (code, message) = api_error(moved, what)?;
    ensure!(
        code == 403 && message.contains(expected),
        "{what}: HTTP {code}: {message}"
    );
    ensure!(v >= 1, "{what} did not reach /validate");
    Ok(())
}

pub async fn validate_only_when_it_may_deny(ctx: Arc<Ctx>) -> Result<()> {
    let ctl = ctx.controller();
    let name = ctx.create_in("match", &["Running"]).await?;

    // Progress writes that keep the phase: a full PUT and a merge patch without the phase.
    let (put, _, v) = counted(
        &ctx,
        put_status(&ctl, &name, |s| {
            s.insert(
                "executionStatus".into(),
                json!({"status": "Unknown", "reason": "Running", "completedTasks": 1, "totalTasks": 3}),
            );
        }),
    )
    .await;
    put.context("a progress PUT that keeps the phase")?;
    ensure!(v == 0, "a progress PUT reached /validate {v} times");
    let (patched, _, v) = counted(
        &ctx,
        merge_status(
            &ctl,
            &name,
            json!({"executionStatus": {"completedTasks": 2}}),
        ),
    )
    .await;
    patched.context("a progress merge patch")?;
    ensure!(v == 0, "merge patch: /validate {v} calls");

    // Moves are still judged: an illegal one, and a legal one by a writer who may not move it.
    denied_by_validate(
        &ctx,
        merge_status(&ctl, &name, json!({"phase": "Pending"})),
        "Running → Pending",
        "illegal phase transition Running → Pending",
    )
    .await?;
    denied_by_validate(
        &ctx,
        merge_status(&ctx.operator(), &name, json!({"phase": "Completed"})),
        "the operator's Running → Completed",
        "only controller may change the phase",
    )
    .await?;
    // A move the table allows, by the phase's owner, cannot be denied: no call. The mutating
    // webhook still stamps its time.
    let (moved, _, v) = counted(
        &ctx,
        merge_status(&ctl, &name, json!({"phase": "Completed"})),
    )
    .await;
    let moved = moved.context("Running → Completed")?;
    ensure!(v == 0, "a legal move reached /validate {v} times");
    let stored = &moved.data["status"];
    ensure!(
        stored["phase"] == "Completed" && stored["completionTime"].is_string(),
        "Running → Completed: {stored}"
    );

    // The orchestrator's one move is skipped too; any other move of its reaches /validate.
    let orchestrator = ctx.orchestrator();
    let child = ctx.create_in("match-cascade", &["Running"]).await?;
    denied_by_validate(
        &ctx,
        merge_status(&orchestrator, &child, json!({"phase": "Completed"})),
        "the orchestrator's Running → Completed",
        "orchestrator may only move Pending, Running → Failed",
    )
    .await?;
    let (cascaded, _, v) = counted(
        &ctx,
        merge_status(
            &orchestrator,
            &child,
            json!({"phase": "Failed", "failureReason": "ParentCancelled"}),
        ),
    )
    .await;
    cascaded.context("the orchestrator's Running → Failed")?;
    ensure!(
        v == 0,
        "the orchestrator's cascade reached /validate {v} times"
    );

    // A clearance (attributed by /mutate) changes blockClearance: validated; repeating the
    // stored one does not.
    let name = ctx.create_in("match-clearance", &["Failed"]).await?;
    let clearance =
        json!({"blockClearance": {"clearReason": CLEAR_REASON, "clearMethod": "StatusField"}});
    let (cleared, _, v) = counted(
        &ctx,
        merge_status(&ctx.operator(), &name, clearance.clone()),
    )
    .await;
    cleared.context("the operator's clearance")?;
    ensure!(v >= 1, "a new clearance did not reach /validate");
    let (again, _, v) = counted(&ctx, merge_status(&ctx.operator(), &name, clearance)).await;
    again.context("the same clearance again")?;
    ensure!(v == 0, "an unchanged clearance reached /validate {v} times");
    Ok(())
}
