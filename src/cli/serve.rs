//! `wfe-admission serve`: the webhook server until SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::certgen::{self, Validity};
use crate::events::{self, EventOptions};
use crate::match_sync;
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::selfcert::{self, SelfManagedOptions};
use crate::server::tls::CertSource;
use crate::server::{self, ServeOptions, VerdictSink};
use crate::status::StatusManager;

/// Parses `10s`, `500ms`, `2m`, `1h30m` (and ISO 8601 `PT10S`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d: jiff::SignedDuration = text
        .parse()
        .map_err(|e| format!("invalid duration {text:?}: {e}"))?;
    Duration::try_from(d).map_err(|_| format!("duration {text:?} must not be negative"))
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// HTTPS address for /mutate and /validate [default: 0.0.0.0:8443, with --dev 127.0.0.1:8443].
    #[arg(long, env = "WFE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Plain-HTTP address for /livez, /readyz and /metrics [default: 0.0.0.0:8080, with --dev 127.0.0.1:8080].
    #[arg(long, env = "WFE_PROBE_LISTEN")]
    pub probe_listen: Option<SocketAddr>,
    /// PEM certificate chain; reloaded when it or its folder changes.
    #[arg(long, env = "WFE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key matching --tls-cert.
    #[arg(long, env = "WFE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle; when set, clients (the API server) must present a certificate it signed.
    #[arg(long, env = "WFE_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// The oldest TLS version accepted: 1.2 (and 1.3), or 1.3 only.
    #[arg(long, env = "WFE_TLS_MIN_VERSION", value_enum, default_value = "1.2")]
    pub tls_min_version: crate::server::tls::MinVersion,
    #[command(flatten)]
    pub cluster: super::kube::PolicyAndCluster,
    /// Without certificate flags: generate a self-signed pair in memory and serve on loopback.
    #[arg(long, env = "WFE_DEV")]
    pub dev: bool,
    /// Where --dev writes the CA bundle that clients must trust.
    #[arg(long, env = "WFE_DEV_CA_OUT", default_value = "certs/dev/ca.crt")]
    pub dev_ca_out: PathBuf,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "WFE_MAX_BODY_BYTES", default_value_t = 6 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Time a client has to finish the TLS handshake and send its request headers.
    #[arg(long, env = "WFE_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// Time a client has to send the whole request body once its headers are read (then 408).
    #[arg(long, env = "WFE_BODY_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub body_read_timeout: Duration,
    /// After SIGTERM, keep serving this long with /readyz failing and HTTP/1.1 connections closed
    /// after their next answer, while the Service's endpoints drop this pod [default: 5s, with
    /// --dev 0s].
    #[arg(long, env = "WFE_SHUTDOWN_DELAY", value_parser = parse_duration)]
    pub shutdown_delay: Option<Duration>,
    /// Time in-flight requests get to finish after the shutdown delay.
    #[arg(long, env = "WFE_SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Where the serving certificate comes from: `files` (--tls-cert/--tls-key, e.g. a mounted
    /// Secret) or `self-managed` (a CA and pair the webhook keeps in --cert-secret, rotating them
    /// and injecting the CA into --webhook-configurations).
    #[arg(long, env = "WFE_CERT_MODE", value_enum, default_value_t = CertMode::Files)]
    pub cert_mode: CertMode,
    /// Secret holding the self-managed CA and pair.
    #[arg(long, env = "WFE_CERT_SECRET", default_value = "wfe-admission-tls")]
    pub cert_secret: String,
    /// Namespace of the webhook (its Secret and Service).
    #[arg(long, env = "POD_NAMESPACE", default_value = "wfe-system")]
    pub namespace: String,
    /// Service in front of the webhook; the self-managed pair covers its DNS names.
    #[arg(long, env = "WFE_SERVICE_NAME", default_value = "wfe-admission")]
    pub service_name: String,
    /// More DNS names or IP addresses a self-managed serving certificate covers (the host of a
    /// webhook URL); repeatable or comma-separated.
    #[arg(long = "cert-host", env = "WFE_CERT_HOSTS", value_delimiter = ',')]
    pub cert_hosts: Vec<String>,
    /// The configurations whose caBundle, match conditions and failure policy a self-managed
    /// webhook keeps.
    #[command(flatten)]
    pub own: super::kube::OwnConfigurations,
    /// Lifetime of a self-managed serving pair (the CA lives twice as long).
    #[arg(long, env = "WFE_CERT_VALIDITY", default_value = "8760h", value_parser = parse_duration)]
    pub cert_validity: Duration,
    /// Rotate a self-managed pair when less than this is left.
    #[arg(long, env = "WFE_CERT_RENEW_BEFORE", default_value = "720h", value_parser = parse_duration)]
    pub cert_renew_before: Duration,
    /// How often a self-managed webhook checks its Secret and CA bundle.
    #[arg(long, env = "WFE_CERT_CHECK_INTERVAL", default_value = "1h", value_parser = parse_duration)]
    pub cert_check_interval: Duration,
    /// Do not record Events (admission answers are the same either way).
    #[arg(long, env = "WFE_NO_EVENTS")]
    pub no_events: bool,
    /// Events waiting to be recorded; when full, new ones are dropped and counted.
    #[arg(long, env = "WFE_EVENT_QUEUE_CAPACITY", default_value_t = 1024)]
    pub event_queue_capacity: usize,
    /// Backup re-read interval for the certificate and policy files (changes are also watched).
    #[arg(long, env = "WFE_CERT_RELOAD_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub cert_reload_interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CertMode {
    Files,
    SelfManaged,
}

impl ServeArgs {
    fn self_managed(&self) -> SelfManagedOptions {
        SelfManagedOptions {
            namespace: self.namespace.clone(),
            secret: self.cert_secret.clone(),
            service: self.service_name.clone(),
            extra_hosts: self.cert_hosts.clone(),
            webhook_configurations: self.own.webhook_configurations.clone(),
            validity: self.cert_validity,
            renew_before: self.cert_renew_before,
            check_interval: self.cert_check_interval,
        }
    }
}

fn options(args: &ServeArgs) -> Result<ServeOptions, String> {
    let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let any = |port: u16| SocketAddr::from(([0, 0, 0, 0], port));
    let (listen, probe) = if args.dev {
        (loopback(8443), loopback(8080))
    } else {
        (any(8443), any(8080))
    };
    let cert = match (&args.tls_cert, &args.tls_key) {
        // Replaced by the Secret's pair before serving.
        _ if args.cert_mode == CertMode::SelfManaged => CertSource::Memory {
            cert: String::new(),
            key: String::new(),
        },
        (Some(cert), Some(key)) => CertSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        },
        _ if args.dev => dev_certificate(&args.dev_ca_out)?,
        _ => {
            return Err(
                "no certificate: pass --tls-cert and --tls-key, or --dev for a generated one"
                    .into(),
            );
        }
    };
    let mut options = ServeOptions::new(
        args.listen.unwrap_or(listen),
        args.probe_listen.unwrap_or(probe),
        cert,
    );
    options.client_ca = args.client_ca.clone();
    options.tls_min_version = args.tls_min_version;
    options.max_body_bytes = args.max_body_bytes;
    options.header_read_timeout = args.header_read_timeout;
    options.body_read_timeout = args.body_read_timeout;
    options.shutdown_delay = args.shutdown_delay.unwrap_or(if args.dev {
        Duration::ZERO
    } else {
        Duration::from_secs(5)
    });
    options.shutdown_grace = args.shutdown_grace;
    options.cert_reload_interval = args.cert_reload_interval;
    Ok(options)
}

/// A fresh CA and serving pair for loopback; only the CA bundle touches the disk.
fn dev_certificate(ca_out: &std::path::Path) -> Result<CertSource, String> {
    let bundle = certgen::generate(&certgen::default_hosts(), Validity::days(30))
        .map_err(|e| e.to_string())?;
    if let Some(dir) = ca_out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(ca_out, &bundle.ca_cert)
        .map_err(|e| format!("cannot write {}: {e}", ca_out.display()))?;
    tracing::info!(ca_bundle = %ca_out.display(), "dev mode: generated a self-signed CA and serving certificate for localhost, 127.0.0.1 and ::1");
    Ok(CertSource::Memory {
        cert: bundle.cert,
        key: bundle.key,
    })
}

pub fn run(args: ServeArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!(%message, "wfe-admission stopped");
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let policy = super::load_policy(args.cluster.config.as_deref())?;
    let mut options = options(&args)?;
    let metrics = Metrics::new();
    let self_managed = match args.cert_mode {
        CertMode::Files => None,
        CertMode::SelfManaged => {
            let client = super::kube::client(args.cluster.kubeconfig.as_deref()).await?;
            let manager = StatusManager::new(metrics.clone());
            let sm = args.self_managed();
            let material = selfcert::ensure_secret(&client, &sm, &manager)
                .await
                .map_err(|e| format!("self-managed certificates: {e}"))?;
            options.cert = CertSource::Memory {
                cert: material.cert.clone(),
                key: material.key.clone(),
            };
            Some((client, manager, sm, material))
        }
    };
    let policy = Arc::new(ArcSwap::from_pointee(policy));
    if let Some(path) = &args.cluster.config {
        super::policy_reload::reload_policy_on_change(
            path.clone(),
            Arc::clone(&policy),
            metrics.clone(),
            args.cert_reload_interval,
        );
    }
    let sink = event_sink(&args, &policy, &metrics).await;
    let running = server::start(options, Arc::clone(&policy), metrics, sink)
        .await
        .map_err(|e| e.to_string())?;
    if let Some((client, manager, sm, material)) = self_managed {
        selfcert::inject_ca(&client, &sm, &manager, &material.ca_bundle)
            .await
            .map_err(|e| format!("cannot inject the CA bundle: {e}"))?;
        match_sync::spawn(client.clone(), sm.clone(), manager.clone(), policy);
        crate::arming::spawn(client.clone(), sm.clone(), manager.clone());
        selfcert::spawn_rotation(client, sm, Arc::clone(&running.certs), manager);
    }
    if args.dev {
        eprintln!(
            "wfe-admission dev server: https://{}/mutate and /validate (CA bundle: {}), probes and metrics on http://{}",
            running.addr,
            args.dev_ca_out.display(),
            running.probe_addr
        );
    }
    wait_for_signal().await;
    tracing::info!("signal received; shutting down");
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Events need API credentials; without them the webhook still answers, it just records nothing.
async fn event_sink(
    args: &ServeArgs,
    policy: &Arc<ArcSwap<Policy>>,
    metrics: &Metrics,
) -> Option<Arc<dyn VerdictSink>> {
    if args.no_events {
        return None;
    }
    match super::kube::client(args.cluster.kubeconfig.as_deref()).await {
        Ok(client) => {
            let options = EventOptions {
                capacity: args.event_queue_capacity,
                ..EventOptions::default()
            };
            let manager = StatusManager::new(metrics.clone());
            let queue = events::spawn(
                client,
                Arc::clone(policy),
                metrics.clone(),
                Some(manager),
                options,
            );
            Some(Arc::new(queue))
        }
        Err(e) => {
            tracing::warn!(error = %e, "Events are not recorded");
            None
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
