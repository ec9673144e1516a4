//! `replay` on the API server's own audit log: every kind of status write the suite's writers
//! make, judged again offline, agrees with what the API server recorded; at Request level
//! (no stored objects in the log) too; and a looser policy differs exactly on the recorded
//! denials it would allow, named. Then the whole suite's writes since the webhooks took
//! effect: where replay differs, another webhook decided.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};
use wfe_admission::config::WriterMove;
use wfe_admission::replay::{self, Options};

use super::Ran;
use crate::authwebhook;
use crate::cluster::{self, api_error, put_status, rv, wfe_api};
use crate::harness::{Ctx, NS};
use crate::webhook::{self, CONFIG_NAME};

/// Status writes this scenario makes, not counting the webhook's own.
const WRITES: usize = 10;

fn ready(status: &str) -> Value {
    json!([{
        "type": "Ready", "status": status, "reason": "Replayed",
        "message": "set by the replay scenario", "lastTransitionTime": "2026-01-01T00:00:00Z"
    }])
}

/// The admin acting as `user` (impersonation).
async fn impersonating(ctx: &Ctx, user: &str) -> Result<kube::Client> {
    let file = Kubeconfig::read_from(&ctx.access.admin_kubeconfig)?;
    let mut config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .context("admin kubeconfig")?;
    config.auth_info.impersonate = Some(user.to_string());
    Ok(kube::Client::try_from(config)?)
}

/// The writes: one object through PUT, JSON patch, a denial, a dry-run denial, an
/// impersonated merge patch and a stale PUT; another through a dry run, a merge patch, a
/// denied operator move and an apply.
async fn write(ctx: &Ctx, a: &str, b: &str) -> Result<()> {
    let ctl = ctx.controller();
    let (first, _) = put_status(&ctl, a, |s| {
        s.insert("phase".into(), json!("Running"));
    })
    .await?;
    let to_completed = json!([{"op": "replace", "path": "/status/phase", "value": "Completed"}]);
    ctl.patch_status(
        a,
        &PatchParams::default(),
        &Patch::<()>::Json(serde_json::from_value(to_completed)?),
    )
    .await?;
    let back = cluster::merge_status(&ctl, a, json!({"phase": "Running"})).await;
    ensure!(api_error(back, "Completed → Running")?.0 == 403);
    let dry = cluster::dry_merge_status(&ctl, a, json!({"phase": "Failed"})).await;
    ensure!(api_error(dry, "a dry-run Completed → Failed")?.0 == 403);
    let as_controller = wfe_api(&impersonating(ctx, &ctx.users.controller).await?, NS);
    let stored =
        cluster::merge_status(&as_controller, a, json!({"conditions": ready("True")})).await?;
    let mut stale = stored.clone();
    stale.metadata.resource_version = Some(rv(&first));
    stale.data["status"]["conditions"] = ready("False");
    let conflict = ctl.replace_status(a, &PostParams::default(), &stale).await;
    ensure!(api_error(conflict, "a stale PUT")?.0 == 409);

    let dry = cluster::dry_merge_status(&ctl, b, json!({"phase": "Running"})).await;
    dry.context("a dry-run Pending → Running")?;
    cluster::merge_status(&ctl, b, json!({"phase": "Running"})).await?;
    let operator = cluster::merge_status(&ctx.operator(), b, json!({"phase": "Completed"})).await;
    ensure!(api_error(operator, "the operator's Running → Completed")?.0 == 403);
    // Last: at Request level, replay cannot rebuild what follows an apply.
    let applied = json!({
        "apiVersion": "kubernaut.ai/v1alpha1", "kind": "WorkflowExecution",
        "metadata": {"name": b, "namespace": NS},
        "status": {"phase": "Running"}
    });
    ctl.patch_status(b, &PatchParams::apply("replay-e2e"), &Patch::Apply(applied))
        .await
        .context("an apply of the status")?;
    Ok(())
}

fn objects(a: &str, b: &str) -> Vec<String> {
    vec![format!("{NS}/{a}"), format!("{NS}/{b}")]
}

/// Waits until the log holds the scenario's writes (the log lags the answers a little).
async fn logged(ctx: &Ctx, a: &str, b: &str) -> Result<()> {
    let policy = webhook::policy()?;
    let options = Options {
        configurations: vec![CONFIG_NAME.into()],
        objects: objects(a, b),
        since: None,
    };
    cluster::eventually(
        "the scenario's writes in the audit log",
        Duration::from_secs(20),
        || {
            let (policy, options) = (&policy, &options);
            async move {
                let text = std::fs::read_to_string(&ctx.access.audit_log)?;
                let events = wfe_admission::cli::replay::read_events(text.as_bytes(), "audit.log")
                    .map_err(anyhow::Error::msg)?;
                let report = replay::replay(policy, events, options);
                let theirs = report
                    .records
                    .iter()
                    .filter(|r| r.writer != "webhook")
                    .count();
                Ok((theirs >= WRITES).then_some(()))
            }
        },
    )
    .await
}

/// The binary's `replay` of `log` under `policy` with the suite's configuration names, and
/// `extra` flags (which objects, since when).
fn run_replay(
    log: &std::path::Path,
    policy: &std::path::Path,
    json: bool,
    extra: &[String],
) -> Result<Ran> {
    Ran::run(
        Command::new(env!("CARGO_BIN_EXE_wfe-admission"))
            .arg("replay")
            .arg("--audit-log")
            .arg(log)
            .arg("--config")
            .arg(policy)
            .args(["--webhook-configurations", CONFIG_NAME])
            .args(["--output", if json { "json" } else { "text" }])
            .args(extra),
    )
}

/// `--object` for each of the scenario's two objects.
fn only(a: &str, b: &str) -> Vec<String> {
    objects(a, b)
        .into_iter()
        .flat_map(|o| ["--object".to_string(), o])
        .collect()
}

/// The JSON records, and the summary line after them.
fn records(ran: &Ran) -> Result<(Vec<Value>, String)> {
    let mut lines: Vec<&str> = ran.stdout.lines().collect();
    let summary = lines.pop().context("no output")?.to_string();
    let records = lines
        .iter()
        .map(|l| serde_json::from_str(l).with_context(|| format!("not a record: {l}")))
        .collect::<Result<Vec<Value>>>()?;
    Ok((records, summary))
}

fn field<'a>(r: &'a Value, key: &str) -> &'a str {
    r.get(key).and_then(Value::as_str).unwrap_or("")
}

pub async fn recorded_writes_replay_to_the_same_verdicts(ctx: Arc<Ctx>) -> Result<()> {
    let a = ctx.create("replay-a").await?;
    let b = ctx.create("replay-b").await?;
    write(&ctx, &a, &b).await?;
    logged(&ctx, &a, &b).await?;

    let dir = tempfile::tempdir()?;
    let policy_file = dir.path().join("e2e-policy.json");
    let config = webhook::policy()?.config;
    std::fs::write(&policy_file, serde_json::to_string(&config)?)?;

    // RequestResponse, as recorded.
    let ran = run_replay(&ctx.access.audit_log, &policy_file, true, &only(&a, &b))?;
    ensure!(ran.code == Some(0), "{ran:#?}");
    let (all, summary) = records(&ran)?;
    let judged: Vec<&Value> = all.iter().filter(|r| !r["agrees"].is_null()).collect();
    ensure!(
        judged.iter().all(|r| r["agrees"] == json!(true)),
        "{ran:#?}"
    );
    ensure!(
        summary
            == format!(
                "replay: {} writes, {} agree, 0 differ, 2 not judged",
                all.len(),
                judged.len()
            ),
        "{summary}"
    );
    let verbs: BTreeSet<&str> = all.iter().map(|r| field(r, "verb")).collect();
    for verb in ["update", "merge-patch", "json-patch", "apply"] {
        ensure!(verbs.contains(verb), "no {verb} among {verbs:?}");
    }
    let verdicts: BTreeSet<&str> = judged.iter().map(|r| field(r, "recorded")).collect();
    for v in ["allowed", "patched", "denied"] {
        ensure!(verdicts.contains(v), "no {v} among {verdicts:?}: {ran:#?}");
    }
    let skipped: Vec<&Value> = all.iter().filter(|r| r["agrees"].is_null()).collect();
    ensure!(
        skipped
            .iter()
            .any(|r| field(r, "recorded") == "refused-before-admission"
                && field(r, "reason").contains("409"))
            && skipped
                .iter()
                .any(|r| field(r, "verb") == "apply"
                    && field(r, "reason").contains("server-side apply")),
        "{skipped:#?}"
    );
    ensure!(
        all.iter().filter(|r| r["dry_run"] == json!(true)).count() == 2,
        "{ran:#?}"
    );
    // The impersonated write is the controller's, not the admin's.
    ensure!(
        all.iter().any(|r| field(r, "user") == ctx.users.controller
            && field(r, "verb") == "merge-patch"
            && r["fields"] == json!(["conditions"])),
        "{ran:#?}"
    );
    ensure!(
        all.iter()
            .any(|r| field(r, "move") == "Completed → Running" && field(r, "replayed") == "denied"),
        "{ran:#?}"
    );

    // Request level: no stored objects, so the history is the replayed one.
    let text = std::fs::read_to_string(&ctx.access.audit_log)?;
    let mut request_level = String::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut event: Value = serde_json::from_str(line)?;
        if let Some(map) = event.as_object_mut() {
            map.remove("responseObject");
            map.insert("level".into(), json!("Request"));
        }
        request_level.push_str(&serde_json::to_string(&event)?);
        request_level.push('\n');
    }
    let request_log = dir.path().join("request-level.log");
    std::fs::write(&request_log, request_level)?;
    let ran = run_replay(&request_log, &policy_file, false, &only(&a, &b))?;
    ensure!(ran.code == Some(0), "{ran:#?}");
    ensure!(
        ran.stdout
            .lines()
            .next()
            .is_some_and(|h| h.starts_with("TIME") && h.contains("REPLAYED"))
            && ran.stdout.lines().last() == Some(summary.as_str()),
        "{ran:#?}"
    );

    // A looser policy: operators may finish a running execution.
    let mut looser = config.clone();
    looser
        .moves
        .entry("operator".into())
        .or_default()
        .push(WriterMove {
            from: vec!["Running".into()],
            to: "Completed".into(),
            fields: Vec::new(),
        });
    let looser_file = dir.path().join("looser.json");
    std::fs::write(&looser_file, serde_json::to_string(&looser)?)?;
    let ran = run_replay(&ctx.access.audit_log, &looser_file, true, &only(&a, &b))?;
    ensure!(ran.code == Some(1), "{ran:#?}");
    let (all, summary) = records(&ran)?;
    let differ: Vec<&Value> = all.iter().filter(|r| r["agrees"] == json!(false)).collect();
    let allowed_now: Vec<&Value> = all
        .iter()
        .filter(|r| field(r, "recorded") == "denied" && field(r, "writer") == "operator")
        .collect();
    ensure!(!differ.is_empty() && differ == allowed_now, "{ran:#?}");
    ensure!(
        differ
            .iter()
            .all(|r| field(r, "object") == format!("{NS}/{b}")
                && field(r, "move") == "Running → Completed"
                && field(r, "replayed") != "denied"
                && field(r, "reason").contains("this policy allows what was denied")),
        "{ran:#?}"
    );
    ensure!(
        summary.contains(&format!(", {} differ", differ.len())),
        "{summary}"
    );

    // Every write of the suite so far, since the webhooks took effect: where replay differs, it
    // is kubernaut's authwebhook stand-in that decided, which this policy cannot replay.
    let since = ["--since".to_string(), ctx.guarded_since.to_string()];
    let ran = run_replay(&ctx.access.audit_log, &policy_file, true, &since)?;
    let (all, summary) = records(&ran)?;
    let judged = all.iter().filter(|r| !r["agrees"].is_null()).count();
    ensure!(judged > 100, "{summary}");
    let unexplained: Vec<&Value> = all
        .iter()
        .filter(|r| r["agrees"] == json!(false))
        .filter(|r| {
            !(field(r, "recorded") == "denied"
                && field(r, "reason").contains(&format!(
                    "admission webhook \"{}\"",
                    authwebhook::WEBHOOK_NAME
                )))
        })
        .collect();
    ensure!(unexplained.is_empty(), "{summary}: {unexplained:#?}");
    Ok(())
}
