//! Shared helpers for the integration tests: certificates in a temp dir, a server on
//! 127.0.0.1:0, TLS clients and AdmissionReview builders.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde_json::{Value, json};
use wfe_admission::certgen::{self, Bundle, Validity};
use wfe_admission::config::Config;
use wfe_admission::events::{self, EventOptions};
use wfe_admission::metrics::Metrics;
use wfe_admission::policy::Policy;
use wfe_admission::server::tls::CertSource;
use wfe_admission::server::{self, Running, ServeOptions, VerdictSink};

pub const CONTROLLER: &str = "system:serviceaccount:kubernaut-system:workflowexecution-controller";

pub fn install_provider() {
    let _ = wfe_admission::install_crypto_provider();
}

pub fn bundle() -> Bundle {
    certgen::generate(&certgen::default_hosts(), Validity::days(1)).expect("certificates")
}

/// Writes the pair the way a Kubernetes Secret volume does: files behind a `..data` symlink.
pub fn write_secret_volume(dir: &Path, generation: u32, bundle: &Bundle) {
    let data = dir.join(format!("..{generation}"));
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("tls.crt"), &bundle.cert).expect("write cert");
    std::fs::write(data.join("tls.key"), &bundle.key).expect("write key");
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(data.file_name().expect("name"), &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    for name in ["tls.crt", "tls.key"] {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).expect("link");
        }
    }
}

pub struct TestServer {
    pub running: Option<Running>,
    pub addr: SocketAddr,
    pub probe_addr: SocketAddr,
    pub ca: String,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub fn cert_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    pub fn probe_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.probe_addr)
    }

    pub fn metrics(&self) -> Metrics {
        self.running.as_ref().expect("running").metrics.clone()
    }

    /// What `/metrics` on the probe port serves.
    pub async fn metrics_text(&self) -> String {
        reqwest::get(self.probe_url("/metrics"))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

pub fn options_for(dir: &Path) -> ServeOptions {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    ServeOptions::new(
        loopback,
        loopback,
        CertSource::Files {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        },
    )
}

/// Starts a server with a fresh CA and pair in a temp dir; `tweak` adjusts the options.
pub async fn start_with(tweak: impl FnOnce(&mut ServeOptions), config: Config) -> TestServer {
    start_full(tweak, config, |_, _| None).await
}

/// A server whose verdicts go to an Events queue on `kube` (which may be unreachable).
pub async fn start_with_events(kube: kube::Client, options: EventOptions) -> TestServer {
    start_full(
        |_| {},
        Config::default(),
        |policy: &Arc<ArcSwap<Policy>>, metrics: &Metrics| {
            let queue = events::spawn(kube, Arc::clone(policy), metrics.clone(), None, options);
            Some(Arc::new(queue) as Arc<dyn VerdictSink>)
        },
    )
    .await
}

async fn start_full(
    tweak: impl FnOnce(&mut ServeOptions),
    config: Config,
    sink: impl FnOnce(&Arc<ArcSwap<Policy>>, &Metrics) -> Option<Arc<dyn VerdictSink>>,
) -> TestServer {
    install_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let b = bundle();
    write_secret_volume(dir.path(), 1, &b);
    let mut options = options_for(dir.path());
    tweak(&mut options);
    let policy = Arc::new(ArcSwap::from_pointee(Policy::new(config).expect("policy")));
    let metrics = Metrics::new();
    let sink = sink(&policy, &metrics);
    let running = server::start(options, policy, metrics, sink)
        .await
        .expect("server starts");
    TestServer {
        addr: running.addr,
        probe_addr: running.probe_addr,
        running: Some(running),
        ca: b.ca_cert,
        dir,
    }
}

pub async fn start() -> TestServer {
    start_with(|_| {}, Config::default()).await
}

/// A raw TLS stream to `server` offering HTTP/1.1 only, for writing requests byte by byte.
pub async fn tls_stream(
    server: &TestServer,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls_pki_types::pem::PemObject as _;
    install_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(server.ca.as_bytes()) {
        roots.add(cert.expect("pem")).expect("root");
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    connector
        .connect("localhost".try_into().expect("name"), tcp)
        .await
        .expect("handshake")
}

pub fn client(ca: &str) -> reqwest::Client {
    client_builder(ca).build().expect("client")
}

pub fn client_builder(ca: &str) -> reqwest::ClientBuilder {
    install_provider();
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).expect("ca"))
        .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], 0)))
}

pub fn wfe(name: &str, status: Value) -> Value {
    json!({
        "apiVersion": "kubernaut.ai/v1alpha1",
        "kind": "WorkflowExecution",
        "metadata": {"name": name, "namespace": "default", "uid": "7d3c2f51-0000-4000-8000-000000000001", "resourceVersion": "42", "generation": 1},
        "spec": {
            "remediationRequestRef": {"apiVersion": "kubernaut.ai/v1alpha1", "kind": "RemediationRequest", "name": "rr-1", "namespace": "default"},
            "workflowRef": {"workflowId": "restart-pod", "workflowName": "Restart pod", "actionType": "RestartPod", "version": "1.0.0", "executionBundle": "quay.io/kubernaut/restart-pod:1.0.0"},
            "targetResource": "default/Deployment/web"
        },
        "status": status
    })
}

/// An AdmissionReview for `PUT .../workflowexecutions/NAME/status`.
pub fn review(user: &str, old_status: Value, new_status: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "kubernaut.ai", "version": "v1alpha1", "kind": "WorkflowExecution"},
            "resource": {"group": "kubernaut.ai", "version": "v1alpha1", "resource": "workflowexecutions"},
            "subResource": "status",
            "requestKind": {"group": "kubernaut.ai", "version": "v1alpha1", "kind": "WorkflowExecution"},
            "requestResource": {"group": "kubernaut.ai", "version": "v1alpha1", "resource": "workflowexecutions"},
            "requestSubResource": "status",
            "name": "wfe-1",
            "namespace": "default",
            "operation": "UPDATE",
            "userInfo": {"username": user, "groups": ["system:authenticated"]},
            "object": wfe("wfe-1", new_status),
            "oldObject": wfe("wfe-1", old_status),
            "dryRun": false,
            "options": {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    })
}

/// Whether `client` fails to get any answer to `body` (the TLS handshake refused it).
pub async fn refused(client: &reqwest::Client, url: &str, body: &Value) -> bool {
    client.post(url).json(body).send().await.is_err()
}

pub async fn post(client: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).expect("json"))
        .send()
        .await
        .expect("request");
    let code = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}
