//! Scenario 6: controller, executor and operator write 100 times each, concurrently, with
//! read-modify-write PUTs (retried on 409) and merge patches. Nothing any of them wrote last is
//! lost, no legal write is denied, and a watch sees only legal phase moves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures_util::TryStreamExt as _;
use kube::api::{Api, WatchEvent, WatchParams};
use kube::core::DynamicObject;
use serde_json::{Value, json};
use tokio::sync::watch;
use wfe_bench::e2e::series_total;

use super::{CLEAR_REASON, condition};
use crate::cluster::{merge_status, put_status, rv, status_of, text};
use crate::harness::Ctx;

const UPDATES: usize = 100;

fn phase_at(i: usize) -> Option<&'static str> {
    match i {
        0..10 => None,
        10..90 => Some("Running"),
        _ => Some("Completed"),
    }
}

async fn controller(api: Api<DynamicObject>, name: String) -> Result<u32> {
    let mut conflicts = 0;
    for i in 0..UPDATES {
        let phase = phase_at(i);
        if i % 2 == 0 {
            let (_, c) = put_status(&api, &name, |s| {
                if let Some(p) = phase {
                    s.insert("phase".into(), json!(p));
                }
                s.insert(
                    "executionStatus".into(),
                    json!({"status": "Unknown", "reason": "Progress", "message": format!("step {i}"),
                           "completedTasks": i, "totalTasks": UPDATES}),
                );
            })
            .await
            .with_context(|| format!("controller PUT {i}"))?;
            conflicts += c;
        } else {
            let mut status = json!({"conditions": [{
                "type": "ExecutionRunning", "status": "True", "reason": "Progress",
                "message": format!("step {i}")
            }]});
            if let Some(p) = phase {
                status["phase"] = json!(p);
            }
            merge_status(&api, &name, status)
                .await
                .with_context(|| format!("controller merge patch {i}"))?;
        }
    }
    Ok(conflicts)
}

async fn executor(api: Api<DynamicObject>, name: String) -> Result<u32> {
    let mut conflicts = 0;
    for i in 0..UPDATES {
        let (_, c) = put_status(&api, &name, |s| {
            let ids = s
                .entry("ephemeralCredentialIDs")
                .or_insert_with(|| json!([]));
            if let Value::Array(ids) = ids {
                ids.push(json!(i));
            }
        })
        .await
        .with_context(|| format!("executor PUT {i}"))?;
        conflicts += c;
    }
    Ok(conflicts)
}

fn reason(i: usize) -> String {
    format!("{CLEAR_REASON} (review {i})")
}

async fn operator(api: Api<DynamicObject>, name: String) -> Result<u32> {
    let mut conflicts = 0;
    for i in 0..UPDATES {
        if i % 2 == 0 {
            let (_, c) = put_status(&api, &name, |s| {
                let bc = s
                    .entry("blockClearance")
                    .or_insert_with(|| json!({"clearMethod": "StatusField"}));
                bc["clearReason"] = json!(reason(i));
            })
            .await
            .with_context(|| format!("operator PUT {i}"))?;
            conflicts += c;
        } else {
            merge_status(
                &api,
                &name,
                json!({"blockClearance": {"clearReason": reason(i), "clearMethod": "StatusField"}}),
            )
            .await
            .with_context(|| format!("operator merge patch {i}"))?;
        }
    }
    Ok(conflicts)
}

/// Every phase the object goes through, from `from_rv` until the version `until` names.
async fn watch_phases(
    api: Api<DynamicObject>,
    name: String,
    from_rv: String,
    mut until: watch::Receiver<Option<String>>,
) -> Result<(Vec<String>, usize)> {
    let params = WatchParams::default()
        .fields(&format!("metadata.name={name}"))
        .timeout(240);
    let stream = api.watch(&params, &from_rv).await?;
    futures_util::pin_mut!(stream);
    // Created without a status, that is Pending.
    let (mut phases, mut versions, mut last_rv) = (vec!["Pending".to_string()], 0, String::new());
    loop {
        if until.borrow().as_deref() == Some(last_rv.as_str()) {
            return Ok((phases, versions));
        }
        tokio::select! {
            event = stream.try_next() => match event? {
                Some(WatchEvent::Added(o) | WatchEvent::Modified(o)) => {
                    versions += 1;
                    last_rv = rv(&o);
                    let phase = text(&status_of(&o), "phase").unwrap_or("Pending").to_string();
                    if phases.last() != Some(&phase) {
                        phases.push(phase);
                    }
                }
                Some(WatchEvent::Error(e)) => bail!("watch error: {e:?}"),
                Some(_) => {}
                None => bail!("the watch ended before the last version"),
            },
            changed = until.changed() => changed?,
        }
    }
}

/// Denials the webhook answered so far (all endpoints and reasons).
pub fn denials(ctx: &Ctx) -> f64 {
    series_total(
        &ctx.webhook.metrics.encode(),
        "wfe_admission_denials_total",
        "",
    )
}

pub async fn three_writers(ctx: Arc<Ctx>) -> Result<()> {
    let name = ctx.create("concurrent").await?;
    let created = ctx.stored(&name).await?;
    let (tx, rx) = watch::channel(None);
    let watcher = tokio::spawn(watch_phases(ctx.admin(), name.clone(), rv(&created), rx));
    let denials_before = denials(&ctx);

    let started = Instant::now();
    let (c, e, o) = tokio::try_join!(
        controller(ctx.controller(), name.clone()),
        executor(ctx.executor(), name.clone()),
        operator(ctx.operator(), name.clone()),
    )?;
    let took = started.elapsed();
    println!(
        "    {} updates in {:.1} s; 409 conflicts retried: controller {c}, executor {e}, operator {o}",
        3 * UPDATES,
        took.as_secs_f64()
    );
    ensure!(
        denials(&ctx) == denials_before,
        "the webhook denied a legal write during the run"
    );

    let last = ctx.stored(&name).await?;
    let st = status_of(&last);
    ensure!(text(&st, "phase") == Some("Completed"), "{st:?}");
    let ids: Vec<usize> = (0..UPDATES).collect();
    ensure!(
        st.get("ephemeralCredentialIDs") == Some(&json!(ids)),
        "every executor append is there, in order: {:?}",
        st.get("ephemeralCredentialIDs")
    );
    ensure!(
        st.get("executionStatus")
            .and_then(|s| s.get("message"))
            .and_then(Value::as_str)
            == Some("step 98"),
        "the controller's last executionStatus: {:?}",
        st.get("executionStatus")
    );
    ensure!(
        condition(&st, "ExecutionRunning")
            .and_then(|c| c.get("message"))
            .and_then(Value::as_str)
            == Some("step 99"),
        "the controller's last condition: {:?}",
        st.get("conditions")
    );
    let bc = st.get("blockClearance").context("blockClearance lost")?;
    ensure!(
        bc.get("clearReason") == Some(&json!(reason(UPDATES - 1)))
            && bc.get("clearedBy") == Some(&json!(ctx.users.operator)),
        "the operator's last clearance: {bc:?}"
    );
    for field in ["startTime", "completionTime", "duration"] {
        ensure!(st.contains_key(field), "{field} derived: {st:?}");
    }

    tx.send(Some(rv(&last)))?;
    let (phases, versions) = tokio::time::timeout(Duration::from_secs(30), watcher)
        .await
        .context("the watch did not reach the last version")???;
    println!("    the watch saw {versions} versions, phases {phases:?}");
    ensure!(
        phases == ["Pending", "Running", "Completed"],
        "phase moves seen by the watch: {phases:?}"
    );
    let policy = ctx.webhook.policy.load();
    for pair in phases.windows(2) {
        policy
            .phases
            .check(&pair[0], &pair[1])
            .map_err(|e| anyhow::anyhow!("{}", e.what()))?;
    }
    Ok(())
}
