//! Only the API server can make the webhook speak. The control plane presents its webhook
//! client certificate (start.sh's AdmissionConfiguration) and the suite's webhook serves with
//! `--client-ca`: a made-up review POSTed straight to the port, naming a real object and an
//! illegal move blamed on the controller, gets no answer, no Event and no count, while the
//! API server's own call for the same move is denied and recorded.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use serde_json::json;
use wfe_admission::certgen::{self, Validity};
use wfe_bench::e2e::series_total;
use wfe_bench::fixtures::status_update_review;

use crate::cluster::{self, api_error, merge_status};
use crate::harness::{Ctx, NS};

fn denials(ctx: &Ctx) -> f64 {
    series_total(
        &ctx.webhook.metrics.encode(),
        "wfe_admission_denials_total",
        "",
    )
}

pub async fn forged_reviews_get_no_answer(ctx: Arc<Ctx>) -> Result<()> {
    let name = ctx.create_in("forged", &["Running", "Completed"]).await?;
    let old = serde_json::to_value(ctx.stored(&name).await?)?;
    let mut new = old.clone();
    new["status"]["phase"] = json!("Running");
    let user = json!({"username": ctx.users.controller,
        "groups": ["system:serviceaccounts", "system:authenticated"]});
    let mut review = status_update_review("forged-review", user, old, new);
    review["request"]["name"] = json!(name);
    review["request"]["namespace"] = json!(NS);
    let url = format!("https://127.0.0.1:{}/validate", ctx.webhook.addr.port());
    let before = denials(&ctx);

    // No client certificate, or one from another CA: the handshake fails, nothing is read.
    let stranger = certgen::generate(&["forger".to_string()], Validity::days(1))?;
    let (cert, key) = certgen::sign_with(
        &stranger.ca_cert,
        &stranger.ca_key,
        &["forger".to_string()],
        Validity::days(1),
        true,
    )?;
    let identities = [
        None,
        Some(reqwest::Identity::from_pem(
            format!("{cert}{key}").as_bytes(),
        )?),
    ];
    for identity in identities {
        let with_cert = identity.is_some();
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .add_root_certificate(reqwest::Certificate::from_pem(
                ctx.webhook.ca_pem.as_bytes(),
            )?);
        if let Some(id) = identity {
            builder = builder.identity(id);
        }
        let answered = builder.build()?.post(&url).json(&review).send().await;
        ensure!(
            answered.is_err(),
            "a forged review (client certificate: {with_cert}) was answered: {answered:?}"
        );
    }
    ensure!(denials(&ctx) == before, "a forged review was counted");
    super::events_flushed(&ctx, "forged-witness").await?;
    let events = cluster::events(&ctx.clients.admin, NS, "IllegalPhaseTransition", &name).await?;
    ensure!(events.is_empty(), "a forged review made Events: {events:?}");

    // The API server's own call for the same move: denied, with its Event.
    let before = denials(&ctx);
    let result = merge_status(&ctx.controller(), &name, json!({"phase": "Running"})).await;
    let (code, message) = api_error(result, "Completed → Running")?;
    ensure!(
        code == 403 && message.contains("illegal phase transition Completed → Running"),
        "HTTP {code}: {message}"
    );
    ensure!(
        denials(&ctx) > before,
        "the API server's call was not counted"
    );
    cluster::wait_events(
        &ctx.clients.admin,
        NS,
        "IllegalPhaseTransition",
        &name,
        Duration::from_secs(15),
    )
    .await?;
    println!("    a forged review: no answer, no Event; the API server's: denied, 1 Event");
    Ok(())
}
