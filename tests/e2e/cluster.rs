//! Talking to the control plane: one kube client per identity, the CRD, WorkflowExecution
//! objects and their status, Events, and polling.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, ListParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::{Client, Error as KubeError};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Map, Value, json};

pub type Status = Map<String, Value>;

/// The identities start.sh provisions (`WFE_TOKEN_<ID>`, `WFE_USER_<ID>`).
#[derive(Clone)]
pub struct Clients {
    pub admin: Client,
    pub controller: Client,
    pub executor: Client,
    pub operator: Client,
    pub webhook: Client,
    /// kubernaut's RemediationOrchestrator.
    pub orchestrator: Client,
    /// kubernaut's controller as the default policy sees it: controller and executor in one
    /// identity (its executors run in its process).
    pub kubernaut: Client,
}

/// A client that authenticates with a bearer token, built by hand (no kubeconfig).
pub fn client(url: &str, ca_file: &str, token: &str) -> Result<Client> {
    let mut config = kube::Config::new(url.parse().context("KUBE_APISERVER_URL")?);
    let roots = CertificateDer::pem_file_iter(ca_file)
        .with_context(|| format!("cannot read {ca_file}"))?
        .map(|c| c.map(|c| c.as_ref().to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("cannot parse {ca_file}"))?;
    config.root_cert = Some(roots);
    // AuthInfo's token is a secrecy::SecretString; its serde form is the plain string.
    config.auth_info = serde_json::from_value(json!({ "token": token }))?;
    Client::try_from(config).context("cannot build a kube client")
}

/// A copy of the CRD whose conditions are a plain list, not `x-kubernetes-list-type: map`: a
/// stored status there may list a condition type twice (guarded through the policy's
/// `extraResources`).
pub const LOOSE_GROUP: &str = "loose.kubernaut.ai";

/// A copy of the CRD no webhook is registered for: what `verify` must call unguarded.
pub const UNGUARDED_GROUP: &str = "unguarded.kubernaut.ai";

fn resource_in(group: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: "v1alpha1".into(),
        api_version: format!("{group}/v1alpha1"),
        kind: "WorkflowExecution".into(),
        plural: "workflowexecutions".into(),
    }
}

pub fn wfe_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    wfe_api_in(client, ns, "kubernaut.ai")
}

/// WorkflowExecutions of the CRD copy in `group`.
pub fn wfe_api_in(client: &Client, ns: &str, group: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &resource_in(group))
}

pub async fn create_namespace(admin: &Client, name: &str) -> Result<()> {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    match Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &ns)
        .await
    {
        Ok(_) => Ok(()),
        Err(KubeError::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create namespace {name}")),
    }
}

/// Installs tests/e2e/manifests/crd.yaml and its loose copy (`LOOSE_GROUP`), and waits until
/// both are Established.
pub async fn install_crd(admin: &Client) -> Result<()> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/manifests/crd.yaml");
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    let value: Value = serde_saphyr::from_str(&text).context(path)?;
    let mut loose = value.clone();
    loose["metadata"]["name"] = json!(format!("workflowexecutions.{LOOSE_GROUP}"));
    loose["spec"]["group"] = json!(LOOSE_GROUP);
    for version in loose["spec"]["versions"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        let status = &mut version["schema"]["openAPIV3Schema"]["properties"]["status"];
        if let Some(conditions) = status["properties"]["conditions"].as_object_mut() {
            conditions.remove("x-kubernetes-list-type");
            conditions.remove("x-kubernetes-list-map-keys");
        }
    }
    let mut unguarded = value.clone();
    unguarded["metadata"]["name"] = json!(format!("workflowexecutions.{UNGUARDED_GROUP}"));
    unguarded["spec"]["group"] = json!(UNGUARDED_GROUP);
    for crd in [value, loose, unguarded] {
        let crd: CustomResourceDefinition = serde_json::from_value(crd)?;
        let name = crd.metadata.name.clone().context("the CRD has no name")?;
        Api::<CustomResourceDefinition>::all(admin.clone())
            .create(&PostParams::default(), &crd)
            .await
            .with_context(|| format!("cannot create the CRD {name}"))?;
        wfe_bench::control_plane::wait_established(admin, &name, Duration::from_secs(30)).await?;
    }
    Ok(())
}

/// A WorkflowExecution as the orchestrator creates it (no status), as the admin. Retries the
/// moment after the CRD is established when the new resource can still answer 404.
pub async fn create_wfe(admin: &Client, ns: &str, name: &str) -> Result<DynamicObject> {
    create_wfe_in(admin, ns, name, "kubernaut.ai").await
}

pub async fn create_wfe_in(
    admin: &Client,
    ns: &str,
    name: &str,
    group: &str,
) -> Result<DynamicObject> {
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("{group}/v1alpha1"),
        "kind": "WorkflowExecution",
        "metadata": {"name": name, "namespace": ns, "labels": {"app.kubernetes.io/part-of": "wfe-admission-e2e"}},
        "spec": {
            "remediationRequestRef": {"apiVersion": "kubernaut.ai/v1alpha1", "kind": "RemediationRequest", "name": format!("rr-{name}"), "namespace": ns},
            "workflowRef": {
                "workflowId": "restart-deployment-v1", "workflowName": "restart-deployment",
                "actionType": "RestartDeployment", "version": "1.0.0",
                "executionBundle": "quay.io/kubernaut/workflows/restart-deployment:1.0.0",
                "executionEngine": "job"
            },
            "targetResource": format!("{ns}/Deployment/web")
        }
    }))?;
    let api = wfe_api_in(admin, ns, group);
    eventually(
        &format!("creating WorkflowExecution {ns}/{name} in {group}"),
        Duration::from_secs(20),
        || {
            let api = api.clone();
            let object = object.clone();
            async move {
                match api.create(&PostParams::default(), &object).await {
                    Ok(o) => Ok(Some(o)),
                    Err(KubeError::Api(e)) if e.code == 404 => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
        },
    )
    .await
}

pub fn status_of(object: &DynamicObject) -> Status {
    object
        .data
        .get("status")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

pub fn rv(object: &DynamicObject) -> String {
    object.metadata.resource_version.clone().unwrap_or_default()
}

/// Read-modify-write of the status with the read resourceVersion (a full PUT), retried on 409.
/// Returns the stored object and how many conflicts it met.
pub async fn put_status(
    api: &Api<DynamicObject>,
    name: &str,
    mut change: impl FnMut(&mut Status) + Send,
) -> Result<(DynamicObject, u32), KubeError> {
    put_status_with(api, name, &PostParams::default(), &mut change).await
}

pub async fn put_status_with(
    api: &Api<DynamicObject>,
    name: &str,
    params: &PostParams,
    change: &mut (dyn FnMut(&mut Status) + Send),
) -> Result<(DynamicObject, u32), KubeError> {
    let mut conflicts = 0;
    loop {
        let mut object = api.get_status(name).await?;
        let mut status = status_of(&object);
        change(&mut status);
        object.data["status"] = Value::Object(status);
        match api.replace_status(name, params, &object).await {
            Err(KubeError::Api(e)) if e.code == 409 && conflicts < 200 => {
                conflicts += 1;
                tokio::time::sleep(Duration::from_millis(5 + u64::from(conflicts % 7) * 3)).await;
            }
            Ok(stored) => return Ok((stored, conflicts)),
            Err(e) => return Err(e),
        }
    }
}

/// A JSON merge patch of the status subresource (no resourceVersion: last writer wins).
pub async fn merge_status(
    api: &Api<DynamicObject>,
    name: &str,
    status: Value,
) -> Result<DynamicObject, KubeError> {
    merge_status_with(api, name, status, &PatchParams::default()).await
}

/// [`merge_status`] as a dry run: the API server's answer, nothing stored.
pub async fn dry_merge_status(
    api: &Api<DynamicObject>,
    name: &str,
    status: Value,
) -> Result<DynamicObject, KubeError> {
    merge_status_with(api, name, status, &PatchParams::default().dry_run()).await
}

async fn merge_status_with(
    api: &Api<DynamicObject>,
    name: &str,
    status: Value,
    params: &PatchParams,
) -> Result<DynamicObject, KubeError> {
    api.patch_status(name, params, &Patch::Merge(json!({ "status": status })))
        .await
}

/// The API server's answer to a refused write: (HTTP code, message).
pub fn api_error(result: Result<impl Sized, KubeError>, what: &str) -> Result<(u16, String)> {
    match result {
        Ok(_) => bail!("{what} was accepted; it should have been refused"),
        Err(KubeError::Api(e)) => Ok((e.code, e.message.clone())),
        Err(e) => bail!("{what} failed without an API answer: {e}"),
    }
}

/// events.k8s.io/v1 Events with this reason regarding this object, by field selector.
pub async fn events(admin: &Client, ns: &str, reason: &str, name: &str) -> Result<Vec<Event>> {
    let selector = format!("reason={reason},regarding.name={name}");
    let list = Api::<Event>::namespaced(admin.clone(), ns)
        .list(&ListParams::default().fields(&selector))
        .await
        .with_context(|| format!("listing Events with --field-selector {selector}"))?;
    Ok(list.items)
}

/// Waits up to `limit` for at least one Event with this reason regarding `name`; returns them.
pub async fn wait_events(
    admin: &Client,
    ns: &str,
    reason: &str,
    name: &str,
    limit: Duration,
) -> Result<Vec<Event>> {
    eventually(&format!("a {reason} Event about {name}"), limit, || async {
        let list = events(admin, ns, reason, name).await?;
        Ok((!list.is_empty()).then_some(list))
    })
    .await
}

/// Polls `probe` every 200 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    let mut last_error = None;
    loop {
        match probe().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if tokio::time::Instant::now() >= deadline {
            match last_error {
                Some(e) => bail!("timed out after {limit:?} waiting for {what}; last error: {e:#}"),
                None => bail!("timed out after {limit:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A status field as text, for assertions.
pub fn text<'a>(status: &'a Status, field: &str) -> Option<&'a str> {
    status.get(field).and_then(Value::as_str)
}
