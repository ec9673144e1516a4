//! A stand-in for kubernaut's authwebhook (webhook `workflowexecution.mutate.kubernaut.ai`), so
//! that the suite can run wfe-admission beside it. It behaves as kubernaut's handler does on
//! `workflowexecutions/status`: a write without a clearance, or over a clearance already
//! attributed, is allowed as sent; a new clearance needs a user and a reason of at least ten
//! words, and gets `clearedBy` (the user name) and `clearedAt` (now) as a JSON patch.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use jiff::Timestamp;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use wfe_admission::certgen::{self, Validity};

pub const WEBHOOK_NAME: &str = "workflowexecution.mutate.kubernaut.ai";
pub const PATH: &str = "/mutate-workflowexecution";

pub struct AuthWebhook {
    pub addr: SocketAddr,
    pub ca_pem: String,
    /// Reviews answered so far.
    pub calls: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AuthWebhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AuthWebhook {
    pub async fn start() -> Result<Self> {
        let bundle = certgen::generate(&["127.0.0.1".to_string()], Validity::days(1))?;
        let certs = CertificateDer::pem_slice_iter(bundle.cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .context("stand-in certificate")?;
        let key = PrivateKeyDer::from_pem_slice(bundle.key.as_bytes()).context("stand-in key")?;
        let tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let calls = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&calls);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, calls) = (acceptor.clone(), Arc::clone(&counted));
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let calls = Arc::clone(&calls);
                        async move { answer(req, &calls).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            ca_pem: bundle.ca_cert,
            calls,
            task,
        })
    }

    /// Its MutatingWebhookConfiguration as kubernaut's chart renders it (the WorkflowExecution
    /// webhook first, then one for another resource), named `name`: the API server calls the
    /// configurations in the order of their names.
    pub fn configuration(&self, name: &str) -> Value {
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        let hook = |webhook: &str, path: &str, resource: &str| {
            json!({
                "name": webhook,
                "admissionReviewVersions": ["v1"],
                "clientConfig": {"url": format!("https://{}{path}", self.addr), "caBundle": ca},
                "failurePolicy": "Fail",
                "matchPolicy": "Equivalent",
                "rules": [{"apiGroups": ["kubernaut.ai"], "apiVersions": ["v1alpha1"],
                    "operations": ["UPDATE"], "resources": [resource], "scope": "Namespaced"}],
                "sideEffects": "None",
                "timeoutSeconds": 10
            })
        };
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [
                hook(WEBHOOK_NAME, PATH, "workflowexecutions/status"),
                hook("remediationapprovalrequest.mutate.kubernaut.ai",
                    "/mutate-remediationapprovalrequest", "remediationapprovalrequests/status"),
            ]
        })
    }
}

async fn answer(
    req: Request<Incoming>,
    calls: &AtomicU64,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let body = req.into_body().collect().await?.to_bytes();
    calls.fetch_add(1, Ordering::Relaxed);
    let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let request = &review["request"];
    let response = decide(request);
    let out = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "response": response});
    let mut answer = Response::new(Full::new(Bytes::from(out.to_string())));
    answer
        .headers_mut()
        .insert("content-type", "application/json".parse().expect("header"));
    Ok(answer)
}

fn decide(request: &Value) -> Value {
    let uid = request["uid"].clone();
    let allowed = json!({"uid": uid, "allowed": true});
    let deny = |message: String| {
        json!({"uid": uid, "allowed": false,
            "status": {"code": 403, "reason": "Forbidden", "message": message}})
    };
    let clearance = &request["object"]["status"]["blockClearance"];
    if clearance.is_null() {
        return allowed;
    }
    let old_by = request["oldObject"]["status"]["blockClearance"]["clearedBy"]
        .as_str()
        .unwrap_or("");
    if !old_by.is_empty() {
        return allowed;
    }
    let user = request["userInfo"]["username"].as_str().unwrap_or("");
    if user.is_empty() {
        return deny("authentication required: username is required for authentication".into());
    }
    let reason = clearance["clearReason"].as_str().unwrap_or("");
    if reason.is_empty() {
        return deny("invalid clearance reason: reason is required".into());
    }
    let words = reason.split_whitespace().count();
    if words < 10 {
        return deny(format!(
            "invalid clearance reason: reason must be at least 10 words, got {words} words"
        ));
    }
    let now = Timestamp::from_second(Timestamp::now().as_second())
        .unwrap_or_else(|_| Timestamp::now())
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let patch = json!([
        {"op": "add", "path": "/status/blockClearance/clearedBy", "value": user},
        {"op": "add", "path": "/status/blockClearance/clearedAt", "value": now},
    ]);
    let patch = base64::engine::general_purpose::STANDARD.encode(patch.to_string());
    json!({"uid": uid, "allowed": true, "patchType": "JSONPatch", "patch": patch})
}
