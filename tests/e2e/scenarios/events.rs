//! Scenario 10: a correction is recorded as a StatusFieldRestored Event, and a repeated denial
//! aggregates into the same Event's series instead of a new Event.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::json;

use crate::cluster::{self, api_error, merge_status, put_status, status_of};
use crate::harness::{Ctx, NS};

pub async fn corrections_and_series(ctx: Arc<Ctx>) -> Result<()> {
    let admin = ctx.clients.admin.clone();

    // The operator changes a field the controller owns: the webhook puts it back.
    let name = ctx.create_in("events-correction", &["Running"]).await?;
    merge_status(
        &ctx.controller(),
        &name,
        json!({"executionRef": {"name": "job-1"}}),
    )
    .await?;
    merge_status(
        &ctx.operator(),
        &name,
        json!({"executionRef": {"name": "job-forged"}}),
    )
    .await
    .context("the operator's write is allowed, and corrected")?;
    let st = status_of(&ctx.stored(&name).await?);
    ensure!(
        st.get("executionRef") == Some(&json!({"name": "job-1"})),
        "the controller's value was restored: {st:?}"
    );
    let list = cluster::wait_events(
        &admin,
        NS,
        "StatusFieldRestored",
        &name,
        Duration::from_secs(15),
    )
    .await?;
    let event = &list[0];
    let note = event.note.clone().unwrap_or_default();
    println!("    StatusFieldRestored: {note}");
    ensure!(
        note.contains("executionRef") && note.contains(&ctx.users.operator),
        "the Event names the field and the writer: {note:?}"
    );
    ensure!(event.type_.as_deref() == Some("Warning"), "{event:?}");

    // The same denial twice on one object: one Event whose series counts both.
    let name = ctx
        .create_in("events-series", &["Running", "Completed"])
        .await?;
    for attempt in 1..=2 {
        let result = put_status(&ctx.controller(), &name, |s| {
            s.insert("phase".into(), json!("Running"));
        })
        .await;
        api_error(result, &format!("Completed → Running, attempt {attempt}"))?;
    }
    let (count, events) = cluster::eventually(
        "the Event's series to count 2",
        Duration::from_secs(20),
        || {
            let (admin, name) = (admin.clone(), name.clone());
            async move {
                let list = cluster::events(&admin, NS, "IllegalPhaseTransition", &name).await?;
                let count = list
                    .first()
                    .and_then(|e| e.series.as_ref())
                    .map(|s| s.count)
                    .unwrap_or(1);
                Ok((count >= 2 || list.len() > 1).then_some((count, list.len())))
            }
        },
    )
    .await?;
    println!("    IllegalPhaseTransition: {events} Event, series.count {count}");
    ensure!(
        events == 1,
        "repeats aggregate into one Event, found {events}"
    );
    Ok(())
}

/// Quick `Running` then `Completed` writes make the API server judge some `Completed` writes
/// against its stale cached copy (`Pending → Completed`, denied) before it retries with the
/// stored object (allowed). The writer never sees those denials; no Event may report them.
pub async fn superseded_denials_are_not_recorded(ctx: Arc<Ctx>) -> Result<()> {
    const OBJECTS: usize = 25;
    let ctl = ctx.controller();
    let denied_before = super::concurrent::denials(&ctx);
    let mut names = Vec::new();
    for _ in 0..OBJECTS {
        names.push(ctx.create("superseded").await?);
    }
    // All at once: a busy API server's watch cache lags more often.
    let walks = names.iter().map(|name| {
        let ctl = ctl.clone();
        async move {
            for phase in ["Running", "Completed"] {
                merge_status(&ctl, name, json!({ "phase": phase }))
                    .await
                    .with_context(|| format!("{name} → {phase}: a legal move"))?;
            }
            Ok::<_, anyhow::Error>(())
        }
    });
    futures_util::future::try_join_all(walks).await?;
    let stale = super::concurrent::denials(&ctx) - denied_before;
    println!("    {stale} of {OBJECTS} Completed writes were first judged against a stale copy");

    // Once a later real denial's Event exists, the superseded ones have been dealt with.
    super::events_flushed(&ctx, "superseded-witness").await?;
    let admin = ctx.clients.admin.clone();
    for name in &names {
        let list = cluster::events(&admin, NS, "IllegalPhaseTransition", name).await?;
        let notes: Vec<_> = list.iter().filter_map(|e| e.note.clone()).collect();
        ensure!(
            list.is_empty(),
            "{name}: superseded denials recorded: {notes:#?}"
        );
    }
    Ok(())
}
