//! Self-managed certificates: the webhook keeps its CA and serving pair in a Secret, serves the
//! pair from memory, injects the CA bundle into its own webhook configurations, and rotates
//! before expiry. Every write goes through the status manager's retried writes, so replicas
//! racing to create or rotate the Secret converge on one pair.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, Error as KubeError};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::certgen::{self, Validity};
use crate::retry::{WriteError, WriteOutcome};
use crate::server::tls::CertStore;
use crate::status::StatusManager;
use crate::webhook_configs::{WebhookParts, edit_configuration};

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
/// The CA bundle clients trust: the current CA, then the previous one while it is still valid,
/// so that replicas still serving a pair of the old CA are trusted during a rotation.
pub const CA_BUNDLE: &str = "ca-bundle.crt";

#[derive(Debug, Clone)]
pub struct SelfManagedOptions {
    pub namespace: String,
    pub secret: String,
    /// Service name: the serving certificate covers `name`, `name.ns`, `name.ns.svc` and
    /// `name.ns.svc.cluster.local`.
    pub service: String,
    /// More names or addresses the serving certificate covers, e.g. the host of a webhook URL.
    pub extra_hosts: Vec<String>,
    /// Mutating and validating webhook configurations whose caBundle the webhook maintains.
    pub webhook_configurations: Vec<String>,
    pub validity: Duration,
    /// Rotate when less than this is left.
    pub renew_before: Duration,
    pub check_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SelfCertError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] KubeError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Generate(#[from] certgen::CertError),
    #[error(transparent)]
    Tls(#[from] crate::server::tls::TlsError),
    #[error("Secret {0} kept changing; giving up for now")]
    Contended(String),
}

/// The PEM material held in the Secret.
#[derive(Debug, Clone, PartialEq)]
pub struct Material {
    pub ca_cert: String,
    pub ca_key: String,
    pub cert: String,
    pub key: String,
    pub ca_bundle: String,
}

impl SelfManagedOptions {
    fn hosts(&self) -> Vec<String> {
        let (svc, ns) = (&self.service, &self.namespace);
        let mut hosts = vec![
            svc.clone(),
            format!("{svc}.{ns}"),
            format!("{svc}.{ns}.svc"),
            format!("{svc}.{ns}.svc.cluster.local"),
        ];
        hosts.extend(self.extra_hosts.iter().cloned());
        hosts
    }

    fn validity(&self) -> Validity {
        let days = (self.validity.as_secs() / 86_400).max(1);
        Validity::days(i64::try_from(days).unwrap_or(365))
    }
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

fn read_material(secret: &Secret) -> Option<Material> {
    Some(Material {
        ca_cert: text(secret, CA_CERT)?,
        ca_key: text(secret, CA_KEY)?,
        cert: text(secret, TLS_CERT)?,
        key: text(secret, TLS_KEY)?,
        ca_bundle: text(secret, CA_BUNDLE).or_else(|| text(secret, CA_CERT))?,
    })
}

/// Expiry (Unix seconds) of the first certificate in a PEM text.
fn not_after(pem: &str) -> Option<i64> {
    let der = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()?
        .ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// Whether the first certificate in a PEM text names every host (DNS name or IP address).
fn covers(pem: &str, hosts: &[String]) -> bool {
    let Some(Ok(der)) = CertificateDer::pem_slice_iter(pem.as_bytes()).next() else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        return false;
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    let named: Vec<String> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
            x509_parser::extensions::GeneralName::IPAddress(ip) => match ip.len() {
                4 => <[u8; 4]>::try_from(*ip)
                    .ok()
                    .map(|b| std::net::IpAddr::from(b).to_string()),
                16 => <[u8; 16]>::try_from(*ip)
                    .ok()
                    .map(|b| std::net::IpAddr::from(b).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    hosts.iter().all(|h| {
        let h = h
            .parse::<std::net::IpAddr>()
            .map_or_else(|_| h.clone(), |ip| ip.to_string());
        named.contains(&h)
    })
}

fn due(pem: &str, renew_before: Duration, now: i64) -> bool {
    let margin = i64::try_from(renew_before.as_secs()).unwrap_or(i64::MAX);
    not_after(pem).is_none_or(|t| t.saturating_sub(margin) <= now)
}

/// What the Secret should hold next: `None` when the current material is fine.
pub fn next_material(
    current: Option<&Material>,
    options: &SelfManagedOptions,
    now: i64,
) -> Result<Option<Material>, SelfCertError> {
    let renew = options.renew_before;
    if let Some(m) = current {
        let pair_ok =
            crate::server::tls::load_pair(m.cert.as_bytes(), m.key.as_bytes(), "Secret").is_ok();
        // A pair that does not name a host asked for now (a webhook URL added) is reissued.
        let pair_ok = pair_ok && covers(&m.cert, &options.hosts());
        if pair_ok && !due(&m.cert, renew, now) && !due(&m.ca_cert, renew, now) {
            return Ok(None);
        }
        // The CA outlives serving pairs: keep it while it has time left, so the bundle in the
        // webhook configurations does not have to change.
        if !due(&m.ca_cert, renew, now) {
            let (cert, key) = certgen::sign_with(
                &m.ca_cert,
                &m.ca_key,
                &options.hosts(),
                options.validity(),
                false,
            )?;
            return Ok(Some(Material {
                cert,
                key,
                ..m.clone()
            }));
        }
    }
    // A new CA lives twice as long as the pairs it signs.
    let ca_validity = Validity::days(options.validity().valid_for.whole_days().max(1) * 2);
    let fresh = certgen::generate(&options.hosts(), ca_validity)?;
    let (cert, key) = certgen::sign_with(
        &fresh.ca_cert,
        &fresh.ca_key,
        &options.hosts(),
        options.validity(),
        false,
    )?;
    let previous = current
        .map(|m| m.ca_cert.clone())
        .filter(|old| not_after(old).is_some_and(|t| t > now))
        .unwrap_or_default();
    Ok(Some(Material {
        ca_bundle: format!("{}{previous}", fresh.ca_cert),
        ca_cert: fresh.ca_cert,
        ca_key: fresh.ca_key,
        cert,
        key,
    }))
}

fn secret_data(m: &Material) -> BTreeMap<String, ByteString> {
    [
        (CA_CERT, &m.ca_cert),
        (CA_KEY, &m.ca_key),
        (TLS_CERT, &m.cert),
        (TLS_KEY, &m.key),
        (CA_BUNDLE, &m.ca_bundle),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
    .collect()
}

/// Makes sure the Secret holds a usable pair and returns it.
pub async fn ensure_secret(
    client: &Client,
    options: &SelfManagedOptions,
    manager: &StatusManager,
) -> Result<Material, SelfCertError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &options.namespace);
    for _ in 0..5 {
        let now = jiff::Timestamp::now().as_second();
        let Some(existing) = api.get_opt(&options.secret).await? else {
            let Some(material) = next_material(None, options, now)? else {
                continue;
            };
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(options.secret.clone()),
                    namespace: Some(options.namespace.clone()),
                    labels: Some(BTreeMap::from([(
                        "app.kubernetes.io/managed-by".to_string(),
                        "wfe-admission".to_string(),
                    )])),
                    ..ObjectMeta::default()
                },
                type_: Some("kubernetes.io/tls".into()),
                data: Some(secret_data(&material)),
                ..Secret::default()
            };
            match api.create(&PostParams::default(), &secret).await {
                Ok(_) => {
                    tracing::info!(secret = %options.secret, "created the webhook's CA and serving certificate");
                    return Ok(material);
                }
                // Another replica was first: use what it wrote.
                Err(KubeError::Api(e)) if e.code == 409 => continue,
                Err(e) => return Err(e.into()),
            }
        };
        let current = read_material(&existing);
        let Some(next) = next_material(current.as_ref(), options, now)? else {
            if let Some(m) = current {
                return Ok(m);
            }
            continue;
        };
        // Rotate through the retried write: re-read, re-decide, write once.
        let outcome = manager
            .writer()
            .update_object(&api, &options.secret, |secret| {
                let latest = read_material(secret);
                if latest != current {
                    // Someone else rotated meanwhile; keep theirs.
                    return false;
                }
                secret.data = Some(secret_data(&next));
                true
            })
            .await?;
        if let WriteOutcome::Written { .. } = outcome {
            tracing::info!(secret = %options.secret, "rotated the webhook's serving certificate");
            return Ok(next);
        }
    }
    Err(SelfCertError::Contended(options.secret.clone()))
}

/// Puts `bundle` into the caBundle of every webhook of the named configurations.
pub async fn inject_ca(
    client: &Client,
    options: &SelfManagedOptions,
    manager: &StatusManager,
    bundle: &str,
) -> Result<(), SelfCertError> {
    let encoded = ByteString(bundle.as_bytes().to_vec());
    let set =
        |parts: Vec<WebhookParts<'_>>| set_bundle(parts.into_iter().map(|p| p.ca_bundle), &encoded);
    for name in &options.webhook_configurations {
        // The same name may be a mutating and a validating configuration.
        let mutating =
            edit_configuration::<MutatingWebhookConfiguration>(client, manager.writer(), name, set);
        let validating = edit_configuration::<ValidatingWebhookConfiguration>(
            client,
            manager.writer(),
            name,
            set,
        );
        let found = mutating.await?.is_some() | validating.await?.is_some();
        if !found {
            tracing::warn!(
                name,
                "no webhook configuration of that name to inject the CA into"
            );
        }
    }
    Ok(())
}

fn set_bundle<'a>(
    bundles: impl Iterator<Item = &'a mut Option<ByteString>>,
    encoded: &ByteString,
) -> bool {
    let mut changed = false;
    for b in bundles {
        if b.as_ref() != Some(encoded) {
            *b = Some(encoded.clone());
            changed = true;
        }
    }
    changed
}

/// Keeps the served pair, the Secret and the CA bundle fresh.
pub fn spawn_rotation(
    client: Client,
    options: SelfManagedOptions,
    store: Arc<CertStore>,
    manager: StatusManager,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(options.check_interval);
        tick.tick().await;
        loop {
            tick.tick().await;
            match ensure_secret(&client, &options, &manager).await {
                Ok(m) => {
                    if let Err(e) = store.set_pem(&m.cert, &m.key) {
                        tracing::error!(error = %e, "the Secret's pair is unusable");
                    }
                    if let Err(e) = inject_ca(&client, &options, &manager, &m.ca_bundle).await {
                        tracing::warn!(error = %e, "cannot inject the CA bundle");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "certificate check failed; retrying later"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> SelfManagedOptions {
        SelfManagedOptions {
            namespace: "wfe-system".into(),
            secret: "wfe-admission-tls".into(),
            service: "wfe-admission".into(),
            extra_hosts: Vec::new(),
            webhook_configurations: vec!["wfe-admission".into()],
            validity: Duration::from_secs(30 * 86_400),
            renew_before: Duration::from_secs(7 * 86_400),
            check_interval: Duration::from_secs(3600),
        }
    }

    fn now() -> i64 {
        jiff::Timestamp::now().as_second()
    }

    #[test]
    fn a_fresh_secret_gets_a_ca_and_a_pair_for_the_service_names() {
        let _ = crate::install_crypto_provider();
        let m = next_material(None, &options(), now())
            .expect("generate")
            .expect("material");
        assert_eq!(m.ca_bundle, m.ca_cert);
        let der = CertificateDer::pem_slice_iter(m.cert.as_bytes())
            .next()
            .expect("one cert")
            .expect("pem");
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("x509");
        let sans = format!("{:?}", cert.subject_alternative_name());
        assert!(sans.contains("wfe-admission.wfe-system.svc"), "{sans}");
        // A good pair is left alone.
        assert!(
            next_material(Some(&m), &options(), now())
                .expect("ok")
                .is_none()
        );
    }

    #[test]
    fn a_pair_close_to_expiry_is_reissued_by_the_same_ca() {
        let _ = crate::install_crypto_provider();
        let m = next_material(None, &options(), now())
            .expect("ok")
            .expect("material");
        let later = now() + 25 * 86_400; // within a week of the pair's end
        let next = next_material(Some(&m), &options(), later)
            .expect("ok")
            .expect("rotated");
        assert_ne!(next.cert, m.cert);
        assert_eq!(next.ca_cert, m.ca_cert);
        assert_eq!(next.ca_bundle, m.ca_bundle);
    }

    #[test]
    fn an_expiring_ca_is_replaced_and_the_old_one_stays_in_the_bundle() {
        let _ = crate::install_crypto_provider();
        let m = next_material(None, &options(), now())
            .expect("ok")
            .expect("material");
        let later = now() + 55 * 86_400; // CA (60 days) within a week of its end
        let next = next_material(Some(&m), &options(), later)
            .expect("ok")
            .expect("rotated");
        assert_ne!(next.ca_cert, m.ca_cert);
        assert!(next.ca_bundle.starts_with(&next.ca_cert));
        assert!(next.ca_bundle.contains(&m.ca_cert));
    }

    #[test]
    fn a_pair_without_a_host_asked_for_now_is_reissued_by_the_same_ca() {
        let _ = crate::install_crypto_provider();
        let m = next_material(None, &options(), now())
            .expect("ok")
            .expect("material");
        assert!(!covers(&m.cert, &["127.0.0.1".into()]));
        let with_ip = SelfManagedOptions {
            extra_hosts: vec!["127.0.0.1".into()],
            ..options()
        };
        let next = next_material(Some(&m), &with_ip, now())
            .expect("ok")
            .expect("reissued");
        assert_eq!(next.ca_cert, m.ca_cert);
        assert!(covers(&next.cert, &with_ip.hosts()));
        // The narrower host list of a replica not yet upgraded keeps the wider pair.
        assert!(
            next_material(Some(&next), &options(), now())
                .expect("ok")
                .is_none()
        );
    }

    #[test]
    fn a_broken_pair_is_replaced() {
        let _ = crate::install_crypto_provider();
        let mut m = next_material(None, &options(), now())
            .expect("ok")
            .expect("material");
        m.key = certgen::generate(&["x".into()], Validity::days(1))
            .expect("gen")
            .key;
        assert!(
            next_material(Some(&m), &options(), now())
                .expect("ok")
                .is_some()
        );
    }

    #[test]
    fn bundles_are_set_only_where_they_differ() {
        let encoded = ByteString(b"pem".to_vec());
        let mut a = Some(ByteString(b"old".to_vec()));
        let mut b = Some(encoded.clone());
        assert!(set_bundle([&mut a, &mut b].into_iter(), &encoded));
        assert!(!set_bundle([&mut a, &mut b].into_iter(), &encoded));
    }
}
