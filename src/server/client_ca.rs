//! Client-certificate authentication of callers (`--client-ca`): only a caller with a
//! certificate signed by that CA, which kube-apiserver presents when its admission
//! configuration names one, completes the handshake. The CA file is re-read when it changes,
//! like the serving pair, so rotating it needs no restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

use super::tls::{TlsError, invalid, provider, root_store};
use crate::metrics::Metrics;

/// The verifier for the CA file's current contents.
#[derive(Debug)]
pub struct ClientCa {
    path: PathBuf,
    current: ArcSwap<Arc<dyn ClientCertVerifier>>,
    metrics: Metrics,
}

fn verifier(path: &Path) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let origin = || format!("client CA {}", path.display());
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let roots = root_store(&pem).map_err(|e| invalid(origin(), e))?;
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| invalid(origin(), e))
}

impl ClientCa {
    /// Loads the CA once; a failure here is a startup error.
    pub fn load(path: &Path, metrics: Metrics) -> Result<Arc<Self>, TlsError> {
        let current = ArcSwap::from_pointee(verifier(path)?);
        Ok(Arc::new(Self {
            path: path.to_path_buf(),
            current,
            metrics,
        }))
    }

    /// Re-reads the file; keeps the current CA when the new contents are unusable.
    pub fn reload(&self) {
        match verifier(&self.path) {
            Ok(v) => self.current.store(Arc::new(v)),
            Err(e) => {
                self.metrics.cert_reload_failed();
                tracing::warn!(error = %e, "client CA reload failed; keeping the current one");
            }
        }
    }

    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration) {
        let ca = Arc::clone(self);
        let path = self.path.clone();
        super::files::spawn(&[path.as_path()], interval, move || ca.reload());
    }
}

impl ClientCertVerifier for ClientCa {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    /// No hints: the API server presents the one certificate its kubeconfig names anyway, and
    /// hints could not follow a reload.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.current
            .load()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.current
            .load()
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.current
            .load()
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current.load().supported_verify_schemes()
    }
}
