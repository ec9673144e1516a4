//! kubernaut's real writers (tests/data/kubernaut/writes.yaml) against the real API server, the
//! CRD schema-equivalent to kubernaut's and both webhooks: each write is sent the way its writer
//! sends it (the controller reads, changes and PUTs the whole status with the read
//! resourceVersion and retries a 409 on a fresh read; an operator merge-patches), as that
//! writer's identity, and what the API server stored is compared with what was sent. Prints the
//! table of real writes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use jiff::Timestamp;
use kube::Error as KubeError;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use serde_json::{Value, json};
use wfe_bench::proof::combining_keeps;

use super::match_condition::counted;
use crate::cluster::{self, status_of};
use crate::harness::{Ctx, NS};

#[path = "../../support/kubernaut_writes.rs"]
mod writes;

use writes::{Via, Who, Write};

/// One row of the table: writer, verb, move, verdict, what the webhook changed.
struct Row {
    lifecycle: String,
    what: String,
    writer: Who,
    via: Via,
    from: String,
    to: String,
    verdict: String,
    changed: Vec<String>,
    /// Calls of /mutate and /validate the write made (the last attempt's).
    calls: (u64, u64),
}

pub async fn real_writes(ctx: Arc<Ctx>) -> Result<()> {
    let rows = replay_all(&ctx, Denials::Ours).await?;
    print_table(&rows);
    // The match conditions on the real mix: the controller's writes allowed as sent.
    let mix: Vec<&Row> = rows
        .iter()
        .filter(|r| r.writer == Who::Controller && r.verdict.starts_with("allowed"))
        .filter(|r| r.changed.is_empty())
        .collect();
    let reached = |f: fn(&Row) -> u64| mix.iter().filter(|r| f(r) > 0).count();
    println!(
        "    the controller's {} writes allowed as sent: {} reached /mutate, {} reached /validate",
        mix.len(),
        reached(|r| r.calls.0),
        reached(|r| r.calls.1)
    );
    Ok(())
}

/// Which webhook's denials a replay expects: ours alone, or any webhook's (beside another
/// mutating webhook that refuses some of the same writes first, in its own words).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Denials {
    Ours,
    Any,
}

async fn replay_all(ctx: &Ctx, denials: Denials) -> Result<Vec<Row>> {
    let data = writes::load().map_err(anyhow::Error::msg)?;
    let mut rows = Vec::new();
    for lifecycle in &data.lifecycles {
        let name = ctx.create("kubernaut").await?;
        for w in &lifecycle.writes {
            let context = format!("{} / {}", lifecycle.name, w.what);
            let row = replay(ctx, &name, w, denials)
                .await
                .with_context(|| context.clone())?;
            rows.push(Row {
                lifecycle: lifecycle.name.clone(),
                what: w.what.clone(),
                ..row
            });
        }
    }
    Ok(rows)
}

fn print_table(rows: &[Row]) {
    println!(
        "    | lifecycle | write | writer | verb | from → to | verdict | changed by the webhook | calls (mutate, validate) |"
    );
    println!("    |---|---|---|---|---|---|---|---|");
    for r in rows {
        let changed = if r.changed.is_empty() {
            "nothing".to_string()
        } else {
            r.changed.join(", ")
        };
        println!(
            "    | {} | {} | {} | {} | {} → {} | {} | {changed} | {}, {} |",
            r.lifecycle,
            r.what,
            r.writer.as_str(),
            r.via.as_str(),
            shown(&r.from),
            shown(&r.to),
            r.verdict,
            r.calls.0,
            r.calls.1
        );
    }
    let denied = rows
        .iter()
        .filter(|r| r.verdict.starts_with("denied"))
        .count();
    println!(
        "    {} writes: {} allowed ({} as sent), {denied} denied",
        rows.len(),
        rows.len() - denied,
        rows.iter()
            .filter(|r| !r.verdict.starts_with("denied") && r.changed.is_empty())
            .count()
    );
}

fn shown(phase: &str) -> &str {
    if phase.is_empty() { "(none)" } else { phase }
}

/// The writer's client and the user name the API server authenticates it as.
fn identity(ctx: &Ctx, who: Who) -> (&kube::Client, &str) {
    match who {
        Who::Controller => (&ctx.clients.kubernaut, &ctx.users.kubernaut),
        Who::Orchestrator => (&ctx.clients.orchestrator, &ctx.users.orchestrator),
        Who::Operator => (&ctx.clients.operator, &ctx.users.operator),
    }
}

fn api(ctx: &Ctx, who: Who) -> Api<DynamicObject> {
    cluster::wfe_api(identity(ctx, who).0, NS)
}

/// Waits until the wall clock's fraction of a second is near the write's, for a write whose
/// value depends on it (a duration rounded from a sub-second clock).
async fn align(w: &Write) {
    let depends = serde_json::to_string(&w.set).is_ok_and(|s| s.contains("${duration}"));
    if !depends {
        return;
    }
    let want = w.at.fract();
    for _ in 0..200 {
        let frac = f64::from(Timestamp::now().subsec_nanosecond()) / 1e9;
        let ahead = (frac - want).rem_euclid(1.0);
        if ahead < 0.1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn replay(ctx: &Ctx, name: &str, w: &Write, denials: Denials) -> Result<Row> {
    let api = api(ctx, w.writer);
    let mut attempts = 0;
    let (before, sent, result, calls) = loop {
        attempts += 1;
        let mut object = api.get_status(name).await?;
        let before = status_of(&object);
        align(w).await;
        let now = Timestamp::now();
        let sent = w.sent(&before, now);
        let write = async {
            match w.via {
                Via::Put => {
                    object.data["status"] = Value::Object(w.body(&before, now));
                    api.replace_status(name, &PostParams::default(), &object)
                        .await
                }
                Via::Merge => {
                    let patch = json!({"status": Value::Object(w.body(&before, now))});
                    api.patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
                        .await
                }
            }
        };
        let (result, m, v) = counted(ctx, write).await;
        match result {
            Err(KubeError::Api(e)) if e.code == 409 && attempts < 5 => continue,
            other => break (before, sent, other, (m, v)),
        }
    };
    let from = phase(&before);
    match (&w.expect.denied, result) {
        (Some(reason), Err(KubeError::Api(e))) => {
            ensure!(e.code == 403, "expected a denial, got {e:?}");
            ensure!(
                denials == Denials::Any
                    || e.message.contains(reason.as_str())
                    || e.message.contains(&reason_text(reason)),
                "expected {reason}: {}",
                e.message
            );
            if let Some(piece) = &w.expect.message {
                ensure!(e.message.contains(piece.as_str()), "{}", e.message);
            }
            let after = status_of(&ctx.stored(name).await?);
            ensure!(after == before, "a denied write stored something");
            Ok(Row {
                lifecycle: String::new(),
                what: String::new(),
                writer: w.writer,
                via: w.via,
                to: phase(&sent),
                from,
                verdict: format!("denied ({reason})"),
                changed: Vec::new(),
                calls,
            })
        }
        (None, Ok(stored)) => {
            let stored = status_of(&stored);
            if calls.0 == 0 {
                // The proof `mutate_condition` makes on random writes, here on real ones.
                let policy = ctx.webhook.policy.load();
                let writer = policy.writer(identity(ctx, w.writer).1, &[]);
                combining_keeps(&policy, writer, &before, &stored)?;
            }
            let changed = writes::changed(&sent, &stored);
            ensure!(
                changed == w.expect.changed,
                "the webhook changed {changed:?}, expected {:?}; sent {sent:?}, stored {stored:?}",
                w.expect.changed
            );
            Ok(Row {
                lifecycle: String::new(),
                what: String::new(),
                writer: w.writer,
                via: w.via,
                from,
                to: phase(&stored),
                verdict: if attempts > 1 {
                    format!("allowed (after {} conflicts)", attempts - 1)
                } else {
                    "allowed".into()
                },
                changed,
                calls,
            })
        }
        (expected, got) => bail!("expected {expected:?}, got {got:?}"),
    }
}

fn phase(status: &cluster::Status) -> String {
    status
        .get("phase")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// How the message names a deny reason (the reason itself is not in the text the writer sees).
fn reason_text(reason: &str) -> String {
    match reason {
        "IllegalPhaseTransition" => "illegal phase transition".into(),
        "PhaseNotOwned" => "may not move status.phase".into(),
        "BlockClearanceRejected" => "clearance by".into(),
        other => other.into(),
    }
}

/// An illegal move that also carries a correction: the writer gets the denial, admins one
/// IllegalPhaseTransition Event and no StatusFieldRestored, since nothing was stored.
pub async fn illegal_move_with_a_correction(ctx: Arc<Ctx>) -> Result<()> {
    let name = ctx
        .create_in("kubernaut-illegal", &["Running", "Completed"])
        .await?;
    let result = cluster::put_status(&ctx.controller(), &name, |s| {
        s.insert("phase".into(), json!("Running"));
        s.insert("startTime".into(), json!("2020-01-01T00:00:00Z"));
    })
    .await;
    let (code, message) = cluster::api_error(result, "Completed → Running with a new startTime")?;
    ensure!(
        code == 403 && message.contains("illegal phase transition Completed → Running"),
        "{message}"
    );
    super::events_flushed(&ctx, "kubernaut-illegal-witness").await?;
    let admin = &ctx.clients.admin;
    let denials = cluster::events(admin, NS, "IllegalPhaseTransition", &name).await?;
    let corrections = cluster::events(admin, NS, "StatusFieldRestored", &name).await?;
    ensure!(denials.len() == 1, "one denial Event: {denials:?}");
    ensure!(
        corrections.is_empty(),
        "no correction Event for a write never stored: {corrections:?}"
    );
    Ok(())
}

/// Beside a stand-in for kubernaut's authwebhook (a second mutating webhook on the same status
/// writes), called before ours and then after ours: every real write gets what it gets with ours
/// alone, a clearance is attributed to the authenticated user whatever the writer claims, and
/// the two converge (the API server reinvokes ours after the other's change).
pub async fn beside_kubernauts_authwebhook(ctx: Arc<Ctx>) -> Result<()> {
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    use kube::api::DeleteParams;
    let stand_in = crate::authwebhook::AuthWebhook::start().await?;
    let configs: Api<MutatingWebhookConfiguration> = Api::all(ctx.clients.admin.clone());
    // Configurations are called in the order of their names; ours is `wfe-admission-e2e`.
    for (config, order) in [
        ("authwebhook-mutating", "before ours"),
        ("zz-authwebhook-mutating", "after ours"),
    ] {
        let object: MutatingWebhookConfiguration =
            serde_json::from_value(stand_in.configuration(config))?;
        configs.create(&PostParams::default(), &object).await?;
        let outcome = beside(&ctx, &stand_in).await;
        configs.delete(config, &DeleteParams::default()).await?;
        outcome.with_context(|| format!("the stand-in called {order}"))?;
        println!("    beside the stand-in called {order}: every write as with ours alone");
    }
    replace_it(&ctx, &stand_in, &configs).await
}

/// docs/kubernaut.md's command that takes authwebhook's WorkflowExecution webhook out, run as
/// written: that webhook goes, the configuration's other one stays, and a second run changes
/// nothing.
async fn replace_it(
    ctx: &Ctx,
    stand_in: &crate::authwebhook::AuthWebhook,
    configs: &Api<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration>,
) -> Result<()> {
    use super::kubectl::{commands, fenced_after, kubectl_sh, read};
    use kube::api::DeleteParams;
    let name = "authwebhook-mutating";
    let object = serde_json::from_value(stand_in.configuration(name))?;
    configs.create(&PostParams::default(), &object).await?;
    let block = fenced_after(
        &read("docs/kubernaut.md")?,
        "<!-- e2e kubernaut_writes_pass_beside_kubernauts_authwebhook runs this block -->",
    )?;
    let [command] = &commands(&block)[..] else {
        bail!("one command expected in docs/kubernaut.md's block: {block}");
    };
    let admin = std::path::Path::new(&ctx.access.admin_kubeconfig);
    let first = kubectl_sh(ctx, admin, command)?;
    let second = kubectl_sh(ctx, admin, command)?;
    let left: Vec<String> = configs
        .get(name)
        .await?
        .webhooks
        .unwrap_or_default()
        .into_iter()
        .map(|w| w.name)
        .collect();
    configs.delete(name, &DeleteParams::default()).await?;
    ensure!(first.code == Some(0), "{first:#?}");
    ensure!(
        second.code != Some(0),
        "the second run must fail its test: {second:#?}"
    );
    ensure!(
        left == ["remediationapprovalrequest.mutate.kubernaut.ai"],
        "left: {left:?}"
    );
    Ok(())
}

async fn beside(ctx: &Ctx, stand_in: &crate::authwebhook::AuthWebhook) -> Result<()> {
    use std::sync::atomic::Ordering;
    let name = ctx.create_in("beside-authwebhook", &["Failed"]).await?;
    let clearance = json!({"status": {"blockClearance": {
        "clearReason": super::CLEAR_REASON, "clearMethod": "StatusField",
        "clearedBy": "somebody-else@example.com"}}});
    let before = stand_in.calls.load(Ordering::Relaxed);
    cluster::eventually(
        "the API server to call the stand-in",
        Duration::from_secs(30),
        || {
            let (api, clearance, name) = (ctx.operator(), clearance.clone(), name.clone());
            async move {
                api.patch_status(
                    &name,
                    &PatchParams::default().dry_run(),
                    &Patch::Merge(clearance),
                )
                .await?;
                Ok((stand_in.calls.load(Ordering::Relaxed) > before).then_some(()))
            }
        },
    )
    .await?;
    let called = stand_in.calls.load(Ordering::Relaxed);
    let rows = replay_all(ctx, Denials::Any).await?;
    // The stand-in saw every write that got through (it has no match conditions).
    let allowed = rows
        .iter()
        .filter(|r| !r.verdict.starts_with("denied"))
        .count() as u64;
    let seen = stand_in.calls.load(Ordering::Relaxed) - called;
    ensure!(
        seen >= allowed,
        "the stand-in saw {seen} of {allowed} allowed writes"
    );
    // A clearance through both: attributed to the operator, with one time, stored as both agree.
    let stored = ctx
        .operator()
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(clearance))
        .await
        .context("a clearance through both webhooks")?;
    let bc = status_of(&stored)
        .get("blockClearance")
        .cloned()
        .unwrap_or_default();
    ensure!(bc["clearedBy"] == json!(ctx.users.operator), "{bc}");
    let at = bc["clearedAt"]
        .as_str()
        .and_then(|t| t.parse::<Timestamp>().ok());
    ensure!(
        at.is_some_and(|t| (Timestamp::now().as_second() - t.as_second()).abs() < 60),
        "{bc}"
    );
    Ok(())
}
