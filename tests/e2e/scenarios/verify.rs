//! `wfe-admission verify`: with both webhooks registered it passes, leaving nothing stored and no
//! Event; against a CRD copy no webhook guards it fails, saying which webhook is missing; with
//! no object to write to it checks on one it makes and deletes, and where it cannot make one it
//! cannot tell and says so. (Webhook down: `webhook_down.rs`.)

use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use serde_json::json;
use wfe_admission::cli::verify::{FORGED, verify};
use wfe_admission::config::Config;
use wfe_admission::policy::Policy;

use super::Ran;
use crate::cluster::{self, UNGUARDED_GROUP, create_wfe_in, put_status, rv, wfe_api_in};
use crate::harness::{Ctx, NS};

pub async fn both_webhooks(ctx: Arc<Ctx>) -> Result<()> {
    let name = ctx.create_in("verify", &["Running"]).await?;
    let before = ctx.stored(&name).await?;
    let policy = Policy::new(Config::default())?;

    let report = verify(&ctx.clients.operator, &policy, Some(NS), Some(&name))
        .await
        .map_err(anyhow::Error::msg)?;
    println!("    {report:?}");
    ensure!(report.passed(), "{report:?}");
    let [validating, mutating] = &report.checks[..] else {
        anyhow::bail!("two checks expected: {report:?}");
    };
    ensure!(
        validating.detail.contains("Running → Pending")
            && validating
                .detail
                .contains("\"status.validate.wfe-admission.kubernaut.ai\" denied the request"),
        "{validating:?}"
    );
    // The operator's clearance, attributed to the operator whatever `verify` sent.
    ensure!(
        mutating
            .detail
            .contains(&format!("{:?}", ctx.users.operator)),
        "{mutating:?}"
    );
    // As the controller, which owns the phase and may not clear blocks: the move is still
    // illegal, and the clearance is taken out.
    let report = verify(&ctx.clients.controller, &policy, Some(NS), Some(&name))
        .await
        .map_err(anyhow::Error::msg)?;
    ensure!(
        report.passed()
            && report.checks[0]
                .detail
                .contains("illegal phase transition Running → Pending")
            && report.checks[1].detail.ends_with("came back removed"),
        "{report:?}"
    );
    let after = ctx.stored(&name).await?;
    ensure!(rv(&after) == rv(&before), "verify stored something");
    super::events_flushed(&ctx, "verify-witness").await?;
    for reason in [
        "IllegalPhaseTransition",
        "PhaseNotOwned",
        "StatusFieldRestored",
    ] {
        let list = cluster::events(&ctx.clients.admin, NS, reason, &name).await?;
        ensure!(list.is_empty(), "verify left {reason} Events: {list:?}");
    }

    // The binary, as an admin runs it: the first object of the namespace, exit 0.
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("operator");
    ctx.access
        .write_kubeconfig(&kubeconfig, &ctx.access.operator_token)?;
    let ran = run_verify(&kubeconfig, &["--namespace", NS])?;
    ensure!(
        ran.code == Some(0)
            && ran.stdout.contains("ok   validating:")
            && ran.stdout.contains("ok   mutating:"),
        "{ran:#?}"
    );

    // A named object that does not exist: the API server's answer, in one line.
    let missing = verify(
        &ctx.clients.operator,
        &policy,
        Some(NS),
        Some("verify-missing"),
    )
    .await;
    ensure!(
        missing.as_ref().is_err_and(|e| e
            .starts_with("cannot read workflowexecutions verify-missing: HTTP 404: ")
            && !e.contains('\n')),
        "{missing:?}"
    );
    // Right after an install, no object to write to: as the admin, it checks on one it makes
    // and deletes, leaving nothing behind.
    let fresh = super::unique("verify-fresh");
    cluster::create_namespace(&ctx.clients.admin, &fresh).await?;
    let admin = std::path::Path::new(&ctx.access.admin_kubeconfig);
    let ran = run_verify(
        admin,
        &[
            "--namespace",
            &fresh,
            "--webhook-configurations",
            crate::webhook::CONFIG_NAME,
        ],
    )?;
    // The suite's webhook answers only the API server's client certificate, and says so.
    ensure!(
        ran.stdout.matches("info client-auth: ").count() == 2
            && ran.stdout.matches(": client certificate required").count() == 2,
        "{ran:#?}"
    );
    ensure!(
        ran.code == Some(0)
            && ran.stdout.contains("(made for this check, and deleted)")
            && ran.stdout.contains("ok   validating:")
            && ran.stdout.contains("ok   mutating:"),
        "{ran:#?}"
    );
    let left = cluster::wfe_api(&ctx.clients.admin, &fresh)
        .list(&Default::default())
        .await?;
    ensure!(left.items.is_empty(), "verify left {:?}", left.items);
    // Nowhere to make one (the namespace does not exist): it cannot tell (exit 2), and says
    // what it needs.
    let ran = run_verify(&kubeconfig, &["--namespace", "verify-none"])?;
    ensure!(
        ran.code == Some(2)
            && ran
                .stderr
                .contains("no workflowexecutions found in namespace verify-none")
            && ran.stderr.contains("--name"),
        "{ran:#?}"
    );
    Ok(())
}

/// A copy of the CRD in a group no webhook is registered for: both checks fail, each naming
/// what the API server did without it.
pub async fn unguarded(ctx: Arc<Ctx>) -> Result<()> {
    let name = super::unique("verify-unguarded");
    create_wfe_in(&ctx.clients.admin, NS, &name, UNGUARDED_GROUP).await?;
    let api = wfe_api_in(&ctx.clients.admin, NS, UNGUARDED_GROUP);
    put_status(&api, &name, |s| {
        s.insert("phase".into(), json!("Completed"));
    })
    .await
    .context("cannot store the unguarded object's status")?;
    let mut config = Config::default();
    config.resource.group = UNGUARDED_GROUP.into();
    let policy = Policy::new(config)?;
    let report = verify(&ctx.clients.operator, &policy, Some(NS), Some(&name))
        .await
        .map_err(anyhow::Error::msg)?;
    println!("    {report:?}");
    ensure!(
        report.checks.len() == 2 && report.checks.iter().all(|c| !c.passed),
        "{report:?}"
    );
    ensure!(
        report.checks[0]
            .detail
            .contains("Completed → Pending (dry run) was allowed"),
        "{report:?}"
    );
    ensure!(
        report.checks[1].detail.contains(FORGED)
            && report.checks[1].detail.contains("came back unchanged"),
        "{report:?}"
    );
    let stored = api.get_status(&name).await?;
    ensure!(
        cluster::status_of(&stored).get("blockClearance").is_none(),
        "verify stored its clearance: {stored:?}"
    );
    Ok(())
}

/// Runs `wfe-admission verify` with the operator's kubeconfig.
fn run_verify(kubeconfig: &std::path::Path, args: &[&str]) -> Result<Ran> {
    Ran::run(
        Command::new(env!("CARGO_BIN_EXE_wfe-admission"))
            .arg("verify")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .env_remove("KUBECONFIG"),
    )
}

/// `lint --kubeconfig`: the stored objects a policy change would leave with no legal move,
/// by name, before the change guards them.
pub async fn lint_names_the_objects_a_policy_would_strand(ctx: Arc<Ctx>) -> Result<()> {
    let running = ctx.create_in("lint-running", &["Running"]).await?;
    let done = ctx
        .create_in("lint-done", &["Running", "Completed"])
        .await?;
    let dir = tempfile::tempdir()?;
    let policy = dir.path().join("running-dead-end.yaml");
    std::fs::write(
        &policy,
        "phase:\n  transitions:\n    Pending: [Running, Failed]\n    Running: []\nmoves:\n  orchestrator:\n    - {from: [Pending], to: Failed, fields: [failureReason]}\n",
    )?;
    let ran = Ran::run(
        Command::new(env!("CARGO_BIN_EXE_wfe-admission"))
            .arg("lint")
            .arg("--config")
            .arg(&policy)
            .arg("--kubeconfig")
            .arg(&ctx.access.admin_kubeconfig)
            .env_remove("KUBECONFIG"),
    )?;
    ensure!(ran.code == Some(1), "{ran:#?}");
    ensure!(
        ran.stdout.contains(&format!(
            "lint: stranded: {NS}/{running} is in Running, which has no legal move under this policy"
        )) && !ran.stdout.contains(&format!("{NS}/{done} ")),
        "{ran:#?}"
    );
    Ok(())
}
