//! The load generator: hyper over rustls on loopback, keep-alive, a fixed request mix, closed
//! loop (each worker sends its next request when the previous answer is read), bounded time.
//!
//! HTTP/1.1 gives every worker its own connection; h2 multiplexes all workers as streams on one
//! connection, the way the API server's webhook client does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use axum::body::Bytes;
use axum::http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    H1,
    H2,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::H1 => "http/1.1",
            Proto::H2 => "h2",
        }
    }
}

/// Where to send and how to trust it.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    h1: Arc<ClientConfig>,
    h2: Arc<ClientConfig>,
}

impl Target {
    /// `ca_pem` is the CA that signed the server's certificate (for 127.0.0.1).
    pub fn new(addr: SocketAddr, ca_pem: &str) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.context("CA certificate")?)?;
        }
        let provider = wfe_admission::server::tls::provider();
        let config = |alpn: &[u8]| -> anyhow::Result<Arc<ClientConfig>> {
            let mut c = ClientConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            c.alpn_protocols = vec![alpn.to_vec()];
            Ok(Arc::new(c))
        };
        Ok(Self {
            addr,
            h1: config(b"http/1.1")?,
            h2: config(b"h2")?,
        })
    }
}

/// One request of the mix: a path and its body.
#[derive(Debug, Clone)]
pub struct Req {
    pub path: String,
    pub body: Bytes,
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

async fn connect(target: &Target, proto: Proto) -> anyhow::Result<Sender> {
    let tcp = TcpStream::connect(target.addr).await?;
    tcp.set_nodelay(true)?;
    let config = match proto {
        Proto::H1 => Arc::clone(&target.h1),
        Proto::H2 => Arc::clone(&target.h2),
    };
    let name = ServerName::IpAddress(target.addr.ip().into());
    let tls = TlsConnector::from(config).connect(name, tcp).await?;
    let io = TokioIo::new(tls);
    Ok(match proto {
        Proto::H1 => {
            let (sender, conn) = http1::handshake(io).await?;
            tokio::spawn(conn);
            Sender::H1(sender)
        }
        Proto::H2 => {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .initial_stream_window_size(1 << 20)
                .initial_connection_window_size(4 << 20)
                .handshake(io)
                .await?;
            tokio::spawn(conn);
            Sender::H2(sender)
        }
    })
}

async fn send(sender: &mut Sender, host: &str, req: &Req) -> anyhow::Result<usize> {
    let request = Request::post(&req.path)
        .header(header::HOST, host)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, req.body.len())
        .body(Full::new(req.body.clone()))?;
    let response = match sender {
        Sender::H1(s) => {
            s.ready().await?;
            s.send_request(request).await?
        }
        Sender::H2(s) => {
            s.ready().await?;
            s.send_request(request).await?
        }
    };
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        return Err(anyhow!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    }
    Ok(body.len())
}

/// What one load run measured.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    pub requests: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub window: Duration,
    /// Every answered request, warm-up included.
    pub answered: u64,
    /// Sorted latencies of the requests inside the measurement window, in nanoseconds.
    pub latencies: Vec<u64>,
}

impl LoadResult {
    pub fn rps(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 {
            self.requests as f64 / secs
        } else {
            0.0
        }
    }

    /// Adds another run of the same row (one round of an interleaved series).
    pub fn merge(&mut self, other: LoadResult) {
        self.requests += other.requests;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.window += other.window;
        self.answered += other.answered;
        self.latencies.extend(other.latencies);
        self.latencies.sort_unstable();
    }

    /// The `q` quantile (0..=1) in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let idx = ((self.latencies.len() as f64 - 1.0) * q).round() as usize;
        self.latencies[idx.min(self.latencies.len() - 1)] as f64 / 1e6
    }
}

/// How to load the target.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub proto: Proto,
    pub concurrency: usize,
    /// Requests sent before the window opens (connections warm, allocator settled).
    pub warmup: Duration,
    pub window: Duration,
}

/// Runs `spec` against `target` with the request mix `mix` (worker `w` sends requests
/// `w, w + c, w + 2c, ...` of the mix, cycling), and returns the window's figures.
pub async fn run(
    target: &Target,
    spec: &LoadSpec,
    mix: Arc<Vec<Req>>,
) -> anyhow::Result<LoadResult> {
    if mix.is_empty() {
        return Err(anyhow!("empty request mix"));
    }
    let host = format!("127.0.0.1:{}", target.addr.port());
    let shared = match spec.proto {
        Proto::H2 => Some(connect(target, Proto::H2).await?),
        Proto::H1 => None,
    };
    let mut senders = Vec::with_capacity(spec.concurrency);
    for _ in 0..spec.concurrency {
        senders.push(match &shared {
            Some(Sender::H2(s)) => Sender::H2(s.clone()),
            _ => connect(target, Proto::H1).await?,
        });
    }
    let start = Instant::now();
    let open = start + spec.warmup;
    let close = open + spec.window;
    let mut tasks = Vec::with_capacity(spec.concurrency);
    for (worker, mut sender) in senders.into_iter().enumerate() {
        let mix = Arc::clone(&mix);
        let host = host.clone();
        let stride = spec.concurrency;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(4096);
            let (mut errors, mut first_error, mut answered) = (0u64, None, 0u64);
            let mut i = worker;
            loop {
                let sent = Instant::now();
                if sent >= close {
                    break;
                }
                let req = &mix[i % mix.len()];
                i += stride;
                let result = send(&mut sender, &host, req).await;
                let done = Instant::now();
                if result.is_ok() {
                    answered += 1;
                }
                match result {
                    Ok(_) if sent >= open && done <= close => {
                        latencies.push(done.duration_since(sent).as_nanos() as u64)
                    }
                    Ok(_) => {}
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                        // A broken connection will not heal: stop this worker.
                        if errors > 100 {
                            break;
                        }
                    }
                }
            }
            (latencies, errors, first_error, answered)
        }));
    }
    let mut result = LoadResult {
        window: spec.window,
        ..LoadResult::default()
    };
    for task in tasks {
        let (latencies, errors, first_error, answered) = task.await?;
        result.answered += answered;
        result.latencies.extend(latencies);
        result.errors += errors;
        if result.first_error.is_none() {
            result.first_error = first_error;
        }
    }
    result.latencies.sort_unstable();
    result.requests = result.latencies.len() as u64;
    Ok(result)
}

/// Sends one request and returns the answer's body (for checks and the process start probe).
pub async fn once(target: &Target, proto: Proto, req: &Req) -> anyhow::Result<usize> {
    let mut sender = connect(target, proto).await?;
    let host = format!("127.0.0.1:{}", target.addr.port());
    send(&mut sender, &host, req).await
}
