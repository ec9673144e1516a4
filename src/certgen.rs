//! Certificate material made on the spot: the dev server's pair, `wfe-admission certs`, and test
//! fixtures. A CA signs a serving certificate so that the CA bundle stays stable across
//! serving-certificate rotations.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// PEM text of a CA and a serving pair it signed.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub ca_cert: String,
    pub ca_key: String,
    pub cert: String,
    pub key: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot generate certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// Validity window, relative to now (negative `valid_from` backdates; tests make expired pairs).
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub valid_from: Duration,
    pub valid_for: Duration,
}

impl Validity {
    pub fn days(days: i64) -> Self {
        Self {
            // A little backdating tolerates clock skew between the webhook and the API server.
            valid_from: Duration::minutes(-5),
            valid_for: Duration::days(days),
        }
    }
}

fn ca_params(common_name: &str, validity: Validity) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::new())?;
    let now = OffsetDateTime::now_utc();
    params.not_before = now + validity.valid_from;
    params.not_after = now + validity.valid_from + validity.valid_for;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    Ok(params)
}

/// A CA (its own key) and a serving certificate for `hosts` (DNS names or IP addresses).
pub fn generate(hosts: &[String], validity: Validity) -> Result<Bundle, CertError> {
    let ca_key = KeyPair::generate()?;
    let ca_params = ca_params("wfe-admission CA", validity)?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_cert_pem = ca_cert.pem();
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params, ca_key);
    let (cert, key) = serving(
        &issuer,
        hosts,
        validity,
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    Ok(Bundle {
        ca_cert: ca_cert_pem,
        ca_key: ca_key_pem,
        cert,
        key,
    })
}

/// A leaf signed by an existing CA (PEM): rotation keeps the CA, client certificates for mTLS.
pub fn sign_with(
    ca_cert: &str,
    ca_key: &str,
    hosts: &[String],
    validity: Validity,
    client: bool,
) -> Result<(String, String), CertError> {
    let key = KeyPair::from_pem(ca_key)?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert, key)?;
    let usage = if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    };
    serving(&issuer, hosts, validity, usage)
}

fn serving(
    issuer: &Issuer<'_, KeyPair>,
    hosts: &[String],
    validity: Validity,
    usage: ExtendedKeyUsagePurpose,
) -> Result<(String, String), CertError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(hosts.to_vec())?;
    let now = OffsetDateTime::now_utc();
    params.not_before = now + validity.valid_from;
    params.not_after = now + validity.valid_from + validity.valid_for;
    let cn = hosts.first().map(String::as_str).unwrap_or("wfe-admission");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes `ca.crt`, `ca.key`, `tls.crt`, `tls.key` (the names a Kubernetes TLS Secret uses).
pub fn write(bundle: &Bundle, dir: &Path) -> Result<(), CertError> {
    let err = |path: &Path| {
        let path = path.display().to_string();
        move |source| CertError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(err(dir))?;
    for (name, text) in [
        ("ca.crt", &bundle.ca_cert),
        ("ca.key", &bundle.ca_key),
        ("tls.crt", &bundle.cert),
        ("tls.key", &bundle.key),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(err(&path))?;
    }
    Ok(())
}

/// The default names a dev or in-cluster serving certificate covers.
pub fn default_hosts() -> Vec<String> {
    ["localhost", "127.0.0.1", "::1"]
        .iter()
        .map(|s| (*s).to_string())
        .collect()
}
