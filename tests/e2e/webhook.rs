//! The webhook under test, in this process: `server::start` on 127.0.0.1 with a certgen pair,
//! Events recorded with the webhook's own identity, and the two webhook configurations that
//! point the API server at it. It can be stopped and started again on the same address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::LOOSE_GROUP;
use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use wfe_admission::certgen::{self, Validity};
use wfe_admission::config::Config;
use wfe_admission::events::{self, EventOptions};
use wfe_admission::metrics::Metrics;
use wfe_admission::policy::{Policy, match_conditions};
use wfe_admission::server::tls::CertSource;
use wfe_admission::server::{self, Running, ServeOptions, VerdictSink};
use wfe_admission::status::StatusManager;

pub const CONFIG_NAME: &str = "wfe-admission-e2e";
pub const EXECUTOR: &str = "system:serviceaccount:*:workflowexecution-executor";
/// kubernaut's controller in the `kubernaut` namespace: both controller and executor, as the
/// default policy has it (the suite's own controller identity is the controller only).
pub const KUBERNAUT_CONTROLLER: &str =
    "system:serviceaccount:kubernaut:workflowexecution-controller";

/// The policy under test: the defaults, with the executor as its own identity (and kubernaut's
/// controller as in the defaults, see [`KUBERNAUT_CONTROLLER`]), also guarding
/// the loose copy of the CRD.
pub fn policy() -> Result<Policy> {
    let mut config = Config::default();
    let mut loose = config.resource.clone();
    loose.group = LOOSE_GROUP.into();
    config.extra_resources.push(loose);
    config
        .writers
        .get_mut(wfe_admission::config::EXECUTOR)
        .context("the default config has no executor writer")?
        .users = vec![EXECUTOR.to_string(), KUBERNAUT_CONTROLLER.to_string()];
    Ok(Policy::new(config)?)
}

pub struct Webhook {
    pub policy: Arc<ArcSwap<Policy>>,
    pub metrics: Metrics,
    pub ca_pem: String,
    /// The bound address; a restart binds it again.
    pub addr: SocketAddr,
    options: ServeOptions,
    sink: Arc<dyn VerdictSink>,
    running: Mutex<Option<Running>>,
}

impl Webhook {
    /// Starts on 127.0.0.1:0; `events_client` records the Events (the webhook's identity).
    /// With `client_ca` only callers with a client certificate of that CA (the API server's)
    /// get through the handshake.
    pub async fn start(
        events_client: Client,
        client_ca: Option<std::path::PathBuf>,
    ) -> Result<Self> {
        let bundle = certgen::generate(&["127.0.0.1".to_string()], Validity::days(1))
            .context("cannot generate the webhook certificate")?;
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut options = ServeOptions::new(
            loopback,
            loopback,
            CertSource::Memory {
                cert: bundle.cert,
                key: bundle.key,
            },
        );
        options.shutdown_grace = Duration::from_secs(2);
        options.client_ca = client_ca;
        let policy = Arc::new(ArcSwap::from_pointee(policy()?));
        let metrics = Metrics::new();
        let sink: Arc<dyn VerdictSink> = Arc::new(events::spawn(
            events_client,
            Arc::clone(&policy),
            metrics.clone(),
            Some(StatusManager::new(metrics.clone())),
            EventOptions {
                instance: Some("wfe-admission-e2e".into()),
                ..EventOptions::default()
            },
        ));
        let running = server::start(
            options.clone(),
            Arc::clone(&policy),
            metrics.clone(),
            Some(Arc::clone(&sink)),
        )
        .await
        .context("cannot start the webhook")?;
        let addr = running.addr;
        // Later starts bind the same address, so the registered URL stays right.
        options.listen = addr;
        Ok(Self {
            policy,
            metrics,
            ca_pem: bundle.ca_cert,
            addr,
            options,
            sink,
            running: Mutex::new(Some(running)),
        })
    }

    /// Graceful shutdown; the port is closed afterwards.
    pub async fn stop(&self) {
        let running = self.running.lock().await.take();
        if let Some(running) = running {
            running.shutdown().await;
        }
    }

    /// Starts again on the same address with the same certificate, policy, metrics and sink.
    pub async fn restart(&self) -> Result<()> {
        let mut guard = self.running.lock().await;
        if guard.is_some() {
            return Ok(());
        }
        let running = server::start(
            self.options.clone(),
            Arc::clone(&self.policy),
            self.metrics.clone(),
            Some(Arc::clone(&self.sink)),
        )
        .await
        .with_context(|| format!("cannot start the webhook again on {}", self.addr))?;
        *guard = Some(running);
        Ok(())
    }

    /// Registers /mutate and /validate for UPDATE of workflowexecutions/status.
    pub async fn register(&self, admin: &Client) -> Result<()> {
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        let hook = |name: &str, path: &str| {
            json!({
                // The chart's names, which its WfeAdmissionCallsFailing alert selects.
                "name": format!("status.{name}.wfe-admission.kubernaut.ai"),
                "clientConfig": {"url": format!("https://{}/{path}", self.addr), "caBundle": ca},
                "rules": [{
                    "operations": ["UPDATE"],
                    "apiGroups": ["kubernaut.ai", LOOSE_GROUP],
                    "apiVersions": ["*"],
                    "resources": ["workflowexecutions/status"],
                    "scope": "Namespaced"
                }],
                "sideEffects": "NoneOnDryRun",
                "failurePolicy": "Fail",
                "matchPolicy": "Equivalent",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 10
            })
        };
        let config = self.policy.load().config.clone();
        // As the chart installs them: /mutate only for writes combining may change, /validate
        // only for updates it may deny.
        let mut mutating = hook("mutate", "mutate");
        mutating["reinvocationPolicy"] = Value::from("IfNeeded");
        mutating["matchConditions"] = json!([{
            "name": match_conditions::MUTATE_MATCH_CONDITION,
            "expression": match_conditions::mutate_match_condition(&config)
                .context("the e2e policy has no controller to recognise")?,
        }]);
        let mutating: MutatingWebhookConfiguration = serde_json::from_value(json!({
            "metadata": {"name": CONFIG_NAME},
            "webhooks": [mutating]
        }))?;
        let mut validating = hook("validate", "validate");
        validating["matchConditions"] = json!([{
            "name": match_conditions::VALIDATE_MATCH_CONDITION,
            "expression": match_conditions::validate_match_condition(&config),
        }]);
        let validating: ValidatingWebhookConfiguration = serde_json::from_value(json!({
            "metadata": {"name": CONFIG_NAME},
            "webhooks": [validating]
        }))?;
        Api::<MutatingWebhookConfiguration>::all(admin.clone())
            .create(&PostParams::default(), &mutating)
            .await
            .context("cannot create the MutatingWebhookConfiguration")?;
        Api::<ValidatingWebhookConfiguration>::all(admin.clone())
            .create(&PostParams::default(), &validating)
            .await
            .context("cannot create the ValidatingWebhookConfiguration")?;
        Ok(())
    }
}
