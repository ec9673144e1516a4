//! The control plane the chart is installed into, with an admin client and helpers to read
//! back what the API server stored.

use super::*;

/// The control plane and clients for it. Fields drop in order: the clients, the runtime, then
/// the plane itself (stop.sh).
pub struct Cluster {
    pub(super) admin: kube::Client,
    pub(super) rt: tokio::runtime::Runtime,
    plane: ControlPlane,
}

impl Cluster {
    pub fn start() -> Result<Self> {
        let started = Instant::now();
        let (bin_dir, _) = control_plane::build(&repo())?;
        Self::start_from(&bin_dir, started)
    }

    /// A control plane of another Kubernetes release (built once, then cached).
    pub fn start_release(version: &str) -> Result<Self> {
        let started = Instant::now();
        let bin_dir = control_plane::build_release(&repo(), version)?;
        Self::start_from(&bin_dir, started)
    }

    fn start_from(bin_dir: &Path, started: Instant) -> Result<Self> {
        let plane = ControlPlane::start(&repo(), bin_dir, "chart")?;
        let path = plane.path().to_path_buf();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("tokio runtime")?;
        let kubeconfig = path.join("kubeconfig");
        let admin = rt.block_on(async {
            let file = kube::config::Kubeconfig::read_from(&kubeconfig)?;
            let config = kube::Config::from_custom_kubeconfig(file, &Default::default()).await?;
            anyhow::Ok(kube::Client::try_from(config)?)
        })?;
        let cluster = Cluster { admin, rt, plane };
        cluster.prepare()?;
        eprintln!(
            "chart: control plane up in {:.1} s ({})",
            started.elapsed().as_secs_f64(),
            path.display()
        );
        Ok(cluster)
    }

    pub fn var(&self, key: &str) -> &str {
        self.plane.var(key).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.plane.path().join("kubeconfig")
    }

    pub fn apiserver_log_tail(&self, lines: usize) -> String {
        self.plane.apiserver_log_tail(lines)
    }

    /// The release namespace and stand-in CRDs for the third-party kinds the chart renders
    /// (cert-manager's Certificate and Issuer, prometheus-operator's ServiceMonitor and
    /// PrometheusRule): no controller acts on them, but the API server must know the kinds to
    /// store the objects.
    pub(super) fn prepare(&self) -> Result<()> {
        self.rt.block_on(async {
            let namespaces: Api<Namespace> = Api::all(self.admin.clone());
            let ns = Namespace {
                metadata: ObjectMeta {
                    name: Some(NS.into()),
                    ..Default::default()
                },
                ..Default::default()
            };
            namespaces.create(&PostParams::default(), &ns).await?;
            let crds: Api<CustomResourceDefinition> = Api::all(self.admin.clone());
            for (group, kind, plural) in [
                ("cert-manager.io", "Certificate", "certificates"),
                ("cert-manager.io", "Issuer", "issuers"),
                ("monitoring.coreos.com", "ServiceMonitor", "servicemonitors"),
                ("monitoring.coreos.com", "PrometheusRule", "prometheusrules"),
            ] {
                let version = "v1";
                let crd: CustomResourceDefinition = serde_json::from_value(json!({
                    "apiVersion": "apiextensions.k8s.io/v1",
                    "kind": "CustomResourceDefinition",
                    "metadata": {"name": format!("{plural}.{group}")},
                    "spec": {
                        "group": group,
                        "scope": "Namespaced",
                        "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind,
                                  "listKind": format!("{kind}List")},
                        "versions": [{"name": version, "served": true, "storage": true,
                            "schema": {"openAPIV3Schema": {"type": "object",
                                "x-kubernetes-preserve-unknown-fields": true}}}],
                    },
                }))?;
                crds.create(&PostParams::default(), &crd).await?;
            }
            for name in [
                "certificates.cert-manager.io",
                "issuers.cert-manager.io",
                "servicemonitors.monitoring.coreos.com",
                "prometheusrules.monitoring.coreos.com",
            ] {
                control_plane::wait_established(&self.admin, name, Duration::from_secs(30))
                    .await
                    .context("stand-in CRD")?;
            }
            Ok(())
        })
    }

    pub(super) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// helm against this API server.
    pub(super) fn helm(&self, helm: &Helm, args: &[&str]) -> std::process::Output {
        let kubeconfig = self.kubeconfig();
        let mut all = vec!["--kubeconfig", path_str(&kubeconfig)];
        all.extend_from_slice(args);
        helm.run(&all).expect("run helm")
    }

    /// `helm install` of the chart with `values` as the release; its output, success or not.
    pub(super) fn try_install(&self, helm: &Helm, values: &Value) -> std::process::Output {
        let file = helm.values_file(values);
        let chart = chart_dir();
        self.helm(
            helm,
            &[
                "install",
                RELEASE,
                path_str(&chart),
                "--namespace",
                NS,
                "--values",
                path_str(&file),
            ],
        )
    }

    pub(super) fn install<'a>(&'a self, helm: &'a Helm, values: &Value) -> Release<'a> {
        let out = self.try_install(helm, values);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "helm install failed:\n{}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        Release {
            cluster: self,
            helm_bin: helm,
            installed: true,
            notes: stdout,
        }
    }

    /// The stored object for a rendered document (None when the API server has none).
    pub(super) fn stored(&self, doc: &Value) -> Option<Value> {
        let (group, version) = match doc["apiVersion"]
            .as_str()
            .expect("apiVersion")
            .split_once('/')
        {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (
                String::new(),
                doc["apiVersion"].as_str().unwrap_or_default().to_string(),
            ),
        };
        let gvk = GroupVersionKind::gvk(&group, &version, doc["kind"].as_str().expect("kind"));
        let name = doc["metadata"]["name"].as_str().expect("name");
        self.block_on(async {
            let (resource, _) = kube::discovery::pinned_kind(&self.admin, &gvk)
                .await
                .unwrap_or_else(|e| panic!("the API server does not know {gvk:?}: {e}"));
            let api: Api<DynamicObject> = match doc["metadata"]["namespace"].as_str() {
                Some(ns) => Api::namespaced_with(self.admin.clone(), ns, &resource),
                None => Api::all_with(self.admin.clone(), &resource),
            };
            api.get_opt(name)
                .await
                .unwrap_or_else(|e| panic!("GET {gvk:?} {name}: {e}"))
                .map(|o| serde_json::to_value(o).expect("json"))
        })
    }

    /// Can the release's service account do this? (SubjectAccessReview as the admin.)
    pub(super) fn sa_can(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
        ns: Option<&str>,
        name: Option<&str>,
    ) -> bool {
        let (resource, subresource) = match resource.split_once('/') {
            Some((r, s)) => (r, Some(s.to_string())),
            None => (resource, None),
        };
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(SA_USER.into()),
                groups: Some(SA_GROUPS.iter().map(|g| g.to_string()).collect()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.into()),
                    group: Some(group.into()),
                    resource: Some(resource.into()),
                    subresource,
                    namespace: ns.map(String::from),
                    name: name.map(String::from),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        self.block_on(async {
            let api: Api<SubjectAccessReview> = Api::all(self.admin.clone());
            api.create(&PostParams::default(), &review)
                .await
                .expect("SubjectAccessReview")
                .status
                .map(|s| s.allowed)
                .unwrap_or(false)
        })
    }

    /// A client that authenticates with one of start.sh's bearer tokens.
    pub(super) fn client_with_token(&self, id: &str) -> kube::Client {
        let token = self.var(&format!("WFE_TOKEN_{id}")).to_string();
        self.client_with(|auth| auth.token = Some(token.into()))
    }

    /// The admin impersonating the release's service account (what its pods would be).
    pub(super) fn client_as_sa(&self) -> kube::Client {
        self.client_with(|auth| {
            auth.impersonate = Some(SA_USER.into());
            auth.impersonate_groups = Some(SA_GROUPS.iter().map(|g| g.to_string()).collect());
        })
    }

    pub(super) fn client_with(
        &self,
        set: impl FnOnce(&mut kube::config::AuthInfo),
    ) -> kube::Client {
        let kubeconfig = self.kubeconfig();
        self.block_on(async move {
            let file = kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig");
            let mut config = kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .expect("config");
            let mut auth = config.auth_info.clone();
            set(&mut auth);
            if auth.token.is_some() {
                // A token user, not the admin's client certificate.
                auth.client_certificate = None;
                auth.client_certificate_data = None;
                auth.client_key = None;
                auth.client_key_data = None;
            }
            config.auth_info = auth;
            kube::Client::try_from(config).expect("client")
        })
    }

    /// A kubeconfig for the webhook process: the admin impersonating the service account, so
    /// that everything the webhook does is authorised by the chart's RBAC alone.
    pub(super) fn write_sa_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig-sa");
        let groups: Vec<String> = SA_GROUPS.iter().map(|g| format!("\"{g}\"")).collect();
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {}\n    certificate-authority: {}\n\
             users:\n- name: sa\n  user:\n    client-certificate: {}\n    client-key: {}\n    as: \"{SA_USER}\"\n    as-groups: [{}]\n\
             contexts:\n- name: e2e\n  context: {{cluster: e2e, user: sa, namespace: {NS}}}\ncurrent-context: e2e\n",
            self.var("KUBE_APISERVER_URL"),
            self.var("KUBE_CA_FILE"),
            self.var("WFE_CLIENT_CERT_ADMIN"),
            self.var("WFE_CLIENT_KEY_ADMIN"),
            groups.join(", ")
        );
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    /// A fresh work directory under the control plane's.
    pub(super) fn workdir(&self, name: &str) -> PathBuf {
        let dir = self.plane.path().join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }
}
