//! Scenarios 1 and 2: the legal lifecycle with the fields the webhook derives, and illegal moves
//! denied with the spec's message, nothing stored, and an Event an admin finds the way the spec
//! says (`kubectl get events --field-selector reason=IllegalPhaseTransition`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::Event as CoreEvent;
use kube::api::{Api, ListParams};
use serde_json::json;
use wfe_admission::policy::time;

use super::{failure_details, recent};
use crate::cluster::{self, api_error, put_status, status_of, text};
use crate::harness::{Ctx, NS};

/// Pending → Running → Completed and Pending → Failed, the writer sending only the phase.
pub async fn legal(ctx: Arc<Ctx>) -> Result<()> {
    let ctl = ctx.controller();
    let name = ctx.create("lifecycle").await?;
    // Pending → Running with a full PUT that carries no startTime.
    let (running, _) = put_status(&ctl, &name, |s| {
        s.insert("phase".into(), json!("Running"));
        s.insert(
            "executionRef".into(),
            json!({"name": format!("{name}-job")}),
        );
    })
    .await
    .context("Pending → Running")?;
    let st = status_of(&running);
    ensure!(text(&st, "phase") == Some("Running"), "stored {st:?}");
    let start = recent(&st, "startTime").context("the webhook stamps startTime")?;
    ensure!(
        !st.contains_key("completionTime") && !st.contains_key("duration"),
        "a running execution has no completionTime/duration yet: {st:?}"
    );

    // Let the clock move so that the duration is not 0s.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Running → Completed with a JSON merge patch of the phase alone.
    cluster::merge_status(&ctl, &name, json!({"phase": "Completed"}))
        .await
        .context("Running → Completed")?;
    let st = status_of(&ctx.stored(&name).await?);
    ensure!(text(&st, "phase") == Some("Completed"), "stored {st:?}");
    ensure!(
        text(&st, "startTime").and_then(time::parse) == Some(start),
        "startTime is write-once: {st:?}"
    );
    let end = recent(&st, "completionTime").context("the webhook stamps completionTime")?;
    ensure!(end > start, "completionTime {end} after startTime {start}");
    let duration = text(&st, "duration").context("duration is derived")?;
    ensure!(
        duration == time::go_duration(start, end),
        "duration {duration} is completionTime - startTime ({start} → {end}) in Go syntax"
    );
    ensure!(duration != "0s" && duration.ends_with('s'), "{duration}");
    println!("    Completed: startTime {start}, completionTime {end}, duration {duration}");

    // Pending → Failed, with failureDetails but no failureReason and no times.
    let name = ctx.create("lifecycle-failed").await?;
    cluster::merge_status(
        &ctl,
        &name,
        json!({"phase": "Failed", "failureDetails": failure_details("OOMKilled")}),
    )
    .await
    .context("Pending → Failed")?;
    let st = status_of(&ctx.stored(&name).await?);
    ensure!(text(&st, "phase") == Some("Failed"), "stored {st:?}");
    recent(&st, "completionTime").context("entering Failed stamps completionTime")?;
    ensure!(
        text(&st, "failureReason") == Some("OOMKilled"),
        "failureReason mirrors failureDetails.reason: {st:?}"
    );
    ensure!(
        !st.contains_key("startTime") && !st.contains_key("duration"),
        "it never ran, so no startTime and no duration: {st:?}"
    );
    Ok(())
}

/// Completed → Running, Failed → Completed, Running → Pending.
pub async fn illegal(ctx: Arc<Ctx>) -> Result<()> {
    let cases: [(&[&str], &str, &str); 3] = [
        (
            &["Running", "Completed"],
            "Running",
            "Completed is terminal, it can only stay Completed",
        ),
        (
            &["Failed"],
            "Completed",
            "Failed is terminal, it can only stay Failed",
        ),
        (
            &["Running"],
            "Pending",
            "from Running the legal moves are to Completed, Failed",
        ),
    ];
    for (path, to, legal) in cases {
        let from = path.last().copied().unwrap_or("Pending");
        let name = ctx.create_in("illegal", path).await?;
        let before = ctx.stored(&name).await?;
        // A full PUT with the read resourceVersion, as a controller would send it.
        let result = put_status(&ctx.controller(), &name, |s| {
            s.insert("phase".into(), json!(to));
        })
        .await;
        let (code, message) = api_error(result, &format!("{from} → {to}"))?;
        println!("    {from} → {to}: HTTP {code}: {message}");
        ensure!(code == 403, "HTTP {code}, want 403: {message}");
        for part in [
            format!("WorkflowExecution {NS}/{name}"),
            format!("illegal phase transition {from} → {to}"),
            format!("by {} (controller)", ctx.users.controller),
            legal.to_string(),
        ] {
            ensure!(message.contains(&part), "{message:?} lacks {part:?}");
        }
        ensure!(!message.contains('\n'), "one line: {message:?}");

        let after = ctx.stored(&name).await?;
        ensure!(
            cluster::rv(&after) == cluster::rv(&before) && status_of(&after) == status_of(&before),
            "storage changed after a denial"
        );

        let uid = before.metadata.uid.clone();
        let admin = ctx.clients.admin.clone();
        let list = cluster::wait_events(
            &admin,
            NS,
            "IllegalPhaseTransition",
            &name,
            Duration::from_secs(15),
        )
        .await?;
        // Walking the object to `from` quickly makes the API server judge some of those moves
        // against its stale cached copy first (and deny them) before it retries with the stored
        // object; those denials are superseded and must not show up as Events.
        let notes: Vec<_> = list.iter().filter_map(|e| e.note.clone()).collect();
        ensure!(list.len() == 1, "one Event for one denial, got {notes:#?}");
        let event = &list[0];
        let regarding = event.regarding.clone().unwrap_or_default();
        ensure!(regarding.uid == uid, "Event regards {regarding:?}");
        ensure!(
            regarding.kind.as_deref() == Some("WorkflowExecution"),
            "{regarding:?}"
        );
        ensure!(event.type_.as_deref() == Some("Warning"), "{event:?}");
        let note = event.note.clone().unwrap_or_default();
        ensure!(
            note.contains(&format!("{from} → {to}")) && note.contains(&ctx.users.controller),
            "the Event names the move and the writer: {note:?}"
        );
        ensure!(
            event.reporting_controller.as_deref() == Some("wfe-admission"),
            "{event:?}"
        );
        // What the admin sees: `kubectl get events -A --field-selector
        // reason=IllegalPhaseTransition` lists the core/v1 view, across namespaces.
        let seen = Api::<CoreEvent>::all(admin.clone())
            .list(&ListParams::default().fields("reason=IllegalPhaseTransition"))
            .await
            .context("listing core/v1 Events as kubectl get events -A does")?;
        let mine: Vec<_> = seen
            .items
            .iter()
            .filter(|e| e.involved_object.uid == uid)
            .collect();
        ensure!(
            mine.len() == 1
                && mine[0].message.as_deref() == Some(note.as_str())
                && mine[0].type_.as_deref() == Some("Warning")
                && mine[0].involved_object.namespace.as_deref() == Some(NS),
            "kubectl's view of the denial: {mine:#?}"
        );
    }
    Ok(())
}
