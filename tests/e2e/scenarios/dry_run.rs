//! Scenario 5: `dryRun=All` (what `kubectl --dry-run=server` sends) gets the verdict and leaves
//! no Event and no change.

use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use kube::api::PostParams;
use serde_json::json;

use crate::cluster::{self, api_error, put_status_with, rv, status_of, text};
use crate::harness::{Ctx, NS};

pub async fn dry_run(ctx: Arc<Ctx>) -> Result<()> {
    let ctl = ctx.controller();

    // An illegal move, dry-run: denied with our message, nothing stored.
    let name = ctx
        .create_in("dry-illegal", &["Running", "Completed"])
        .await?;
    let before = ctx.stored(&name).await?;
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let result = put_status_with(&ctl, &name, &dry, &mut |s| {
        s.insert("phase".into(), json!("Running"));
    })
    .await;
    let (code, message) = api_error(result, "a dry-run of Completed → Running")?;
    ensure!(code == 403, "HTTP {code}: {message}");
    ensure!(
        message.contains("illegal phase transition Completed → Running"),
        "{message}"
    );
    let result = cluster::dry_merge_status(&ctl, &name, json!({"phase": "Pending"})).await;
    let (code, message) = api_error(result, "a dry-run merge patch of Completed → Pending")?;
    ensure!(
        code == 403 && message.contains("Completed → Pending"),
        "HTTP {code}: {message}"
    );
    let after = ctx.stored(&name).await?;
    ensure!(rv(&after) == rv(&before), "a dry-run changed storage");

    // No Event: once a later real denial's Event exists, one for the dry-runs would too.
    super::events_flushed(&ctx, "dry-witness").await?;
    let list = cluster::events(&ctx.clients.admin, NS, "IllegalPhaseTransition", &name).await?;
    ensure!(list.is_empty(), "dry-runs recorded Events: {list:?}");

    // A legal move, dry-run: the answer is the mutated object, storage is unchanged.
    let name = ctx.create("dry-legal").await?;
    let before = ctx.stored(&name).await?;
    let answer = cluster::dry_merge_status(&ctl, &name, json!({"phase": "Running"}))
        .await
        .context("dry-run of Pending → Running")?;
    let st = status_of(&answer);
    ensure!(text(&st, "phase") == Some("Running"), "{st:?}");
    ensure!(
        st.contains_key("startTime"),
        "the dry-run answer carries the webhook's mutation: {st:?}"
    );
    let after = ctx.stored(&name).await?;
    ensure!(
        rv(&after) == rv(&before) && status_of(&after).is_empty(),
        "a dry-run stored something: {:?}",
        status_of(&after)
    );
    Ok(())
}
