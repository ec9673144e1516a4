//! The kubectl commands the docs give admins, run as written with kubectl of the API server's
//! release: docs/install.md's check of the wiring by hand, and the README's
//! `kubectl get events -A --field-selector reason=...` for denials and corrections. The
//! commands are read from the docs, so a doc that drifts fails here.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::json;

use super::Ran;
use crate::cluster::{self, merge_status};
use crate::harness::{Ctx, NS};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

pub async fn docs_commands(ctx: Arc<Ctx>) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let operator = dir.path().join("operator");
    ctx.access
        .write_kubeconfig(&operator, &ctx.access.operator_token)?;

    // docs/install.md: the wiring by hand, on a Running object, as the operator.
    let name = ctx.create_in("kubectl-docs", &["Running"]).await?;
    let before = ctx.stored(&name).await?;
    let block = fenced_after(
        &read("docs/install.md")?,
        "<!-- e2e kubectl_commands_in_the_docs_work runs this block -->",
    )?;
    let commands = commands(&block);
    let [validating, mutating] = &commands[..] else {
        bail!("two commands expected in the docs block: {commands:#?}");
    };
    let fill = |c: &str| {
        c.replace(" NS ", &format!(" {NS} "))
            .replace(" OBJ ", &format!(" {name} "))
    };
    let ran = kubectl_sh(&ctx, &operator, &fill(validating))?;
    ensure!(
        ran.code != Some(0)
            && ran.stderr.contains(
                "admission webhook \"status.validate.wfe-admission.kubernaut.ai\" denied the request"
            ),
        "the validating check by hand: {ran:#?}"
    );
    let ran = kubectl_sh(&ctx, &operator, &fill(mutating))?;
    ensure!(
        ran.code == Some(0)
            && ran.stdout.trim() == ctx.users.operator
            && ran.stderr.contains("the value sent was replaced"),
        "the mutating check by hand prints the caller and the webhook's warning: {ran:#?}"
    );
    let after = ctx.stored(&name).await?;
    ensure!(
        cluster::rv(&after) == cluster::rv(&before),
        "a dry run by hand stored something"
    );

    // README: how admins review denials and corrections, with a real one of each.
    let denied = ctx.create_in("kubectl-denied", &["Failed"]).await?;
    let result = merge_status(&ctx.controller(), &denied, json!({"phase": "Running"})).await;
    cluster::api_error(result, "Failed → Running")?;
    let corrected = ctx.create_in("kubectl-corrected", &["Running"]).await?;
    merge_status(
        &ctx.operator(),
        &corrected,
        json!({"executionStatus": {"status": "True", "reason": "Forged", "message": "by hand"}}),
    )
    .await
    .context("the operator's write of a controller field")?;
    let readme = read("README.md")?;
    for (reason, object) in [
        ("IllegalPhaseTransition", &denied),
        ("StatusFieldRestored", &corrected),
    ] {
        let admin = &ctx.clients.admin;
        cluster::wait_events(admin, NS, reason, object, Duration::from_secs(15)).await?;
        let command = format!("kubectl get events -A --field-selector reason={reason}");
        ensure!(readme.contains(&command), "README lacks {command:?}");
        let ran = kubectl_sh(&ctx, Path::new(&ctx.access.admin_kubeconfig), &command)?;
        let line = ran.stdout.lines().find(|l| l.contains(object.as_str()));
        ensure!(
            ran.code == Some(0)
                && line
                    .is_some_and(|l| l.contains(reason) && l.contains("Warning") && l.contains(NS)),
            "{command}: {ran:#?}"
        );
        println!("    {command}: {}", line.unwrap_or_default());
    }
    Ok(())
}

pub(super) fn read(path: &str) -> Result<String> {
    let path = Path::new(ROOT).join(path);
    std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
}

/// The fenced block right after `marker`, without its fences.
pub(super) fn fenced_after(text: &str, marker: &str) -> Result<String> {
    let (_, rest) = text
        .split_once(marker)
        .with_context(|| format!("no {marker:?}"))?;
    let mut lines = rest.lines().skip_while(|l| l.trim().is_empty());
    ensure!(
        lines.next().is_some_and(|l| l.starts_with("```")),
        "no fenced block after {marker:?}"
    );
    Ok(lines
        .take_while(|l| !l.starts_with("```"))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// The block's commands: comments dropped, `\`-continued lines joined.
pub(super) fn commands(block: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in block.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let (text, more) = match line.trim_end().strip_suffix('\\') {
            Some(text) => (text, true),
            None => (line.trim_end(), false),
        };
        current.push_str(text.trim_start());
        current.push(' ');
        if !more {
            out.push(current.trim().to_string());
            current.clear();
        }
    }
    out
}

/// Runs `command` through `sh`, as an admin pastes it, with kubectl first on PATH.
pub(super) fn kubectl_sh(ctx: &Ctx, kubeconfig: &Path, command: &str) -> Result<Ran> {
    let bin = ctx
        .access
        .kubectl
        .parent()
        .context("kubectl has no directory")?;
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Ran::run(
        Command::new("sh")
            .arg("-c")
            .arg(command)
            .env("PATH", path)
            .env("KUBECONFIG", kubeconfig),
    )
}
