//! Arming. On a first install the chart renders both webhook configurations failing open
//! (`failurePolicy: Ignore`) and names the failure policy it wants in an annotation, so that a
//! status write made before any webhook answers passes, as it did before the install, instead
//! of being refused. Once a webhook answers at the address the API server calls, over TLS
//! checked against the configured bundle, every webhook gets the wanted policy. `disarm`, the
//! chart's pre-delete hook, goes back to failing open before Helm deletes the Service, which it
//! does before the configurations.

pub mod probe;

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::Client;
use kube::api::Api;

use crate::retry::{RetryingWriter, WriteError, WriteOutcome};
use crate::selfcert::{SelfCertError, SelfManagedOptions};
use crate::status::StatusManager;
use crate::webhook_configs::{OwnConfiguration, WebhookParts, edit_configuration, edit_object};

/// The failure policy the chart wants once a webhook answers: `Fail` or `Ignore`.
pub const FAILURE_POLICY_ANNOTATION: &str = "wfe-admission.kubernaut.ai/failure-policy";
/// How often an unarmed webhook probes its address.
const PROBE_EVERY: Duration = Duration::from_secs(1);
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The policy the annotation asks for, when it is one the API server knows.
pub fn wanted(meta: &kube::api::ObjectMeta) -> Option<&'static str> {
    match meta
        .annotations
        .as_ref()?
        .get(FAILURE_POLICY_ANNOTATION)?
        .as_str()
    {
        "Fail" => Some("Fail"),
        "Ignore" => Some("Ignore"),
        _ => None,
    }
}

/// Sets every webhook's failure policy; whether anything changed.
pub fn set_failure_policy(parts: Vec<WebhookParts<'_>>, policy: &str) -> bool {
    let mut changed = false;
    for p in parts {
        if p.failure_policy.as_deref() != Some(policy) {
            *p.failure_policy = Some(policy.to_string());
            changed = true;
        }
    }
    changed
}

/// Arms one configuration when its annotation asks for a policy it does not have yet and, for
/// `Fail`, every one of its webhooks answers. `true` when nothing is left to do.
async fn arm_one<K: OwnConfiguration>(
    client: &Client,
    writer: &RetryingWriter,
    name: &str,
) -> Result<bool, SelfCertError> {
    let api: Api<K> = Api::all(client.clone());
    let Some(stored) = api.get_opt(name).await? else {
        return Ok(true);
    };
    let Some(policy) = wanted(kube::Resource::meta(&stored)) else {
        return Ok(true);
    };
    if !set_failure_policy(stored.clone().parts(), policy) {
        return Ok(true);
    }
    if policy == "Fail" {
        for endpoint in stored.endpoints() {
            if let Err(reason) = probe::answers(&endpoint, PROBE_TIMEOUT).await {
                tracing::debug!(configuration = name, url = %endpoint.url, %reason,
                    "not arming yet: the webhook does not answer where the API server calls it");
                return Ok(false);
            }
        }
    }
    let outcome = edit_configuration::<K>(client, writer, name, |parts| {
        set_failure_policy(parts, policy)
    })
    .await?;
    if let Some(WriteOutcome::Written { .. }) = outcome {
        tracing::info!(
            configuration = name,
            kind = K::kind(&()).as_ref(),
            failure_policy = policy,
            "armed: the webhook answers where the API server calls it"
        );
    }
    Ok(true)
}

/// Arms every named configuration that can be; `true` when all are armed (or not armable).
pub async fn arm(
    client: &Client,
    names: &[String],
    manager: &StatusManager,
) -> Result<bool, SelfCertError> {
    let mut done = true;
    for name in names {
        let writer = manager.writer();
        done &= arm_one::<MutatingWebhookConfiguration>(client, writer, name).await?;
        done &= arm_one::<ValidatingWebhookConfiguration>(client, writer, name).await?;
    }
    Ok(done)
}

/// Probes every second until armed, then checks again at every certificate check.
pub fn spawn(client: Client, options: SelfManagedOptions, manager: StatusManager) {
    tokio::spawn(async move {
        loop {
            let wait = match arm(&client, &options.webhook_configurations, &manager).await {
                Ok(true) => options.check_interval,
                Ok(false) => PROBE_EVERY,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot arm the webhook configurations");
                    PROBE_EVERY * 10
                }
            };
            tokio::time::sleep(wait).await;
        }
    });
}

/// Makes one configuration fail open and records that in its annotation, so that no webhook
/// still running arms it again. `false` when there is no such configuration.
async fn disarm_one<K: OwnConfiguration>(
    client: &Client,
    writer: &RetryingWriter,
    name: &str,
) -> Result<bool, WriteError> {
    let written = edit_object::<K>(client, writer, name, |c| {
        let annotations = c.meta_mut().annotations.get_or_insert_default();
        let before = annotations.insert(FAILURE_POLICY_ANNOTATION.into(), "Ignore".into());
        let annotated = before.as_deref() != Some("Ignore");
        set_failure_policy(c.parts(), "Ignore") | annotated
    })
    .await?;
    Ok(written.is_some())
}

/// Every named configuration fails open; how many configurations there were.
pub async fn disarm(
    client: &Client,
    names: &[String],
    writer: &RetryingWriter,
) -> Result<usize, WriteError> {
    let mut found = 0;
    for name in names {
        found +=
            usize::from(disarm_one::<MutatingWebhookConfiguration>(client, writer, name).await?);
        found +=
            usize::from(disarm_one::<ValidatingWebhookConfiguration>(client, writer, name).await?);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::admissionregistration::v1::ValidatingWebhook;
    use kube::api::ObjectMeta;

    fn configuration(
        annotation: Option<&str>,
        policies: &[Option<&str>],
    ) -> ValidatingWebhookConfiguration {
        ValidatingWebhookConfiguration {
            metadata: ObjectMeta {
                annotations: annotation
                    .map(|a| [(FAILURE_POLICY_ANNOTATION.to_string(), a.to_string())].into()),
                ..Default::default()
            },
            webhooks: Some(
                policies
                    .iter()
                    .map(|p| ValidatingWebhook {
                        failure_policy: p.map(String::from),
                        ..Default::default()
                    })
                    .collect(),
            ),
        }
    }

    #[test]
    fn only_the_two_known_policies_are_wanted() {
        for (annotation, want) in [
            (Some("Fail"), Some("Fail")),
            (Some("Ignore"), Some("Ignore")),
            (Some("fail"), None),
            (None, None),
        ] {
            assert_eq!(
                wanted(&configuration(annotation, &[]).metadata),
                want,
                "{annotation:?}"
            );
        }
    }

    #[test]
    fn every_webhook_gets_the_policy_and_a_second_pass_changes_nothing() {
        let mut c = configuration(Some("Fail"), &[Some("Ignore"), None, Some("Fail")]);
        assert!(set_failure_policy(c.parts(), "Fail"));
        let all: Vec<_> = c
            .webhooks
            .iter()
            .flatten()
            .map(|w| w.failure_policy.clone())
            .collect();
        assert_eq!(all, vec![Some("Fail".to_string()); 3]);
        assert!(!set_failure_policy(c.parts(), "Fail"));
    }
}
