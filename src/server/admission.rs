//! `POST /mutate` and `POST /validate`: bytes -> AdmissionReview -> policy -> AdmissionReview.
//!
//! Every readable review is answered with HTTP 200 and the decision inside, so the API server
//! shows the writer our message instead of applying `failurePolicy`. Only a body that is not an
//! `admission.k8s.io/v1` AdmissionReview with a request and a uid gets a 4xx.

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use jiff::Timestamp;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use serde::Serialize;

use super::status_object::{StatusObject, UnbuiltObject, request_with_only};
use crate::metrics::{Endpoint, Metrics, RequestOutcome};
use crate::policy::Policy;
use crate::policy::reads::ValidateReads;
use crate::policy::review::{self, Decision, Verdict};

/// Receives each verdict after its answer is built (events, rejection conditions). It must not
/// block: implementations hand the verdict to a bounded queue.
pub trait VerdictSink: Send + Sync + 'static {
    fn record(&self, endpoint: Endpoint, verdict: &Verdict);
}

#[derive(Clone)]
pub struct AppState {
    pub policy: Arc<ArcSwap<Policy>>,
    pub metrics: Metrics,
    pub sink: Option<Arc<dyn VerdictSink>>,
    pub max_body_bytes: usize,
    pub body_read_timeout: std::time::Duration,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/validate", post(validate))
        .with_state(state)
}

async fn mutate(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    admit(&state, Endpoint::Mutate, &headers, body).await
}

async fn validate(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    admit(&state, Endpoint::Validate, &headers, body).await
}

fn text_reply(code: StatusCode, message: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message + "\n",
    )
        .into_response()
}

async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    deadline: std::time::Duration,
) -> Result<Bytes, Response> {
    let too_large = || {
        text_reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Refuse before reading a byte when the client says how much it will send.
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    // A client trickling its body holds only its own connection, but not forever.
    let Ok(read) = tokio::time::timeout(deadline, Limited::new(body, limit).collect()).await else {
        let mut response = text_reply(
            StatusCode::REQUEST_TIMEOUT,
            format!("request body not received within {deadline:?}"),
        );
        // The rest of the body may still arrive: this connection cannot carry another request.
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return Err(response);
    };
    match read {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(too_large()),
        Err(e) => Err(text_reply(
            StatusCode::BAD_REQUEST,
            format!("cannot read the request body: {e}"),
        )),
    }
}

/// Parses an AdmissionReview; the error is the message for a 400.
pub fn parse_review(bytes: &[u8]) -> Result<AdmissionRequest<DynamicObject>, String> {
    parse_review_as(bytes)
}

/// Parses an AdmissionReview with objects of type `K`: the handler reads [`StatusObject`]s,
/// which skip what the review never reads (spec, managedFields, ...) while parsing.
pub fn parse_review_as<K>(bytes: &[u8]) -> Result<AdmissionRequest<K>, String>
where
    K: kube::core::Resource + serde::de::DeserializeOwned,
{
    // Checked once for the whole body: serde_json does not check the UTF-8 of what it skips, so
    // without this a broken byte would be refused in a status field one parse builds and
    // accepted where another skips it. JSON is UTF-8 (RFC 8259); the API server sends nothing else.
    let text = std::str::from_utf8(bytes).map_err(|e| {
        format!("the body is not a readable AdmissionReview: it is not UTF-8 ({e})")
    })?;
    let review: AdmissionReview<K> = serde_json::from_str(text)
        .map_err(|e| format!("the body is not a readable AdmissionReview: {e}"))?;
    if review.types.api_version != "admission.k8s.io/v1" || review.types.kind != "AdmissionReview" {
        return Err(format!(
            "expected apiVersion admission.k8s.io/v1 and kind AdmissionReview, got apiVersion {:?} and kind {:?}",
            review.types.api_version, review.types.kind
        ));
    }
    let request: AdmissionRequest<K> = review
        .try_into()
        .map_err(|_| "the AdmissionReview has no request".to_string())?;
    if request.uid.is_empty() {
        return Err("the AdmissionReview request has no uid".into());
    }
    Ok(request)
}

/// Parses a review the way `endpoint` reads it: /mutate builds whole statuses, /validate only
/// the status fields it reads (`policy::reads`); both skip the rest of the objects.
pub fn parse_for(
    endpoint: Endpoint,
    policy: &Policy,
    bytes: &[u8],
) -> Result<AdmissionRequest<StatusObject>, String> {
    match endpoint {
        Endpoint::Mutate => parse_review_as::<StatusObject>(bytes),
        Endpoint::Validate => {
            let request = parse_review_as::<UnbuiltObject>(bytes)?;
            request_with_only(request, &ValidateReads::of(&policy.config).fields())
                .map_err(|e| format!("the body is not a readable AdmissionReview: {e}"))
        }
    }
}

/// The AdmissionReview we answer. kube-core's `AdmissionResponse` serialises the patch as an
/// array of numbers; the API server's Go type is `[]byte`, whose documented JSON form is base64,
/// which is also a third of the size, so the answer is written with this struct instead.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewOut<'a> {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub response: ResponseOut<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseOut<'a> {
    pub uid: &'a str,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub warnings: &'a [String],
}

#[derive(Debug, Serialize)]
pub struct StatusOut {
    pub status: &'static str,
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

/// Turns a verdict into the response the API server reads.
pub fn respond<'a>(uid: &'a str, verdict: &'a Verdict) -> ReviewOut<'a> {
    let mut response = ResponseOut {
        uid,
        allowed: true,
        status: None,
        patch: None,
        patch_type: None,
        warnings: &verdict.warnings,
    };
    match &verdict.decision {
        Decision::Allow => {}
        Decision::Patch(patch) => match serde_json::to_vec(patch) {
            Ok(bytes) => {
                response.patch = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
                response.patch_type = Some("JSONPatch");
            }
            Err(e) => {
                response.allowed = false;
                response.status = Some(StatusOut {
                    status: "Failure",
                    code: 500,
                    reason: "InternalError",
                    message: format!("internal error serialising the patch: {e}"),
                });
            }
        },
        Decision::Deny(denial) => {
            let code = denial.reason.code();
            response.allowed = false;
            response.status = Some(StatusOut {
                status: "Failure",
                code,
                reason: if code == 403 {
                    "Forbidden"
                } else {
                    "BadRequest"
                },
                message: denial.message.clone(),
            });
        }
    }
    ReviewOut {
        api_version: "admission.k8s.io/v1",
        kind: "AdmissionReview",
        response,
    }
}

async fn admit(state: &AppState, endpoint: Endpoint, headers: &HeaderMap, body: Body) -> Response {
    let bytes = match read_body(headers, body, state.max_body_bytes, state.body_read_timeout).await
    {
        Ok(bytes) => bytes,
        Err(response) => {
            state.metrics.request(endpoint, RequestOutcome::Invalid);
            return response;
        }
    };
    let _timer = state.metrics.timer(endpoint);
    let policy = state.policy.load();
    let request = match parse_for(endpoint, &policy, &bytes) {
        Ok(request) => request,
        Err(message) => {
            state.metrics.request(endpoint, RequestOutcome::Invalid);
            tracing::warn!(endpoint = endpoint.as_str(), %message, "unreadable admission review");
            return text_reply(StatusCode::BAD_REQUEST, message);
        }
    };
    let verdict = match endpoint {
        Endpoint::Mutate => review::mutate(&policy, &request, Timestamp::now()),
        Endpoint::Validate => review::validate(&policy, &request),
    };
    let body = match serde_json::to_vec(&respond(&request.uid, &verdict)) {
        Ok(body) => body,
        Err(e) => {
            return text_reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot serialise the AdmissionReview: {e}"),
            );
        }
    };
    state.metrics.verdict(endpoint, &verdict);
    log_verdict(endpoint, &request, &verdict);
    if let Some(sink) = &state.sink
        && !verdict.ignored
    {
        sink.record(endpoint, &verdict);
    }
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn log_verdict(endpoint: Endpoint, request: &AdmissionRequest<StatusObject>, verdict: &Verdict) {
    let s = &verdict.subject;
    match &verdict.decision {
        Decision::Deny(d) => tracing::info!(
            endpoint = endpoint.as_str(),
            uid = %request.uid,
            namespace = s.namespace.as_deref().unwrap_or(""),
            name = %s.name,
            user = %s.user,
            reason = d.reason.as_str(),
            dry_run = verdict.dry_run,
            // Not `message`: the JSON log flattens fields next to the event's own message.
            detail = %d.message,
            "denied"
        ),
        _ if !verdict.corrections.is_empty() => tracing::info!(
            endpoint = endpoint.as_str(),
            uid = %request.uid,
            namespace = s.namespace.as_deref().unwrap_or(""),
            name = %s.name,
            user = %s.user,
            corrections = ?verdict.corrections,
            "status corrected"
        ),
        _ => tracing::debug!(
            endpoint = endpoint.as_str(),
            uid = %request.uid,
            ignored = verdict.ignored,
            "allowed"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use wfe_bench::fixtures::{self, CASES, Size};

    /// Every review the tests and the benchmark know: the lean parses must judge exactly as a
    /// parse into `DynamicObject`s does.
    fn reviews() -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
        for entry in std::fs::read_dir(&dir).expect("tests/data") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "json") {
                out.push((
                    path.display().to_string(),
                    std::fs::read(&path).expect("read"),
                ));
            }
        }
        for size in [Size::Small, Size::Large] {
            for case in CASES {
                let body = serde_json::to_vec(&fixtures::review(case, size)).expect("json");
                out.push((format!("{}/{}", case.as_str(), size.as_str()), body));
            }
        }
        out
    }

    #[test]
    fn lean_parses_judge_like_dynamic_objects() {
        let policy = Policy::new(Config::default()).expect("policy");
        let now: Timestamp = "2026-03-01T12:00:00Z".parse().expect("time");
        for (name, body) in reviews() {
            let full = parse_review(&body);
            let Ok(full) = full else {
                assert!(
                    parse_for(Endpoint::Validate, &policy, &body).is_err(),
                    "{name}"
                );
                assert!(
                    parse_for(Endpoint::Mutate, &policy, &body).is_err(),
                    "{name}"
                );
                continue;
            };
            let validate = parse_for(Endpoint::Validate, &policy, &body).expect("validate parse");
            assert_eq!(
                review::validate(&policy, &validate),
                review::validate(&policy, &full),
                "{name}"
            );
            let mutate = parse_for(Endpoint::Mutate, &policy, &body).expect("mutate parse");
            assert_eq!(
                review::mutate(&policy, &mutate, now),
                review::mutate(&policy, &full, now),
                "{name}"
            );
        }
    }
}
