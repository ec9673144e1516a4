//! The servers the throughput rows load, in this process on their own runtime: the real
//! admission router (`server::start`) and the ceiling, the same TLS stack answering a
//! precomputed AdmissionReview without parsing the request.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use http_body_util::BodyExt;
use serde::de::IgnoredAny;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use wfe_admission::certgen::{self, Bundle, Validity};
use wfe_admission::config::Config;
use wfe_admission::policy::Policy;
use wfe_admission::server::admission::{parse_review, parse_review_as};
use wfe_admission::server::status_object::StatusObject;

/// What a ceiling server does with the body after reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse {
    /// Nothing: the ceiling.
    None,
    /// Check that the body is JSON, building nothing (serde_json's `IgnoredAny`): the least any
    /// handler that reads the review with serde_json must do.
    Scan,
    /// Parse it as /mutate does (whole statuses, the rest of the objects skipped).
    Lean,
    /// Parse the objects into `DynamicObject`s, as the handler did before (docs/benchmarks.md).
    Dynamic,
}
use wfe_admission::metrics::Metrics;
use wfe_admission::server::tls::{self, CertSource, CertStore};
use wfe_admission::server::{self, Running, ServeOptions};

/// Answers every POST with `answer` after draining (not parsing) the body, so that the
/// connection stays reusable: what any handler on this stack must at least do.
///
/// With a [`Parse`] other than `None`, the body is also parsed (references for what parsing
/// alone costs on this stack).
pub fn ceiling_router(answer: Bytes, parse: Parse) -> Router {
    let handler = move |body: Body| {
        let answer = answer.clone();
        async move {
            if let Ok(collected) = body.collect().await {
                let bytes = collected.to_bytes();
                let ok = match parse {
                    Parse::None => true,
                    Parse::Scan => serde_json::from_slice::<IgnoredAny>(&bytes).is_ok(),
                    Parse::Lean => parse_review_as::<StatusObject>(&bytes).is_ok(),
                    Parse::Dynamic => parse_review(&bytes).is_ok(),
                };
                std::hint::black_box(ok);
            }
            ([(header::CONTENT_TYPE, "application/json")], answer)
        }
    };
    Router::new()
        .route("/validate", post(handler.clone()))
        .route("/mutate", post(handler))
}

/// `POST /echo`: allows every review, reading nothing but the request's uid, which the API
/// server checks in the answer. The least any webhook must do: the floor of the
/// kube-apiserver rows. The API server writes `request.uid` first in `request`, before the
/// objects, so the first `"uid":"` of the body is it.
pub fn echo_router() -> Router {
    Router::new().route(
        "/echo",
        post(|body: Body| async move {
            let bytes = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let Some(uid) = first_uid(&bytes) else {
                return (axum::http::StatusCode::BAD_REQUEST, "no uid\n").into_response();
            };
            let answer = serde_json::json!({"apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview", "response": {"uid": uid, "allowed": true}});
            axum::Json(answer).into_response()
        }),
    )
}

fn first_uid(body: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b"\"uid\":\"";
    let start = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = body[start..].iter().position(|b| *b == b'"')?;
    std::str::from_utf8(&body[start..start + len]).ok()
}

/// A CA and a serving pair for 127.0.0.1 / localhost.
pub fn bundle() -> anyhow::Result<Bundle> {
    certgen::generate(&certgen::default_hosts(), Validity::days(1)).context("certificates")
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

pub fn options(bundle: &Bundle) -> ServeOptions {
    let mut options = ServeOptions::new(
        loopback(),
        loopback(),
        CertSource::Memory {
            cert: bundle.cert.clone(),
            key: bundle.key.clone(),
        },
    );
    options.shutdown_grace = std::time::Duration::from_secs(1);
    options
}

/// The real webhook (default policy, no Events), as `serve` runs it.
pub async fn start_admission(bundle: &Bundle) -> anyhow::Result<Running> {
    start_admission_with(bundle, Config::default()).await
}

/// [`start_admission`] with another policy.
pub async fn start_admission_with(bundle: &Bundle, config: Config) -> anyhow::Result<Running> {
    let policy = Policy::new(config).context("policy")?;
    let running = server::start(
        options(bundle),
        Arc::new(ArcSwap::from_pointee(policy)),
        Metrics::new(),
        None,
    )
    .await?;
    Ok(running)
}

/// The ceiling server: production rustls config and connection settings, canned answer.
pub struct Ceiling {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Ceiling {
    pub async fn start(bundle: &Bundle, answer: Bytes, parse: Parse) -> anyhow::Result<Self> {
        Self::serve(bundle, ceiling_router(answer, parse)).await
    }

    /// The production TLS stack serving `router`.
    pub async fn serve(bundle: &Bundle, router: Router) -> anyhow::Result<Self> {
        let options = options(bundle);
        let store = CertStore::new(options.cert.clone(), Metrics::new())?;
        let config = tls::server_config(store, None, tls::MinVersion::default())?;
        let listener = TcpListener::bind(options.listen).await?;
        let addr = listener.local_addr()?;
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(server::serve_tls(
            listener,
            TlsAcceptor::from(config),
            router,
            options,
            stop_rx,
        ));
        Ok(Self { addr, stop, task })
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_echo_takes_the_first_uid_which_is_the_requests() {
        let body = br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"r-1","object":{"metadata":{"uid":"o-2"}}}}"#;
        assert_eq!(first_uid(body), Some("r-1"));
        assert_eq!(first_uid(br#"{"request":{"name":"x"}}"#), None);
        assert_eq!(first_uid(br#"{"request":{"uid":"unterminated"#), None);
    }
}
