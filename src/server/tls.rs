//! rustls configuration and the serving certificate, reloaded without restart (see `files`).
//! A pair that fails to load (unreadable, mismatched key, expired) never replaces the one being
//! served.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    #[error("certificate {path} expired at {not_after}")]
    Expired { path: String, not_after: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

pub(super) fn invalid(what: impl Into<String>, message: impl ToString) -> TlsError {
    TlsError::Invalid {
        what: what.into(),
        message: message.to_string(),
    }
}

/// Where the serving pair comes from.
#[derive(Debug, Clone)]
pub enum CertSource {
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    /// PEM text held in memory (dev mode); never reloaded.
    Memory {
        cert: String,
        key: String,
    },
}

/// A loaded pair and the leaf's expiry (Unix seconds).
#[derive(Debug)]
pub struct LoadedPair {
    pub key: Arc<CertifiedKey>,
    pub not_after: i64,
}

/// Parses a PEM chain and key into a checked pair.
pub fn load_pair(cert_pem: &[u8], key_pem: &[u8], origin: &str) -> Result<LoadedPair, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(format!("certificate {origin}"), e))?;
    let leaf = chain
        .first()
        .ok_or_else(|| invalid(format!("certificate {origin}"), "no PEM certificate found"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| invalid(format!("private key for {origin}"), e))?;
    let not_after = not_after(leaf).map_err(|e| invalid(format!("certificate {origin}"), e))?;
    let now = jiff::Timestamp::now().as_second();
    if not_after <= now {
        let when = jiff::Timestamp::from_second(not_after)
            .map(|t| t.to_string())
            .unwrap_or_else(|_| not_after.to_string());
        return Err(TlsError::Expired {
            path: origin.to_string(),
            not_after: when,
        });
    }
    let key = CertifiedKey::from_der(chain, key, &provider())
        .map_err(|e| invalid(format!("certificate and key {origin}"), e))?;
    Ok(LoadedPair {
        key: Arc::new(key),
        not_after,
    })
}

fn not_after(leaf: &CertificateDer<'_>) -> Result<i64, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).map_err(|e| e.to_string())?;
    Ok(cert.validity().not_after.timestamp())
}

/// The certificates of a PEM bundle as trust roots: what the API server's `caBundle` means to
/// a client, and what `--client-ca` means to this server.
pub fn root_store(pem: &[u8]) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| e.to_string())?;
        roots.add(cert).map_err(|e| e.to_string())?;
    }
    if roots.is_empty() {
        return Err("no PEM certificate found".into());
    }
    Ok(roots)
}

/// The process-wide crypto provider (ring), installed by `main`; tests may run without it.
pub fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Serves the current pair to every handshake.
#[derive(Debug)]
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
    source: CertSource,
    metrics: Metrics,
}

impl CertStore {
    /// Loads the pair once; a failure here is a startup error.
    pub fn new(source: CertSource, metrics: Metrics) -> Result<Arc<Self>, TlsError> {
        let pair = read_source(&source)?;
        metrics.cert_loaded(pair.not_after);
        Ok(Arc::new(Self {
            current: ArcSwap::new(pair.key),
            source,
            metrics,
        }))
    }

    /// Re-reads the source; keeps the served pair when the new one is unusable.
    pub fn reload(&self) -> Result<bool, TlsError> {
        match read_source(&self.source) {
            Ok(pair) => {
                let current = self.current.load();
                let changed = current.cert != pair.key.cert;
                if changed {
                    self.current.store(pair.key);
                    self.metrics.cert_loaded(pair.not_after);
                    tracing::info!(not_after = pair.not_after, "serving certificate reloaded");
                }
                Ok(changed)
            }
            Err(e) => {
                self.metrics.cert_reload_failed();
                tracing::warn!(error = %e, "certificate reload failed; keeping the current pair");
                Err(e)
            }
        }
    }

    /// Watches the certificate directories and re-reads every `interval` as a backup.
    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration) {
        let CertSource::Files { cert, key } = &self.source else {
            return;
        };
        let store = Arc::clone(self);
        super::files::spawn(&[cert.as_path(), key.as_path()], interval, move || {
            let _ = store.reload();
        });
    }

    /// Serves a new pair given as PEM (self-managed certificates); a bad pair is refused.
    pub fn set_pem(&self, cert: &str, key: &str) -> Result<(), TlsError> {
        let pair = load_pair(cert.as_bytes(), key.as_bytes(), "in memory")?;
        if self.current.load().cert != pair.key.cert {
            self.current.store(pair.key);
            self.metrics.cert_loaded(pair.not_after);
            tracing::info!(not_after = pair.not_after, "serving certificate replaced");
        }
        Ok(())
    }
}

fn read_source(source: &CertSource) -> Result<LoadedPair, TlsError> {
    match source {
        CertSource::Memory { cert, key } => load_pair(cert.as_bytes(), key.as_bytes(), "in memory"),
        CertSource::Files { cert, key } => {
            let read = |p: &Path| {
                std::fs::read(p).map_err(|source| TlsError::Read {
                    path: p.display().to_string(),
                    source,
                })
            };
            load_pair(&read(cert)?, &read(key)?, &cert.display().to_string())
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The oldest TLS version the server accepts (`--tls-min-version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum MinVersion {
    #[default]
    #[value(name = "1.2")]
    Tls12,
    #[value(name = "1.3")]
    Tls13,
}

static TLS12_AND_UP: [&rustls::SupportedProtocolVersion; 2] =
    [&rustls::version::TLS13, &rustls::version::TLS12];
static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];

impl MinVersion {
    fn versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        match self {
            MinVersion::Tls12 => &TLS12_AND_UP,
            MinVersion::Tls13 => &TLS13_ONLY,
        }
    }
}

/// TLS 1.3, and 1.2 unless `min` is 1.3; ALPN h2 and http/1.1; optional client-certificate
/// verification.
pub fn server_config(
    store: Arc<CertStore>,
    client_ca: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    min: MinVersion,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder =
        ServerConfig::builder_with_provider(provider()).with_protocol_versions(min.versions())?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => builder.with_client_cert_verifier(ca),
    };
    let mut config = builder.with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
