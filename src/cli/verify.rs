//! `wfe-admission verify`: asks the API server whether both webhooks are in the path of the
//! guarded status writes, with two dry-run writes to one stored object. Dry run: nothing is
//! stored and no Event is recorded (docs/policy.md, Events), so it is safe on a live cluster.
//! It checks what `helm status` and `kubectl get` cannot: that the API server calls the
//! webhook, trusts its certificate and reaches it through the Service and NetworkPolicy.
//!
//! Right after an install there may be no object to write to: then it creates one of its own,
//! with a spec no kubernaut controller acts on, and deletes it after the checks.

use std::process::ExitCode;

use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::core::DynamicObject;
use serde_json::{Map, Value, json};

use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::policy::transitions::PhaseValue;
use crate::retry::WriteError;
use crate::status::{StatusManager, api_for};

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Namespace of the object to write to (default: the first object in any namespace).
    /// With no object there, one is created in this namespace (default: `default`) for the
    /// checks and deleted after them.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// The object to write to (default: the first one listed).
    #[arg(long, requires = "namespace")]
    pub name: Option<String>,
    /// The webhook configurations whose endpoints the client-authentication line probes.
    #[command(flatten)]
    pub own: super::kube::OwnConfigurations,
    #[command(flatten)]
    pub cluster: super::kube::PolicyAndCluster,
}

/// What `verify` sends as `clearedBy`; the mutating webhook must replace it.
pub const FORGED: &str = "wfe-admission-verify (forged)";

/// One check's outcome: passed or not, and what the API server said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

/// The object written to, and both checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub object: String,
    /// The object was created for the checks and deleted after them.
    pub throwaway: bool,
    pub checks: Vec<Check>,
}

/// Where a throwaway object goes when no namespace is given.
pub const THROWAWAY_NAMESPACE: &str = "default";
/// Label of every object `verify` creates, so a left-over one is easy to find.
pub const THROWAWAY_LABEL: &str = "wfe-admission.kubernaut.ai/verify";

impl Report {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

/// Finds the object (or creates a throwaway one), then makes both dry-run writes. `Err` when
/// there is nothing to write to and none can be made, or a throwaway cannot be deleted.
pub async fn verify(
    client: &kube::Client,
    policy: &Policy,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Result<Report, String> {
    let r = &policy.config.resource;
    let api_version = format!("{}/{}", r.group, r.version);
    let listed = api_for(client, policy, &api_version, &r.kind, namespace);
    let found =
        match name {
            Some(name) => Some(listed.get(name).await.map_err(|e| {
                format!("cannot read {} {name}: {}", r.resource, describe(&e.into()))
            })?),
            None => listed
                .list(&ListParams::default().limit(1))
                .await
                .map_err(|e| format!("cannot list {}: {}", r.resource, describe(&e.into())))?
                .items
                .into_iter()
                .next(),
        };
    let (object, throwaway) = match found {
        Some(object) => (object, false),
        None => {
            let ns = namespace.unwrap_or(THROWAWAY_NAMESPACE);
            let api = api_for(client, policy, &api_version, &r.kind, Some(ns));
            let created = create_throwaway(&api, policy).await.map_err(|e| {
                format!(
                    "no {} found in {}, and none could be created to check on in namespace {ns}: {e}; create one, or pass --namespace and --name of a stored one",
                    r.resource,
                    namespace.map_or("any namespace".into(), |ns| format!("namespace {ns}"))
                )
            })?;
            (created, true)
        }
    };
    let ns = object.metadata.namespace.clone();
    let api = api_for(client, policy, &api_version, &r.kind, ns.as_deref());
    let name = object.metadata.name.clone().unwrap_or_default();
    let writes = Writes {
        api: &api,
        name: &name,
        manager: StatusManager::new(Metrics::new()),
    };
    let checks = vec![
        validating(&writes, policy).await,
        mutating(&writes, policy).await,
    ];
    let object = format!("{}/{name}", ns.as_deref().unwrap_or("-"));
    if throwaway {
        api.delete(&name, &DeleteParams::background())
            .await
            .map_err(|e| {
                format!(
                    "checked, but cannot delete the object made for it, {object}: {}; delete it by hand (label {THROWAWAY_LABEL})",
                    describe(&e.into())
                )
            })?;
    }
    Ok(Report {
        object,
        throwaway,
        checks,
    })
}

/// A WorkflowExecution no kubernaut controller acts on: kubernaut's controllers watch only
/// their own namespace, and even there this spec fails their validation before anything is
/// launched (no execution bundle, no engine, a target that names no resource).
async fn create_throwaway(
    api: &Api<DynamicObject>,
    policy: &Policy,
) -> Result<DynamicObject, String> {
    let r = &policy.config.resource;
    if r.kind != "WorkflowExecution" {
        return Err(format!("verify knows no valid spec for a {}", r.kind));
    }
    let suffix = jiff::Timestamp::now().as_nanosecond().rem_euclid(1 << 24);
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("{}/{}", r.group, r.version),
        "kind": r.kind,
        "metadata": {
            "name": format!("wfe-admission-verify-{suffix:06x}"),
            "labels": {THROWAWAY_LABEL: "throwaway"},
        },
        "spec": {
            "remediationRequestRef": {"kind": "RemediationRequest", "name": "wfe-admission-verify"},
            "targetResource": "wfe-admission-verify",
            "workflowRef": {
                "workflowId": "wfe-admission-verify", "workflowName": "wfe-admission-verify",
                "actionType": "wfe-admission-verify", "version": "0", "executionBundle": "",
            },
        },
    }))
    .map_err(|e| e.to_string())?;
    api.create(&PostParams::default(), &object)
        .await
        .map_err(|e| describe(&e.into()))
}

/// The object both checks write to, through the status manager's dry run (read, change, write,
/// read again on a conflict).
struct Writes<'a> {
    api: &'a Api<DynamicObject>,
    name: &'a str,
    manager: StatusManager,
}

/// An illegal phase move must come back denied by an admission webhook.
async fn validating(writes: &Writes<'_>, policy: &Policy) -> Check {
    let check = |passed, detail| Check {
        name: "validating",
        passed,
        detail,
    };
    let phases = &policy.phases;
    let mut moved = None;
    let result = writes
        .manager
        .dry_run(writes.api, writes.name, |status| {
            let from = phases
                .current(PhaseValue::read(Some(status), &phases.field))
                .to_string();
            let Some(to) = phases.illegal_target(&from).map(str::to_string) else {
                return false;
            };
            status.insert(phases.field.clone(), Value::String(to.clone()));
            moved = Some(format!("{from} → {to}"));
            true
        })
        .await;
    let Some(moved) = moved else {
        // Nothing was sent: the read failed, or no move from the stored phase is illegal.
        return check(
            false,
            match result {
                Err(e) => format!("cannot read {}'s status: {}", writes.name, describe(&e)),
                Ok(_) => "cannot test: the stored phase may move to any phase, so no write can be illegal".into(),
            },
        );
    };
    match result {
        Ok(_) => check(
            false,
            format!(
                "{moved} (dry run) was allowed: no validating webhook is called for {}/status",
                policy.config.resource.resource
            ),
        ),
        Err(e) => match webhook_denial(&e) {
            Some(message) => check(true, format!("{moved} (dry run) denied: {message}")),
            None => check(false, format!("{moved} (dry run): {}", describe(&e))),
        },
    }
}

/// A clearance with a forged `clearedBy` must come back attributed by the mutating webhook.
async fn mutating(writes: &Writes<'_>, policy: &Policy) -> Check {
    let check = |passed, detail| Check {
        name: "mutating",
        passed,
        detail,
    };
    let bc = &policy.config.block_clearance;
    let sent = format!(
        "{}.{} sent as {FORGED:?} (dry run)",
        bc.field, bc.cleared_by
    );
    let result = writes.manager.dry_run(writes.api, writes.name, |status| {
        let mut clearance = match status.get(&bc.field) {
            Some(Value::Object(stored)) => stored.clone(),
            _ => {
                let reason = std::iter::once("wfe-admission verify checks attribution")
                    .chain(std::iter::repeat_n("in a dry run", bc.min_reason_words))
                    .collect::<Vec<_>>()
                    .join(" ");
                let mut new = Map::new();
                new.insert(bc.reason.clone(), Value::String(reason));
                new.insert("clearMethod".into(), json!("StatusField"));
                new
            }
        };
        clearance.insert(bc.cleared_by.clone(), json!(FORGED));
        status.insert(bc.field.clone(), Value::Object(clearance));
        true
    });
    match result.await {
        Ok(answer) => {
            let cleared_by = answer
                .as_ref()
                .and_then(|a| a.data.get("status"))
                .and_then(|s| s.get(&bc.field))
                .and_then(|c| c.get(&bc.cleared_by))
                .cloned()
                .unwrap_or(Value::Null);
            if cleared_by == json!(FORGED) {
                check(
                    false,
                    format!(
                        "{sent} came back unchanged: no mutating webhook is called for {}/status",
                        policy.config.resource.resource
                    ),
                )
            } else if cleared_by.is_null() {
                // A writer that may not clear blocks (the controller): the webhook took it out.
                check(true, format!("{sent} came back removed"))
            } else {
                check(true, format!("{sent} came back as {cleared_by}"))
            }
        }
        Err(e) => check(
            false,
            match webhook_denial(&e) {
                Some(message) => format!(
                    "{sent} was denied instead of attributed, so no mutating webhook replaced it: {message}"
                ),
                None => format!("{sent}: {}", describe(&e)),
            },
        ),
    }
}

/// An API error as the API server put it; any other error as the client or manager does.
fn describe(e: &WriteError) -> String {
    match e {
        WriteError::Kube(kube::Error::Api(s)) => format!("HTTP {}: {}", s.code, s.message),
        other => other.to_string(),
    }
}

/// The API server's message when an admission webhook denied the request.
fn webhook_denial(e: &WriteError) -> Option<String> {
    match e {
        WriteError::Kube(kube::Error::Api(s))
            if s.message.contains("admission webhook")
                && s.message.contains("denied the request") =>
        {
            Some(s.message.clone())
        }
        _ => None,
    }
}

/// Whether each webhook of the named configurations requires a client certificate, probed
/// from here the way a caller without one would reach it: one line per endpoint.
pub async fn client_auth(client: &kube::Client, names: &[String]) -> Vec<String> {
    use crate::arming::probe::{Answer, answers};
    use crate::webhook_configs::OwnConfiguration;
    use k8s_openapi::api::admissionregistration::v1::{
        MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
    };
    async fn endpoints<K: OwnConfiguration>(
        client: &kube::Client,
        name: &str,
    ) -> Result<Vec<crate::webhook_configs::Endpoint>, String> {
        match Api::<K>::all(client.clone()).get_opt(name).await {
            Ok(found) => Ok(found.map(|c| c.endpoints()).unwrap_or_default()),
            Err(e) => Err(format!(
                "cannot read {} {name}: {}",
                K::kind(&()),
                describe(&e.into())
            )),
        }
    }
    let mut lines = Vec::new();
    for name in names {
        let found = [
            endpoints::<MutatingWebhookConfiguration>(client, name).await,
            endpoints::<ValidatingWebhookConfiguration>(client, name).await,
        ];
        for result in found {
            let list = match result {
                Ok(list) => list,
                Err(e) => {
                    lines.push(format!("cannot tell: {e}"));
                    continue;
                }
            };
            for endpoint in list {
                let url = &endpoint.url;
                lines.push(match answers(&endpoint, std::time::Duration::from_secs(3)).await {
                    Ok(Answer::ClientCertificateRequired) => {
                        format!("{url}: client certificate required")
                    }
                    Ok(Answer::Http(_)) => format!(
                        "{url}: answers callers without a client certificate (anyone who reaches it can have Events recorded; docs/security.md)"
                    ),
                    Err(e) => format!("{url}: cannot tell from here: {e}"),
                });
            }
        }
    }
    if lines.is_empty() {
        lines.push(format!(
            "cannot tell: no webhook configuration named {}",
            names.join(", ")
        ));
    }
    lines
}

pub fn run(args: VerifyArgs) -> ExitCode {
    let VerifyArgs {
        namespace,
        name,
        own,
        cluster,
    } = args;
    let (config, kubeconfig) = (cluster.config.as_deref(), cluster.kubeconfig.as_deref());
    super::kube::run_with_cluster(config, kubeconfig, |policy, client| async move {
        let report = verify(&client, &policy, namespace.as_deref(), name.as_deref()).await?;
        let made = if report.throwaway {
            " (made for this check, and deleted)"
        } else {
            ""
        };
        println!("verify: dry-run status writes to {}{made}", report.object);
        for c in &report.checks {
            let mark = if c.passed { "ok  " } else { "FAIL" };
            println!("{mark} {}: {}", c.name, c.detail);
        }
        // Informational: it does not change the exit code.
        for line in client_auth(&client, &own.webhook_configurations).await {
            println!("info client-auth: {line}");
        }
        Ok(report.passed())
    })
}
