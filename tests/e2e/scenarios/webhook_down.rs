//! Scenario 7: with `failurePolicy: Fail`, status writes fail while the webhook is down, with an
//! error that says so; once it is back on the same address, writes succeed again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::json;

use crate::cluster::{self, api_error, merge_status, rv, status_of, text};
use crate::harness::{Ctx, NS};
use wfe_admission::cli::verify::verify;
use wfe_admission::config::Config;
use wfe_admission::policy::Policy;
use wfe_bench::e2e::{Scrapes, apiserver_metrics};

pub async fn fails_closed(ctx: Arc<Ctx>) -> Result<()> {
    let name = ctx.create_in("webhook-down", &["Running"]).await?;
    ctx.webhook.stop().await;
    // Whatever happens below, the webhook comes back for the scenarios after this one.
    let down = while_down(&ctx, &name).await;
    let restarted = Instant::now();
    ctx.webhook.restart().await?;
    down?;

    let ctl = ctx.controller();
    let name2 = name.clone();
    let attempts = cluster::eventually(
        "a status write to succeed after the restart",
        Duration::from_secs(30),
        || {
            let (ctl, name) = (ctl.clone(), name2.clone());
            async move {
                let patch = json!({"executionStatus": {"status": "True", "reason": "Back", "message": "webhook is back"}});
                Ok(merge_status(&ctl, &name, patch).await.ok())
            }
        },
    )
    .await?;
    println!(
        "    writes succeed again {:.2} s after the restart on {}",
        restarted.elapsed().as_secs_f64(),
        ctx.webhook.addr
    );
    let st = status_of(&attempts);
    ensure!(
        st.get("executionStatus").and_then(|s| s.get("reason")) == Some(&json!("Back")),
        "{st:?}"
    );
    // And the webhook is really in the path again: an illegal move is denied.
    let result = merge_status(&ctl, &name, json!({"phase": "Pending"})).await;
    let (code, message) = api_error(result, "Running → Pending after the restart")?;
    ensure!(
        code == 403 && message.contains("Running → Pending"),
        "{message}"
    );
    Ok(())
}

async fn while_down(ctx: &Ctx, name: &str) -> Result<()> {
    let before = ctx.stored(name).await?;
    let metrics_before = apiserver_metrics(&ctx.clients.admin).await;
    let result = merge_status(&ctx.controller(), name, json!({"phase": "Completed"})).await;
    let (code, message) = api_error(result, "a status write while the webhook is down")?;
    println!("    webhook down: HTTP {code}: {message}");
    ensure!(
        message.contains("failed calling webhook")
            && message.contains("mutate.wfe-admission.kubernaut.ai"),
        "the API server says it could not call the webhook: {message}"
    );
    ensure!(code >= 500, "HTTP {code}: {message}");
    // The series the chart's WfeAdmissionCallsFailing alert sums, as this API server names it.
    let metrics_after = apiserver_metrics(&ctx.clients.admin).await;
    let scrapes = Scrapes::between(&metrics_before, &metrics_after);
    let failed_calls = scrapes.grew(
        "apiserver_admission_webhook_rejection_count",
        "error_type=\"calling_webhook_error\",name=\"status.mutate.wfe-admission.kubernaut.ai\"",
    );
    ensure!(
        failed_calls >= 1.0,
        "the API server counted no calling_webhook_error rejection for the mutating webhook:\n{}",
        metrics_after
            .lines()
            .filter(|l| l.starts_with("apiserver_admission_webhook_rejection_count"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // `verify` fails too, passing on the API server's reason.
    let policy = Policy::new(Config::default())?;
    let report = verify(&ctx.clients.operator, &policy, Some(NS), Some(name))
        .await
        .map_err(anyhow::Error::msg)?;
    println!("    verify while down: {report:?}");
    ensure!(
        !report.passed()
            && report
                .checks
                .iter()
                .all(|c| !c.passed && c.detail.contains("failed calling webhook")),
        "{report:?}"
    );
    let after = ctx.stored(name).await.context("reading while down")?;
    ensure!(
        rv(&after) == rv(&before) && text(&status_of(&after), "phase") == Some("Running"),
        "nothing was stored while the webhook was down"
    );
    Ok(())
}
