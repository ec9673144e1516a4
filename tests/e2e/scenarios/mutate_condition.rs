//! The mutating webhook's built-in match condition (`mutate_match_condition`, as the chart
//! installs it), proven through the real API server: every write it lets past /mutate is one
//! that combining would have left exactly as sent, and writes that need combining still reach
//! /mutate.
//!
//! Random writes (a seeded mix of changes, benign and not, by the controller and by others) go in
//! as dry runs against five stored objects, one of them in a copy of the CRD whose stored
//! conditions list a type twice. For each one the API server decides whether to call
//! /mutate; for each it skipped, `combine` is run here on the stored status and the status the
//! API server would have stored, and must change nothing and say nothing. `WFE_E2E_SEED` replays
//! a run.

use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use kube::core::DynamicObject;
use kube::core::admission::AdmissionReview;
use serde_json::{Value, json};
use wfe_admission::policy::review::{Decision, validate};
use wfe_admission::policy::time;
use wfe_bench::e2e::{Scrapes, apiserver_metrics};
use wfe_bench::fixtures::status_update_review;
use wfe_bench::proof::combining_keeps;

use super::match_condition::counted;
use super::{CLEAR_REASON, failure_details};
use crate::cluster::{
    LOOSE_GROUP, Status, create_wfe_in, merge_status, put_status, status_of, wfe_api_in,
};
use crate::harness::{Ctx, NS};

/// Random writes per run: about 2 s of dry runs.
const WRITES: usize = 300;

/// xorshift64*: reproducible from its seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn seed() -> u64 {
    std::env::var("WFE_E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| Timestamp::now().as_nanosecond() as u64 | 1)
}

/// Name of the loose-CRD object whose stored conditions list a type twice.
const DUPLICATES: &str = "loose-duplicates";

/// Before the webhooks exist: a status that lists condition types twice, which only a CRD
/// without `x-kubernetes-list-type: map` stores and only a write around the webhook produces.
pub async fn prepare(admin: &Client) -> Result<()> {
    create_wfe_in(admin, NS, DUPLICATES, LOOSE_GROUP).await?;
    let api = wfe_api_in(admin, NS, LOOSE_GROUP);
    put_status(&api, DUPLICATES, |s| {
        s.insert("phase".into(), json!("Running"));
        s.insert("executionStatus".into(), json!({"status": "Unknown", "message": "started"}));
        s.insert(
            "conditions".into(),
            json!([
                {"type": "Ready", "status": "False", "reason": "Running", "message": "first",
                 "lastTransitionTime": "2026-03-01T11:50:00Z"},
                {"type": "ExecutionRunning", "status": "True", "reason": "Running", "message": "one",
                 "lastTransitionTime": "2026-03-01T11:50:00Z"},
                {"type": "Ready", "status": "False", "reason": "Running", "message": "second",
                 "lastTransitionTime": "2026-03-01T11:50:00Z"},
            ]),
        );
    })
    .await
    .context("cannot write the loose object's status")?;
    Ok(())
}

/// Objects with the shapes the condition must tell apart.
async fn stored_objects(ctx: &Ctx) -> Result<Vec<String>> {
    let ctl = ctx.controller();
    let conditions = json!([
        {"type": "Ready", "status": "False", "reason": "Running", "message": "working"},
        {"type": "ExecutionCreated", "status": "True", "reason": "Created", "message": "pr-1"},
        {"type": "ExecutionRunning", "status": "True", "reason": "Running", "message": "task 1"},
        // A type nobody is listed for: the controller's, by default.
        {"type": "CustomProbe", "status": "Unknown", "reason": "Waiting", "message": "no data"},
    ]);
    let progress = json!({"observedGeneration": 1, "executionRef": {"name": "pr-1"},
        "executionStatus": {"status": "Unknown", "reason": "Running", "message": "started",
            "completedTasks": 0, "totalTasks": 3},
        "conditions": conditions});
    // Running, with the executor's field beside the controller's.
    let running = ctx.create_in("skip-running", &["Running"]).await?;
    merge_status(&ctl, &running, progress.clone()).await?;
    merge_status(
        &ctx.executor(),
        &running,
        json!({"ephemeralCredentialIDs": [11, 12]}),
    )
    .await?;
    // Failed straight from Pending: a completionTime without a startTime, the mirrored reason.
    let failed = ctx.create_in("skip-failed", &["Failed"]).await?;
    let mut fields = progress.clone();
    fields["deduplicatedBy"] = json!("wfe-0");
    merge_status(&ctl, &failed, fields).await?;
    // Both times and a duration: always combined.
    let completed = ctx
        .create_in("skip-completed", &["Running", "Completed"])
        .await?;
    merge_status(&ctl, &completed, progress.clone()).await?;
    // A cleared block.
    let cleared = ctx.create_in("skip-cleared", &["Failed"]).await?;
    merge_status(&ctl, &cleared, progress).await?;
    merge_status(
        &ctx.operator(),
        &cleared,
        json!({"blockClearance": {"clearReason": CLEAR_REASON, "clearMethod": "StatusField"}}),
    )
    .await?;
    // No status yet (the first write of a lifecycle), and Pending (after a cooldown write).
    let new = ctx.create_in("skip-new", &[]).await?;
    let pending = ctx.create_in("skip-pending", &["Pending"]).await?;
    Ok(vec![running, failed, completed, cleared, new, pending])
}

/// Changes a controller makes on every progress report, which combining keeps as sent.
const BENIGN: &[usize] = &[0, 1, 2, 3, 4, 5];
const CHANGES: usize = 30;
/// What kubernaut's controller sends besides progress: a move with its times, an appended
/// condition, a duration rounded from its own clock.
const KUBERNAUT: &[usize] = &[27, 28, 29];

/// Sets `key`; returns its name.
fn set(s: &mut Status, key: &'static str, value: Value) -> &'static str {
    s.insert(key.into(), value);
    key
}

/// Applies change `which` to `s`; returns what it did, for the failure message.
fn change(s: &mut Status, which: usize, rng: &mut Rng) -> String {
    let n = rng.below(1000);
    let conditions_len = s
        .get("conditions")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let i = rng.below(conditions_len.max(1));
    let j = rng.below(conditions_len.max(1));
    let mut condition = |f: &mut dyn FnMut(&mut Value)| {
        if let Some(c) = s.get_mut("conditions").and_then(|c| c.get_mut(i))
            && c.is_object()
        {
            f(c);
        }
    };
    let what = match which {
        0 => set(
            s,
            "executionStatus",
            json!({"status": "Unknown", "reason": "Running", "message": format!("report {n}"), "completedTasks": n % 4, "totalTasks": 3}),
        ),
        1 => set(s, "observedGeneration", json!(n % 5)),
        2 => set(s, "executionRef", json!({"name": format!("pr-{n}")})),
        3 => {
            condition(&mut |c| c["message"] = json!(format!("report {n}")));
            "condition message"
        }
        4 => {
            condition(&mut |c| c["reason"] = json!(format!("Reason{n}")));
            "condition reason"
        }
        5 => {
            condition(&mut |c| c["observedGeneration"] = json!(n % 5));
            "condition observedGeneration"
        }
        6 => {
            let to = *rng.pick(&["True", "False", "Unknown"]);
            condition(&mut |c| c["status"] = json!(to));
            "condition status"
        }
        7 => {
            condition(&mut |c| c["lastTransitionTime"] = json!(time::format(Timestamp::now())));
            "condition lastTransitionTime"
        }
        8 => {
            condition(&mut |c| {
                c.as_object_mut().map(|c| c.remove("lastTransitionTime"));
            });
            "condition without lastTransitionTime"
        }
        9 => {
            if let Some(Value::Array(list)) = s.get_mut("conditions")
                && i.max(j) < list.len()
            {
                list.swap(i, j);
            }
            "conditions reordered"
        }
        10 => {
            if let Some(Value::Array(list)) = s.get_mut("conditions")
                && i < list.len()
            {
                list.remove(i);
            }
            "condition removed"
        }
        11 => {
            let t = *rng.pick(&["ExecutionComplete", "AdmissionRejected", "AnotherProbe"]);
            if let Some(Value::Array(list)) = s.get_mut("conditions") {
                list.push(
                    json!({"type": t, "status": "True", "reason": "Added", "message": "added"}),
                );
            }
            "condition added"
        }
        12 => {
            if let Some(Value::Array(list)) = s.get_mut("conditions")
                && let Some(c) = list.get(i).cloned()
            {
                list.push(c);
            }
            "condition type twice"
        }
        13 => {
            let to = *rng.pick(&["Pending", "Running", "Completed", "Failed"]);
            s.insert("phase".into(), json!(to));
            "phase"
        }
        14 => {
            set(s, "ephemeralCredentialIDs", json!([n]));
            "ephemeralCredentialIDs (the executor's)"
        }
        15 => {
            let keys: Vec<String> = s.keys().cloned().collect();
            if !keys.is_empty() {
                s.remove(rng.pick(&keys));
            }
            "a field left out"
        }
        16 => {
            let keys: Vec<String> = s.keys().cloned().collect();
            if !keys.is_empty() {
                s.insert(rng.pick(&keys).clone(), Value::Null);
            }
            "a field null"
        }
        17 => set(s, "startTime", json!(time::format(Timestamp::now()))),
        18 => set(s, "completionTime", json!(time::format(Timestamp::now()))),
        19 => set(s, "duration", json!(format!("{n}s"))),
        20 => set(s, "failureReason", json!("OOMKilled")),
        21 => set(s, "failureDetails", failure_details("DeadlineExceeded")),
        22 => set(
            s,
            "blockClearance",
            json!({"clearedBy": "controller", "clearReason": CLEAR_REASON, "clearMethod": "StatusField"}),
        ),
        23 => set(s, "deduplicatedBy", json!(format!("wfe-{n}"))),
        24 => {
            set(s, "conditions", json!("not a list"));
            "conditions not a list"
        }
        25 => {
            let broken = if n.is_multiple_of(2) {
                json!("x")
            } else {
                json!({"type": n})
            };
            condition(&mut |c| *c = broken.clone());
            "a condition not an object with a string type"
        }
        26 => {
            s.insert("executionStatus".into(), json!(*rng.pick(&["text", "1"])));
            "executionStatus of another type"
        }
        27 => {
            // What kubernaut's controller sends with a move: the time the move needs, and a
            // duration rounded from a sub-second clock, or (now and then) not.
            let now = Timestamp::now();
            let stamp = json!(time::format(now));
            let from = s
                .get("phase")
                .and_then(Value::as_str)
                .unwrap_or("Pending")
                .to_string();
            let to = match from.as_str() {
                "Pending" => *rng.pick(&["Running", "Failed"]),
                "Running" => *rng.pick(&["Completed", "Failed"]),
                other => other,
            }
            .to_string();
            s.insert("phase".into(), json!(to));
            if to == "Running" {
                s.insert("startTime".into(), stamp.clone());
            }
            if to == "Completed" || to == "Failed" {
                s.insert("completionTime".into(), stamp);
                coherent_duration(s, rng.below(5) as i64 - 2);
            }
            "a move with its times"
        }
        28 => {
            let t = *rng.pick(&[
                "ExecutionComplete",
                "AuditRecorded",
                "TokenTTLInsufficient",
                "NewProbe",
                "AdmissionRejected",
            ]);
            let ltt = (!n.is_multiple_of(4)).then(|| json!(time::format(Timestamp::now())));
            if let Some(Value::Array(list)) = s.get_mut("conditions") {
                let mut c =
                    json!({"type": t, "status": "True", "reason": "Added", "message": "appended"});
                if let Some(ltt) = ltt {
                    c["lastTransitionTime"] = ltt;
                }
                list.push(c);
            } else {
                s.insert(
                    "conditions".into(),
                    json!([{"type": t, "status": "True", "reason": "Added", "message": "first"}]),
                );
            }
            "a condition appended"
        }
        _ => {
            coherent_duration(s, rng.below(5) as i64 - 2);
            "a duration off by up to 2 s"
        }
    };
    what.to_string()
}

/// Sets the duration to completionTime − startTime plus `off` seconds, in Go's syntax.
fn coherent_duration(s: &mut Status, off: i64) {
    let time_of = |f: &str| s.get(f).and_then(Value::as_str).and_then(time::parse);
    let times = (time_of("startTime"), time_of("completionTime"));
    if let (Some(start), Some(end)) = times {
        let nanos = end.as_nanosecond() - start.as_nanosecond() + i128::from(off) * 1_000_000_000;
        let nanos = i64::try_from(nanos).unwrap_or(0);
        s.insert("duration".into(), json!(time::format_go_duration(nanos)));
    }
}

#[derive(Debug, Default)]
struct Tally {
    skipped: usize,
    /// Skipped writes that moved the phase, or appended a condition.
    skipped_moves: usize,
    skipped_appends: usize,
    skipped_refused: usize,
    called: usize,
    /// Admitted writes the API server did not send to /validate.
    validate_skipped: usize,
}

/// A PUT of `name`'s status through `api` after `change`: the stored status, and whether the
/// write reached /mutate (as it must when `combined`, and must not otherwise).
async fn put(
    ctx: &Ctx,
    api: &Api<DynamicObject>,
    name: &str,
    what: &str,
    combined: bool,
    mut change: impl FnMut(&mut Status) + Send,
) -> Result<Status> {
    let (stored, m, _) = counted(ctx, put_status(api, name, &mut change)).await;
    let (stored, _) = stored.with_context(|| what.to_string())?;
    ensure!(
        (m > 0) == combined,
        "{what}: /mutate called {m} times, expected {}",
        if combined { "at least once" } else { "never" }
    );
    Ok(status_of(&stored))
}

pub async fn mutate_only_when_combining_may_change(ctx: Arc<Ctx>) -> Result<()> {
    let ctl = ctx.controller();
    let names = stored_objects(&ctx).await?;
    let running = &names[0];
    let mut rng = Rng(1);

    // The same status again, and a progress report: no call.
    put(&ctx, &ctl, running, "the same status again", false, |_| {}).await?;
    put(&ctx, &ctl, running, "a progress report", false, |s| {
        change(s, 0, &mut rng);
        change(s, 3, &mut rng);
    })
    .await?;
    // What needs combining still reaches it: the executor's field left out is put back, and
    // the same report by another writer is combined.
    let what = "a write without the executor's field";
    let stored = put(&ctx, &ctl, running, what, true, |s| {
        s.remove("ephemeralCredentialIDs");
    })
    .await?;
    ensure!(
        stored.get("ephemeralCredentialIDs") == Some(&json!([11, 12])),
        "{what}: the field was lost: {stored:?}"
    );
    let what = "the executor's progress report";
    put(&ctx, &ctx.executor(), running, what, true, |s| {
        change(s, 0, &mut rng);
    })
    .await?;

    // A stored list with a type twice: combining keeps the later entry as stored, so even a
    // write that changes nothing else is combined, and a change to that entry is put back.
    let loose = wfe_api_in(&ctx.clients.controller, NS, LOOSE_GROUP);
    let what = "a progress report beside a duplicated condition type";
    put(&ctx, &loose, DUPLICATES, what, true, |s| {
        change(s, 0, &mut rng);
    })
    .await?;
    let what = "a change to the duplicated entry";
    let stored = put(&ctx, &loose, DUPLICATES, what, true, |s| {
        s["conditions"][2]["message"] = json!("changed");
    })
    .await?;
    ensure!(
        stored["conditions"][2]["message"] == json!("second"),
        "{what}: not kept as stored: {stored:?}"
    );

    let mut objects: Vec<(&str, &str)> =
        names.iter().map(|n| ("kubernaut.ai", n.as_str())).collect();
    objects.push((LOOSE_GROUP, DUPLICATES));
    random_writes(&ctx, &objects).await
}

/// Random dry-run writes to `objects` (group, name).
async fn random_writes(ctx: &Ctx, objects: &[(&str, &str)]) -> Result<()> {
    let seed = seed();
    let mut rng = Rng(seed);
    let policy = ctx.webhook.policy.load();
    let controller = policy.writer(&ctx.users.controller, &[]);
    let writers: [(&str, &str, &Client); 4] = [
        ("controller", &ctx.users.controller, &ctx.clients.controller),
        ("executor", &ctx.users.executor, &ctx.clients.executor),
        ("operator", &ctx.users.operator, &ctx.clients.operator),
        (
            "orchestrator",
            &ctx.users.orchestrator,
            &ctx.clients.orchestrator,
        ),
    ];
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let admin = &ctx.clients.admin;
    let before = apiserver_metrics(admin).await;
    let mut tally = Tally::default();
    let mut stored = Vec::new();
    for (group, name) in objects {
        let api = wfe_api_in(&ctx.clients.admin, NS, group);
        stored.push((*group, api.get_status(name).await?));
    }
    for i in 0..WRITES {
        let (group, object) = rng.pick(&stored).clone();
        // Mostly the controller, whose writes the condition may skip.
        let writer = if rng.below(10) < 7 {
            0
        } else {
            1 + rng.below(3)
        };
        let (who, user, client) = writers[writer];
        let api = wfe_api_in(client, NS, group);
        let mut status = status_of(&object);
        let mut done = Vec::new();
        for _ in 0..rng.below(4) {
            let which = match rng.below(3) {
                0 => *rng.pick(BENIGN),
                1 => *rng.pick(KUBERNAUT),
                _ => rng.below(CHANGES),
            };
            done.push(change(&mut status, which, &mut rng));
        }
        let mut sent = object.clone();
        sent.data["status"] = Value::Object(status);
        let name = object.metadata.name.clone().unwrap_or_default();
        let (answer, m, v) = counted(ctx, api.replace_status(&name, &dry_run, &sent)).await;
        let what = || format!("seed {seed}, write {i} by the {who} to {group} {name} ({done:?})");
        if v == 0
            && let Ok(written) = &answer
        {
            // Let past /validate: the verdict had to be an allow.
            tally.validate_skipped += 1;
            let review = status_update_review(
                "random",
                json!({"username": user}),
                serde_json::to_value(&object)?,
                serde_json::to_value(written)?,
            );
            let review: AdmissionReview<DynamicObject> = serde_json::from_value(review)?;
            let request = review.try_into().context("an AdmissionRequest")?;
            let verdict = validate(&policy, &request);
            ensure!(
                matches!(verdict.decision, Decision::Allow),
                "{}: skipped /validate, but it answers {:?}",
                what(),
                verdict.decision
            );
        }
        if m > 0 {
            tally.called += 1;
            continue;
        }
        ensure!(who == "controller", "{}: skipped /mutate", what());
        let Ok(written) = answer else {
            // Refused after /mutate (the schema): nothing was stored to get wrong.
            tally.skipped_refused += 1;
            continue;
        };
        tally.skipped += 1;
        let did = |what: &str| done.iter().any(|d| d == what);
        tally.skipped_moves += usize::from(did("a move with its times"));
        tally.skipped_appends += usize::from(did("a condition appended"));
        let (old, new) = (status_of(&object), status_of(&written));
        combining_keeps(&policy, controller, &old, &new).with_context(what)?;
    }
    let after = apiserver_metrics(admin).await;
    let scrapes = Scrapes::between(&before, &after);
    let errors = scrapes.grew(
        "apiserver_admission_match_condition_evaluation_errors_total",
        "",
    );
    let exclusions = scrapes.grew(
        "apiserver_admission_match_condition_exclusions_total",
        "type=\"admit\"",
    );
    eprintln!("mutate_condition: seed {seed}: {tally:?}, API server exclusions {exclusions}");
    ensure!(
        errors == 0.0,
        "seed {seed}: {errors} match condition evaluation errors"
    );
    // Not vacuous: both outcomes happen, and the API server counted the skips it made (and
    // more: after /mutate patches a write, the reinvocation round finds nothing to combine).
    ensure!(
        tally.skipped >= WRITES / 10 && tally.called >= WRITES / 10,
        "seed {seed}: {tally:?}"
    );
    ensure!(
        tally.skipped_moves > 0 && tally.skipped_appends > 0,
        "seed {seed}: no move or no appended condition was skipped: {tally:?}"
    );
    ensure!(tally.validate_skipped > 0, "seed {seed}: {tally:?}");
    ensure!(
        exclusions >= (tally.skipped + tally.skipped_refused) as f64,
        "seed {seed}: the API server counted {exclusions} exclusions for {tally:?}"
    );
    Ok(())
}
