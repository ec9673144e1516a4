//! Scenario 9: `repair` finds stored objects whose status breaks the derived-field rules and
//! fixes each with exactly one write; consistent ones are untouched; a second run repairs
//! nothing; a racing writer costs one retried write and loses nothing.
//!
//! The broken states can only be stored around the webhook, so `prepare` writes them as the
//! admin before the webhook configurations exist.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result, anyhow, ensure};
use kube::Client;
use serde_json::{Value, json};
use wfe_admission::cli::repair::repair as run_repair;
use wfe_admission::metrics::{Attempt, Metrics};
use wfe_admission::retry::RetryingWriter;
use wfe_admission::status::StatusManager;

use super::manager::racing_writer;
use super::{failure_details, recent};
use crate::cluster::{self, put_status, rv, status_of, text, wfe_api};
use crate::harness::Ctx;

pub const NS_REPAIR: &str = "e2e-repair";
pub const NS_RACE: &str = "e2e-repair-race";
const T0: &str = "2026-01-01T10:00:00Z";
const T1: &str = "2026-01-01T10:03:30Z";

pub struct Fixture {
    /// name -> resourceVersion as prepared, for every object in NS_REPAIR.
    pub prepared: BTreeMap<String, String>,
}

fn broken() -> Vec<(&'static str, Value)> {
    vec![
        (
            "stale-duration",
            json!({"phase": "Completed", "startTime": T0, "completionTime": T1, "duration": "1m"}),
        ),
        (
            "missing-mirror",
            json!({"phase": "Failed", "startTime": T0, "completionTime": T1, "duration": "3m30s",
                   "failureDetails": failure_details("TaskFailed")}),
        ),
        ("missing-start", json!({"phase": "Running"})),
        (
            "missing-completion",
            json!({"phase": "Completed", "startTime": T0}),
        ),
    ]
}

fn consistent() -> Vec<(&'static str, Option<Value>)> {
    vec![
        (
            "consistent-completed",
            Some(
                json!({"phase": "Completed", "startTime": T0, "completionTime": T1, "duration": "3m30s"}),
            ),
        ),
        (
            "consistent-running",
            Some(json!({"phase": "Running", "startTime": T0})),
        ),
        ("consistent-new", None),
    ]
}

async fn store(admin: &Client, ns: &str, name: &str, status: Option<Value>) -> Result<String> {
    let created = cluster::create_wfe(admin, ns, name).await?;
    let Some(status) = status else {
        return Ok(rv(&created));
    };
    let (stored, _) = put_status(&wfe_api(admin, ns), name, |s| {
        *s = status.as_object().cloned().unwrap_or_default();
    })
    .await
    .with_context(|| format!("storing the status of {ns}/{name}"))?;
    Ok(rv(&stored))
}

pub async fn prepare(admin: &Client) -> Result<Fixture> {
    cluster::create_namespace(admin, NS_REPAIR).await?;
    cluster::create_namespace(admin, NS_RACE).await?;
    let mut prepared = BTreeMap::new();
    for (name, status) in broken() {
        prepared.insert(
            name.to_string(),
            store(admin, NS_REPAIR, name, Some(status)).await?,
        );
    }
    for (name, status) in consistent() {
        prepared.insert(
            name.to_string(),
            store(admin, NS_REPAIR, name, status).await?,
        );
    }
    // Running without startTime: a write that keeps the phase does not stamp it (only entering
    // Running does), so the racing write below leaves it for the repair. A stale duration would
    // not do: every write through the webhook recomputes it.
    store(admin, NS_RACE, "raced", Some(json!({"phase": "Running"}))).await?;
    Ok(Fixture { prepared })
}

pub async fn repair(ctx: Arc<Ctx>) -> Result<()> {
    let fixture = ctx.repair.as_ref().map_err(|e| anyhow!("{e}"))?;
    let policy = ctx.webhook.policy.load_full();
    let client = &ctx.clients.webhook;
    let api = wfe_api(&ctx.clients.admin, NS_REPAIR);
    let versions = |list: kube::core::ObjectList<kube::core::DynamicObject>| {
        list.into_iter()
            .map(|o| (o.metadata.name.clone().unwrap_or_default(), rv(&o)))
            .collect::<BTreeMap<_, _>>()
    };
    let metrics = Metrics::new();
    let manager = StatusManager::new(metrics.clone());

    // --dry-run: reports the same objects, writes nothing.
    let dry = run_repair(client, &policy, &manager, Some(NS_REPAIR), true)
        .await
        .map_err(|e| anyhow!(e))?;
    ensure!(dry.repaired == 4 && dry.writes == 0, "{dry:?}");
    let listed = versions(api.list(&Default::default()).await?);
    ensure!(listed == fixture.prepared, "a dry run changed something");

    let summary = run_repair(client, &policy, &manager, Some(NS_REPAIR), false)
        .await
        .map_err(|e| anyhow!(e))?;
    println!("    first run: {summary:?}");
    ensure!(
        summary.checked == 7 && summary.repaired == 4 && summary.failed == 0,
        "{summary:?}"
    );
    ensure!(
        summary.writes as usize == summary.repaired,
        "exactly one write per repaired object: {summary:?}"
    );
    ensure!(
        metrics.status_writes_count(Attempt::Success) == 4
            && metrics.status_writes_count(Attempt::Conflict) == 0,
        "{}",
        metrics.encode()
    );

    let listed = versions(api.list(&Default::default()).await?);
    for (name, _) in consistent() {
        ensure!(
            listed.get(name) == fixture.prepared.get(name),
            "{name} was consistent and must not be written"
        );
    }
    let get = |name: &'static str| {
        let api = api.clone();
        async move { Ok::<_, anyhow::Error>(status_of(&api.get_status(name).await?)) }
    };
    let st = get("stale-duration").await?;
    ensure!(text(&st, "duration") == Some("3m30s"), "{st:?}");
    let st = get("missing-mirror").await?;
    ensure!(text(&st, "failureReason") == Some("TaskFailed"), "{st:?}");
    let st = get("missing-start").await?;
    recent(&st, "startTime")?;
    let st = get("missing-completion").await?;
    recent(&st, "completionTime")?;
    ensure!(
        text(&st, "duration").is_some_and(|d| d.contains('h')),
        "duration from 2026-01-01 to now: {st:?}"
    );

    let again = run_repair(client, &policy, &manager, Some(NS_REPAIR), false)
        .await
        .map_err(|e| anyhow!(e))?;
    ensure!(
        again.checked == 7 && again.repaired == 0 && again.writes == 0,
        "a second run repairs nothing: {again:?}"
    );

    // A controller write races the repair's first attempt: one 409, one retried write.
    let race_metrics = Metrics::new();
    let (hook, raced) = racing_writer(
        wfe_api(&ctx.clients.controller, NS_RACE),
        "raced",
        json!({"executionStatus": {"status": "True", "reason": "Racing", "message": "a competing write"}}),
    );
    let racing =
        StatusManager::with_writer(RetryingWriter::new(race_metrics.clone()).with_race_hook(hook));
    let summary = run_repair(client, &policy, &racing, Some(NS_RACE), false)
        .await
        .map_err(|e| anyhow!(e))?;
    println!("    raced run: {summary:?}");
    ensure!(raced.load(Ordering::SeqCst) == 1, "the racer ran");
    ensure!(
        summary.repaired == 1 && summary.writes == 2 && summary.failed == 0,
        "one conflicting attempt, then one write: {summary:?}"
    );
    ensure!(
        race_metrics.status_writes_count(Attempt::Conflict) == 1
            && race_metrics.status_writes_count(Attempt::Success) == 1,
        "{}",
        race_metrics.encode()
    );
    let st = status_of(
        &wfe_api(&ctx.clients.admin, NS_RACE)
            .get_status("raced")
            .await?,
    );
    recent(&st, "startTime")?;
    ensure!(
        st.get("executionStatus").and_then(|s| s.get("reason")) == Some(&json!("Racing")),
        "the racing write survived: {st:?}"
    );
    Ok(())
}
