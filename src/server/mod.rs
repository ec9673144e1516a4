//! The HTTPS shell: rustls with certificate reload, the admission router, probes and metrics on
//! a separate plain port, graceful shutdown.

pub mod admission;
pub mod client_ca;
pub mod files;
pub mod probes;
pub mod status_object;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::metrics::Metrics;
use crate::policy::Policy;
pub use admission::VerdictSink;
use tls::{CertSource, CertStore, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// How to serve; tests build it directly.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub probe_listen: SocketAddr,
    pub cert: CertSource,
    pub client_ca: Option<PathBuf>,
    /// The oldest TLS version accepted.
    pub tls_min_version: tls::MinVersion,
    pub max_body_bytes: usize,
    /// A client must send its request headers (and finish the TLS handshake) within this.
    pub header_read_timeout: Duration,
    /// A client must send the whole request body within this once its headers are read (408).
    pub body_read_timeout: Duration,
    /// After shutdown starts, keep serving this long with `/readyz` failing and HTTP/1.1 answers
    /// carrying `Connection: close`, so that clients move off before the listener closes.
    pub shutdown_delay: Duration,
    /// In-flight requests get this long to finish after the delay.
    pub shutdown_grace: Duration,
    pub cert_reload_interval: Duration,
}

impl ServeOptions {
    pub fn new(listen: SocketAddr, probe_listen: SocketAddr, cert: CertSource) -> Self {
        Self {
            listen,
            probe_listen,
            cert,
            client_ca: None,
            tls_min_version: tls::MinVersion::Tls12,
            max_body_bytes: 6 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            shutdown_delay: Duration::ZERO,
            shutdown_grace: Duration::from_secs(20),
            cert_reload_interval: Duration::from_secs(60),
        }
    }
}

/// A started server: its bound addresses and the handle to stop it.
pub struct Running {
    pub addr: SocketAddr,
    pub probe_addr: SocketAddr,
    pub ready: Arc<AtomicBool>,
    pub certs: Arc<CertStore>,
    pub metrics: Metrics,
    stop: watch::Sender<bool>,
    tls_task: JoinHandle<()>,
    /// Probes and metrics outlive the TLS listener: kubelet reads `/readyz` during the delay.
    probe_stop: watch::Sender<bool>,
    probe_task: JoinHandle<()>,
}

impl Running {
    /// Fails `/readyz`, keeps serving for the shutdown delay (closing HTTP/1.1 connections after
    /// their next answer), then stops accepting, lets in-flight requests finish (bounded by the
    /// grace period) and waits.
    pub async fn shutdown(self) {
        self.ready.store(false, Ordering::Release);
        let _ = self.stop.send(true);
        let _ = self.tls_task.await;
        let _ = self.probe_stop.send(true);
        let _ = self.probe_task.await;
    }
}

/// Binds both listeners and starts serving.
pub async fn start(
    options: ServeOptions,
    policy: Arc<ArcSwap<Policy>>,
    metrics: Metrics,
    sink: Option<Arc<dyn VerdictSink>>,
) -> Result<Running, ServerError> {
    let certs = CertStore::new(options.cert.clone(), metrics.clone())?;
    let client_ca = match options.client_ca.as_deref() {
        Some(path) => Some(client_ca::ClientCa::load(path, metrics.clone())?),
        None => None,
    };
    metrics.client_auth_required(client_ca.is_some());
    if let Some(ca) = &client_ca {
        ca.spawn_reloader(options.cert_reload_interval);
    }
    let verifier = client_ca.map(|ca| ca as Arc<dyn rustls::server::danger::ClientCertVerifier>);
    let tls = tls::server_config(Arc::clone(&certs), verifier, options.tls_min_version)?;
    certs.spawn_reloader(options.cert_reload_interval);
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })
    };
    let listener = bind(options.listen).await?;
    let probe_listener = bind(options.probe_listen).await?;
    let addr = local(&listener, options.listen);
    let probe_addr = local(&probe_listener, options.probe_listen);

    let ready = Arc::new(AtomicBool::new(false));
    let (stop, stop_rx) = watch::channel(false);
    let app = admission::router(admission::AppState {
        policy,
        metrics: metrics.clone(),
        sink,
        max_body_bytes: options.max_body_bytes,
        body_read_timeout: options.body_read_timeout,
    });
    let probes = probes::router(Arc::clone(&ready), metrics.clone());
    let (probe_stop, mut probe_stop_rx) = watch::channel(false);
    let probe_task = tokio::spawn(async move {
        let serve = axum::serve(probe_listener, probes).with_graceful_shutdown(async move {
            let _ = probe_stop_rx.wait_for(|s| *s).await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "probe server failed");
        }
    });
    let tls_task = tokio::spawn(serve_tls(
        listener,
        TlsAcceptor::from(tls),
        app,
        options.clone(),
        stop_rx,
    ));
    ready.store(true, Ordering::Release);
    tracing::info!(%addr, %probe_addr, "serving admission reviews");
    Ok(Running {
        addr,
        probe_addr,
        ready,
        certs,
        metrics,
        stop,
        tls_task,
        probe_stop,
        probe_task,
    })
}

fn local(listener: &TcpListener, fallback: SocketAddr) -> SocketAddr {
    listener.local_addr().unwrap_or(fallback)
}

/// Serves `app` over TLS on `listener` with the production connection settings (plain-HTTP
/// answer, handshake/header deadline, hyper auto HTTP/1.1 + h2) until `stop` turns true, then
/// drains. Public so that the benchmark's ceiling runs on exactly this stack.
pub async fn serve_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    options: ServeOptions,
    mut stop: watch::Receiver<bool>,
) {
    let draining = Arc::new(AtomicBool::new(false));
    let app = close_while_draining(app, Arc::clone(&draining));
    let graceful = GracefulShutdown::new();
    // Accepting goes on until `stop`, then through the shutdown delay: endpoints lag behind
    // readiness, so clients may still pick this replica for a while.
    let accept_until = async {
        let _ = stop.changed().await;
        if !options.shutdown_delay.is_zero() {
            draining.store(true, Ordering::Release);
            tracing::info!(delay = ?options.shutdown_delay, "shutting down: not ready; serving until the delay ends, closing HTTP/1.1 connections after their next answer");
            tokio::time::sleep(options.shutdown_delay).await;
        }
    };
    tokio::pin!(accept_until);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    let conn = connection(
                        tcp,
                        acceptor.clone(),
                        app.clone(),
                        options.header_read_timeout,
                        graceful.watcher(),
                    );
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = &mut accept_until => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(options.shutdown_grace) => {
            tracing::warn!(grace = ?options.shutdown_grace, "grace period over; closing remaining connections");
        }
    }
}

/// While draining, an HTTP/1.1 answer says `Connection: close`: hyper closes the connection
/// after writing it, so the client knows before sending again, whereas closing an idle
/// keep-alive connection races with a request the client may be writing. h2 needs nothing:
/// its GOAWAY at the end tells the client which streams were not processed.
fn close_while_draining(app: Router, draining: Arc<AtomicBool>) -> Router {
    app.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let draining = Arc::clone(&draining);
            async move {
                let http1 = request.version() < axum::http::Version::HTTP_2;
                let mut response = next.run(request).await;
                if http1 && draining.load(Ordering::Acquire) {
                    response.headers_mut().insert(
                        axum::http::header::CONNECTION,
                        axum::http::HeaderValue::from_static("close"),
                    );
                }
                response
            }
        },
    ))
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Go's net/http answers plain HTTP on a TLS port the same way: say so, then close.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// A TLS handshake record starts with 0x16; an ASCII letter is an HTTP method.
async fn is_plain_http(tcp: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(tcp.peek(&mut first).await, Ok(1) if first[0].is_ascii_uppercase())
}

async fn connection(
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    app: Router,
    header_timeout: Duration,
    watcher: Watcher,
) -> Result<(), BoxError> {
    let handshake = async {
        if is_plain_http(&tcp).await {
            let mut tcp = tcp;
            let _ = tcp.write_all(PLAIN_HTTP_ANSWER).await;
            let _ = tcp.shutdown().await;
            return Ok(None);
        }
        acceptor.accept(tcp).await.map(Some)
    };
    // The handshake shares the header deadline, so a client that trickles bytes is cut off.
    let tls = match tokio::time::timeout(header_timeout, handshake).await {
        Err(_) => return Err("TLS handshake timed out".into()),
        Ok(Err(e)) => return Err(e.into()),
        Ok(Ok(Some(tls))) => tls,
        Ok(Ok(None)) => return Ok(()),
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)));
    let service = TowerToHyperService::new(app);
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    watcher.watch(conn.into_owned()).await
}
