//! Scenarios 3 and 4: partial writes combined into one status, and block clearance attributed
//! to the user the API server authenticated.

use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use kube::api::{Patch, PatchParams};
use serde_json::{Map, Value, json};

use super::{CLEAR_REASON, condition, condition_types, recent};
use crate::cluster::{self, api_error, merge_status, put_status, status_of, text};
use crate::harness::Ctx;

fn types(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// One condition in a merge patch, a status rebuilt from scratch, and owners' removals.
pub async fn partial_writes(ctx: Arc<Ctx>) -> Result<()> {
    let (ctl, exe, op) = (ctx.controller(), ctx.executor(), ctx.operator());
    let name = ctx.create("merging").await?;
    put_status(&ctl, &name, |s| {
        s.insert("phase".into(), json!("Running"));
        s.insert(
            "conditions".into(),
            json!([
                {"type": "ExecutionCreated", "status": "True", "reason": "Created", "message": "job created"},
                {"type": "ExecutionRunning", "status": "True", "reason": "Running", "message": "job running"}
            ]),
        );
    })
    .await
    .context("controller: Running with two conditions")?;
    merge_status(&exe, &name, json!({"ephemeralCredentialIDs": [101, 102]}))
        .await
        .context("executor: credentials")?;
    merge_status(
        &op,
        &name,
        json!({"blockClearance": {"clearReason": CLEAR_REASON, "clearMethod": "StatusField"}}),
    )
    .await
    .context("operator: clearance")?;
    let before = status_of(&ctx.stored(&name).await?);

    // A merge patch replaces the whole list on the wire; the webhook merges by type.
    let ready = json!({"type": "Ready", "status": "True", "reason": "AllGood", "message": "ready"});
    merge_status(&ctl, &name, json!({"conditions": [ready]}))
        .await
        .context("controller: merge patch with one condition")?;
    let st = status_of(&ctx.stored(&name).await?);
    ensure!(
        condition_types(&st) == types(&["ExecutionCreated", "ExecutionRunning", "Ready"]),
        "conditions after a one-condition merge patch: {:?}",
        condition_types(&st)
    );
    for t in ["ExecutionCreated", "ExecutionRunning"] {
        ensure!(
            condition(&st, t) == condition(&before, t),
            "{t} is unchanged, lastTransitionTime included"
        );
    }
    ensure!(
        condition(&st, "Ready")
            .and_then(|c| c.get("lastTransitionTime"))
            .is_some(),
        "a new condition gets a lastTransitionTime"
    );

    // The controller rebuilds its status from scratch and PUTs it.
    put_status(&ctl, &name, |s| {
        let rebuilt = json!({
            "phase": "Running",
            "observedGeneration": 1,
            "executionRef": {"name": format!("{name}-job")},
            "conditions": [ready.clone()]
        });
        *s = rebuilt.as_object().cloned().unwrap_or_default();
    })
    .await
    .context("controller: status rebuilt from scratch")?;
    let st = status_of(&ctx.stored(&name).await?);
    ensure!(
        st.get("ephemeralCredentialIDs") == Some(&json!([101, 102])),
        "the executor's ephemeralCredentialIDs survive a rebuild: {st:?}"
    );
    ensure!(
        st.get("blockClearance") == before.get("blockClearance"),
        "the operator's blockClearance survives a rebuild: {st:?}"
    );
    ensure!(
        st.get("startTime") == before.get("startTime"),
        "startTime is write-once"
    );
    ensure!(
        condition_types(&st).len() == 3,
        "no condition dropped: {:?}",
        condition_types(&st)
    );

    // A non-owner's removal does not stand: it is carried over.
    merge_status(&ctl, &name, json!({"ephemeralCredentialIDs": null})).await?;
    let st = status_of(&ctx.stored(&name).await?);
    ensure!(
        st.get("ephemeralCredentialIDs") == Some(&json!([101, 102])),
        "the controller cannot remove the executor's field: {st:?}"
    );

    // The owners' deliberate removals stand: a JSON patch `remove` and a merge-patch null.
    let remove: json_patch::Patch = serde_json::from_value(
        json!([{"op": "remove", "path": "/status/ephemeralCredentialIDs"}]),
    )?;
    exe.patch_status(&name, &PatchParams::default(), &Patch::<()>::Json(remove))
        .await
        .context("executor: JSON patch remove")?;
    merge_status(&op, &name, json!({"blockClearance": null}))
        .await
        .context("operator: merge patch null")?;
    let st = status_of(&ctx.stored(&name).await?);
    ensure!(
        !st.contains_key("ephemeralCredentialIDs"),
        "the executor removed its field: {st:?}"
    );
    ensure!(
        !st.contains_key("blockClearance"),
        "the operator removed its clearance: {st:?}"
    );
    ensure!(
        condition_types(&st).len() == 3 && text(&st, "phase") == Some("Running"),
        "everything else stays: {st:?}"
    );
    Ok(())
}

fn clearance(st: &Map<String, Value>) -> Result<&Map<String, Value>> {
    st.get("blockClearance")
        .and_then(Value::as_object)
        .with_context(|| format!("no blockClearance stored: {st:?}"))
}

/// clearedBy/clearedAt from the request's user, a forged clearedBy overwritten, a short reason
/// denied.
pub async fn block_clearance(ctx: Arc<Ctx>) -> Result<()> {
    let op = ctx.operator();
    let alice = ctx.users.operator.as_str();

    // The operator sends the reason and method only.
    let name = ctx.create_in("clearance", &["Running", "Failed"]).await?;
    merge_status(
        &op,
        &name,
        json!({"blockClearance": {"clearReason": CLEAR_REASON, "clearMethod": "StatusField"}}),
    )
    .await
    .context("operator: clearance")?;
    let st = status_of(&ctx.stored(&name).await?);
    let bc = clearance(&st)?;
    ensure!(
        bc.get("clearedBy") == Some(&json!(alice)),
        "clearedBy is the authenticated user: {bc:?}"
    );
    recent(bc, "clearedAt").context("clearedAt is stamped by the webhook")?;

    // A forged attribution is replaced.
    let name = ctx.create_in("clearance-forged", &["Failed"]).await?;
    merge_status(
        &op,
        &name,
        json!({"blockClearance": {
            "clearedBy": "mallory", "clearedAt": "2020-01-01T00:00:00Z",
            "clearReason": CLEAR_REASON, "clearMethod": "APIEndpoint"
        }}),
    )
    .await
    .context("operator: clearance with a forged clearedBy")?;
    let st = status_of(&ctx.stored(&name).await?);
    let bc = clearance(&st)?;
    ensure!(
        bc.get("clearedBy") == Some(&json!(alice)),
        "forged clearedBy: {bc:?}"
    );
    let cleared_at = recent(bc, "clearedAt").context("a forged clearedAt is replaced")?;
    // Changing the attribution later does not work either: it keeps its first value.
    merge_status(
        &op,
        &name,
        json!({"blockClearance": {"clearedBy": "mallory"}}),
    )
    .await?;
    let st = status_of(&ctx.stored(&name).await?);
    let bc = clearance(&st)?;
    ensure!(
        bc.get("clearedBy") == Some(&json!(alice))
            && recent(bc, "clearedAt").ok() == Some(cleared_at),
        "the attribution keeps its first value: {bc:?}"
    );

    // Too short a reason is denied and nothing is stored.
    let name = ctx.create_in("clearance-short", &["Failed"]).await?;
    let before = ctx.stored(&name).await?;
    let result = merge_status(
        &op,
        &name,
        json!({"blockClearance": {"clearReason": "looks fine now", "clearMethod": "StatusField"}}),
    )
    .await;
    let (code, message) = api_error(result, "a three-word clearReason")?;
    println!("    short reason: HTTP {code}: {message}");
    ensure!(code == 403, "HTTP {code}: {message}");
    ensure!(
        message.contains("at least 10 words (got 3)") && message.contains(alice),
        "{message}"
    );
    let after = ctx.stored(&name).await?;
    ensure!(
        cluster::rv(&after) == cluster::rv(&before),
        "nothing stored"
    );
    Ok(())
}
