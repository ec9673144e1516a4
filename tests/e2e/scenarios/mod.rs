//! The end-to-end scenarios, in the order they run. Each creates its own objects.

mod concurrent;
mod dry_run;
mod events;
mod forged;
mod image;
mod kubectl;
mod kubernaut;
mod lifecycle;
mod manager;
mod match_condition;
mod merging;
pub mod mutate_condition;
pub mod repair;
mod replay;
mod verify;
mod webhook_down;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use jiff::Timestamp;
use kube::api::Api;
use kube::core::DynamicObject;
use serde_json::{Value, json};
use wfe_admission::policy::time;

use crate::cluster::{self, Status};
use crate::harness::{Ctx, NS, Scenario};

const MINUTE: Duration = Duration::from_secs(60);

/// Returns once every Event queued before the call has been dealt with: the event worker is
/// one FIFO queue, so when a fresh denial's Event (on a new `label` object) exists, so do
/// (or never will) the earlier ones.
async fn events_flushed(ctx: &Ctx, label: &str) -> Result<()> {
    let witness = ctx.create_in(label, &["Failed"]).await?;
    let result =
        cluster::merge_status(&ctx.controller(), &witness, json!({"phase": "Running"})).await;
    cluster::api_error(result, "the witness's Failed → Running")?;
    cluster::wait_events(
        &ctx.clients.admin,
        NS,
        "IllegalPhaseTransition",
        &witness,
        Duration::from_secs(15),
    )
    .await?;
    Ok(())
}

pub fn all() -> Vec<Scenario> {
    macro_rules! scenario {
        ($name:literal, $limit:expr, $f:path) => {
            Scenario {
                name: $name,
                limit: $limit,
                run: |ctx| Box::pin($f(ctx)),
            }
        };
    }
    vec![
        scenario!(
            "lifecycle_legal_moves_get_derived_fields",
            MINUTE,
            lifecycle::legal
        ),
        scenario!(
            "lifecycle_illegal_moves_are_denied_with_an_event",
            MINUTE,
            lifecycle::illegal
        ),
        scenario!(
            "kubernaut_real_writes_pass_as_sent",
            2 * MINUTE,
            kubernaut::real_writes
        ),
        scenario!(
            "an_illegal_move_with_a_correction_records_only_the_denial",
            MINUTE,
            kubernaut::illegal_move_with_a_correction
        ),
        scenario!(
            "kubernaut_writes_pass_beside_kubernauts_authwebhook",
            3 * MINUTE,
            kubernaut::beside_kubernauts_authwebhook
        ),
        scenario!(
            "merging_partial_writes_keep_other_writers_fields",
            MINUTE,
            merging::partial_writes
        ),
        scenario!(
            "merging_block_clearance_is_attributed",
            MINUTE,
            merging::block_clearance
        ),
        scenario!(
            "validate_is_called_only_when_it_may_deny",
            MINUTE,
            match_condition::validate_only_when_it_may_deny
        ),
        scenario!(
            "mutate_is_skipped_only_when_combining_keeps_the_write",
            2 * MINUTE,
            mutate_condition::mutate_only_when_combining_may_change
        ),
        scenario!(
            "dry_run_gets_the_verdict_without_side_effects",
            MINUTE,
            dry_run::dry_run
        ),
        scenario!(
            "concurrent_writers_lose_nothing",
            4 * MINUTE,
            concurrent::three_writers
        ),
        scenario!(
            "status_manager_retries_a_conflict_and_refuses_illegal_moves",
            MINUTE,
            manager::conflicts
        ),
        scenario!(
            "repair_fixes_each_broken_object_with_one_write",
            MINUTE,
            repair::repair
        ),
        scenario!(
            "verify_passes_with_both_webhooks_and_leaves_nothing",
            MINUTE,
            verify::both_webhooks
        ),
        scenario!(
            "verify_fails_where_no_webhook_is_called",
            MINUTE,
            verify::unguarded
        ),
        scenario!(
            "lint_names_the_objects_a_policy_would_strand",
            MINUTE,
            verify::lint_names_the_objects_a_policy_would_strand
        ),
        scenario!(
            "kubectl_commands_in_the_docs_work",
            MINUTE,
            kubectl::docs_commands
        ),
        scenario!(
            "events_corrections_and_series",
            MINUTE,
            events::corrections_and_series
        ),
        scenario!(
            "forged_reviews_get_no_answer_and_no_event",
            MINUTE,
            forged::forged_reviews_get_no_answer
        ),
        scenario!(
            "events_not_recorded_for_superseded_denials",
            MINUTE,
            events::superseded_denials_are_not_recorded
        ),
        scenario!(
            "replay_agrees_with_the_recorded_verdicts",
            MINUTE,
            replay::recorded_writes_replay_to_the_same_verdicts
        ),
        // The first run on a machine builds the static release binary: minutes, then cached.
        scenario!(
            "image_serves_from_an_empty_root",
            20 * MINUTE,
            image::serves_from_an_empty_root
        ),
        scenario!(
            "webhook_down_fails_closed_then_recovers",
            2 * MINUTE,
            webhook_down::fails_closed
        ),
    ]
}

/// A finished command: its exit code and what it printed on each stream.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn run(cmd: &mut std::process::Command) -> Result<Ran> {
        let out = cmd
            .output()
            .with_context(|| format!("cannot run {cmd:?}"))?;
        Ok(Ran {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        })
    }
}

/// A name no other scenario uses in this cluster.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

impl Ctx {
    pub fn admin(&self) -> Api<DynamicObject> {
        cluster::wfe_api(&self.clients.admin, NS)
    }
    pub fn controller(&self) -> Api<DynamicObject> {
        cluster::wfe_api(&self.clients.controller, NS)
    }
    pub fn executor(&self) -> Api<DynamicObject> {
        cluster::wfe_api(&self.clients.executor, NS)
    }
    pub fn operator(&self) -> Api<DynamicObject> {
        cluster::wfe_api(&self.clients.operator, NS)
    }
    pub fn orchestrator(&self) -> Api<DynamicObject> {
        cluster::wfe_api(&self.clients.orchestrator, NS)
    }

    /// Creates a WorkflowExecution in the scenarios' namespace.
    pub async fn create(&self, prefix: &str) -> Result<String> {
        let name = unique(prefix);
        cluster::create_wfe(&self.clients.admin, NS, &name).await?;
        Ok(name)
    }

    /// Creates one and walks it through `phases` as the controller (merge patches).
    pub async fn create_in(&self, prefix: &str, phases: &[&str]) -> Result<String> {
        let name = self.create(prefix).await?;
        for phase in phases {
            let mut status = json!({ "phase": phase });
            if *phase == "Failed" {
                status["failureDetails"] = failure_details("TaskFailed");
            }
            cluster::merge_status(&self.controller(), &name, status)
                .await
                .with_context(|| format!("moving {name} to {phase}"))?;
        }
        Ok(name)
    }

    pub async fn stored(&self, name: &str) -> Result<DynamicObject> {
        self.admin()
            .get_status(name)
            .await
            .with_context(|| format!("reading {name}"))
    }
}

pub fn failure_details(reason: &str) -> Value {
    json!({
        "failedTaskIndex": 0,
        "failedTaskName": "rollout-restart",
        "failedStepName": "kubectl",
        "reason": reason,
        "message": "container kubectl failed",
        "exitCode": 137,
        "failedAt": time::format(Timestamp::now()),
        "naturalLanguageSummary": "The restart step was killed before it finished.",
        "wasExecutionFailure": true
    })
}

/// A reason long enough for the default minimum of 10 words.
pub const CLEAR_REASON: &str =
    "the failed restart was investigated and the deployment is healthy again, so unblock it";

/// A time field that parses and lies within a minute of now.
pub fn recent(status: &Status, field: &str) -> Result<Timestamp> {
    let text =
        cluster::text(status, field).with_context(|| format!("status.{field} is missing"))?;
    let t =
        time::parse(text).with_context(|| format!("status.{field} = {text:?} is not a time"))?;
    let age = Timestamp::now().as_second() - t.as_second();
    ensure!(
        (-60..=60).contains(&age),
        "status.{field} = {text} is not recent ({age} s old)"
    );
    Ok(t)
}

/// The `type`s of the stored conditions, in order.
pub fn condition_types(status: &Status) -> Vec<String> {
    status
        .get("conditions")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|c| c.get("type").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn condition<'a>(status: &'a Status, condition_type: &str) -> Option<&'a Value> {
    status
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(condition_type))
}
