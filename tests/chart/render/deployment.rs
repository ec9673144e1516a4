//! The Deployment's hardening, probes, spread and flags; the Service and the PDB.

use super::*;

pub(super) fn deployment_is_hardened_probed_and_spread(ctx: &mut Ctx) {
    let chart: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(chart_dir().join("Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("parse Chart.yaml");
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["appVersion"], "0.1.0");
    for mode in MODES {
        let m = render(ctx, &mode_values(mode));
        let d = m.one("Deployment");
        assert_eq!(d["spec"]["replicas"], 2, "{mode}");
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], "wfe-admission");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let c = container(&m);
        assert_eq!(
            c["image"],
            format!(
                "ghcr.io/kubernaut/wfe-admission:{}",
                chart["appVersion"].as_str().expect("appVersion")
            )
        );
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        let sc = &c["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true, "{mode}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{mode}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{mode}");
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{mode}");
        assert!(sc["capabilities"].get("add").is_none());
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
        assert!(c["resources"]["requests"]["cpu"].is_string());
        assert!(c["resources"]["limits"]["memory"].is_string());
        let ports: Vec<(String, i64)> = c["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap_or_default().to_string(),
                    p["containerPort"].as_i64().unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(
            ports,
            vec![
                ("https".to_string(), 8443),
                ("http-probes".to_string(), 8080)
            ]
        );
        for (probe, path) in [("livenessProbe", "/livez"), ("readinessProbe", "/readyz")] {
            assert_eq!(c[probe]["httpGet"]["path"], path, "{probe}");
            assert_eq!(c[probe]["httpGet"]["port"], "http-probes", "{probe}");
            assert!(c[probe]["httpGet"].get("scheme").is_none(), "plain HTTP");
        }
        let env = c["env"].as_array().expect("env");
        for (name, field) in [
            ("POD_NAME", "metadata.name"),
            ("POD_NAMESPACE", "metadata.namespace"),
        ] {
            let e = env
                .iter()
                .find(|e| e["name"] == name)
                .unwrap_or_else(|| panic!("no env {name}"));
            assert_eq!(e["valueFrom"]["fieldRef"]["fieldPath"], field);
        }
        // The policy is a directory mount (no subPath), so ConfigMap updates reach the pod.
        let mounts = c["volumeMounts"].as_array().expect("mounts");
        let policy = mounts
            .iter()
            .find(|v| v["name"] == "policy")
            .expect("policy mount");
        assert_eq!(policy["mountPath"], "/etc/wfe-admission");
        assert!(policy.get("subPath").is_none());
        let volumes = pod["volumes"].as_array().expect("volumes");
        let cm = volumes
            .iter()
            .find(|v| v["name"] == "policy")
            .expect("policy volume");
        assert_eq!(cm["configMap"]["name"], "wfe-admission-policy");
        let certs = mounts.iter().find(|v| v["name"] == "certs");
        if mode == "self-managed" {
            assert!(certs.is_none(), "self-managed mounts no Secret");
            assert!(!volumes.iter().any(|v| v["name"] == "certs"));
        } else {
            let certs = certs.expect("certs mount");
            assert_eq!(certs["mountPath"], "/certs");
            assert!(
                certs.get("subPath").is_none(),
                "a subPath mount never sees a rotation"
            );
            let secret = volumes
                .iter()
                .find(|v| v["name"] == "certs")
                .expect("certs volume");
            let want = if mode == "provided" {
                "wfe-admission-provided-tls"
            } else {
                "wfe-admission-tls"
            };
            assert_eq!(secret["secret"]["secretName"], want);
        }
        // Soft anti-affinity over nodes by default.
        let soft = &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
            [0];
        assert_eq!(
            soft["podAffinityTerm"]["topologyKey"],
            "kubernetes.io/hostname"
        );
        assert_eq!(
            soft["podAffinityTerm"]["labelSelector"]["matchLabels"],
            d["spec"]["selector"]["matchLabels"]
        );
    }
    let m = render(
        ctx,
        &json!({"podAntiAffinity": "hard", "replicaCount": 3,
        "image": {"digest": format!("sha256:{}", "ab".repeat(32))}}),
    );
    let d = m.one("Deployment");
    assert_eq!(d["spec"]["replicas"], 3);
    let hard = &d["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        [0];
    assert_eq!(hard["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(
        container(&m)["image"],
        format!("ghcr.io/kubernaut/wfe-admission@sha256:{}", "ab".repeat(32))
    );
    let m = render(ctx, &json!({"podAntiAffinity": "none"}));
    assert!(
        m.one("Deployment")["spec"]["template"]["spec"]
            .get("affinity")
            .is_none()
    );
}

pub(super) fn deployment_flags_per_mode(ctx: &mut Ctx) {
    let common = [
        "serve",
        "--listen=0.0.0.0:8443",
        "--probe-listen=0.0.0.0:8080",
        "--tls-min-version=1.2",
        "--config=/etc/wfe-admission/policy.yaml",
        "--log-format=json",
        "--log=info",
        "--shutdown-delay=5s",
        "--shutdown-grace=20s",
    ];
    for mode in MODES {
        let m = render(ctx, &mode_values(mode));
        let args = deployment_args(&m);
        let extra: &[&str] = match mode {
            "self-managed" => &[
                "--cert-mode=self-managed",
                "--cert-secret=wfe-admission-tls",
                "--service-name=wfe-admission",
                "--webhook-configurations=wfe-admission",
                "--cert-validity=8760h",
                "--cert-renew-before=720h",
                "--cert-check-interval=1h",
            ],
            _ => &["--tls-cert=/certs/tls.crt", "--tls-key=/certs/tls.key"],
        };
        let want: Vec<String> = common.iter().chain(extra).map(|s| s.to_string()).collect();
        assert_eq!(args, want, "{mode}");
        // The file --config names is the ConfigMap's key; the configurations it names exist.
        assert!(m.one("ConfigMap")["data"].get("policy.yaml").is_some());
        if mode == "self-managed" {
            assert_eq!(
                m.one("MutatingWebhookConfiguration")["metadata"]["name"],
                "wfe-admission"
            );
            assert_eq!(
                m.one("ValidatingWebhookConfiguration")["metadata"]["name"],
                "wfe-admission"
            );
            assert_eq!(m.one("Service")["metadata"]["name"], "wfe-admission");
        }
    }
    let m = render(
        ctx,
        &json!({"log": {"level": "debug", "format": "text"},
        "shutdown": {"delay": "15s", "grace": "40s"},
        "extraArgs": ["--max-body-bytes=1048576"],
        "certificates": {"selfManaged": {"secretName": "my-webhook-pair"}}}),
    );
    let args = deployment_args(&m);
    for want in [
        "--log=debug",
        "--log-format=text",
        "--max-body-bytes=1048576",
        "--cert-secret=my-webhook-pair",
        "--shutdown-delay=15s",
        "--shutdown-grace=40s",
    ] {
        assert!(args.contains(&want.to_string()), "{want} not in {args:?}");
    }
}

/// Every flag the chart passes is one that `wfe-admission serve` knows.
pub(super) fn deployment_flags_exist_in_the_binary(ctx: &mut Ctx) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wfe-admission"))
        .args(["serve", "--help"])
        .output()
        .expect("run wfe-admission serve --help");
    assert!(out.status.success(), "serve --help failed");
    let help = String::from_utf8_lossy(&out.stdout);
    let known: BTreeSet<&str> = help
        .split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '[')
        .filter(|w| w.starts_with("--"))
        .collect();
    let mut used = BTreeSet::new();
    for mode in MODES {
        for arg in deployment_args(&render(ctx, &mode_values(mode))) {
            if let Some(flag) = arg.strip_prefix("--") {
                used.insert(format!("--{}", flag.split('=').next().unwrap_or_default()));
            }
        }
    }
    assert!(used.len() >= 10, "{used:?}");
    let missing: Vec<&String> = used
        .iter()
        .filter(|f| !known.contains(f.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "serve does not know {missing:?}; it knows {known:?}"
    );
    // POD_NAMESPACE (downward API) is the env of --namespace, which the self-managed Secret uses.
    assert!(
        help.contains("POD_NAMESPACE"),
        "serve --help names no POD_NAMESPACE"
    );
}

pub(super) fn network_ports_and_tls_values_reach_the_pod(ctx: &mut Ctx) {
    let ports = |m: &Manifests| -> Vec<(String, u64)> {
        container(m)["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| {
                let name = p["name"].as_str().expect("name").to_string();
                (name, p["containerPort"].as_u64().expect("port"))
            })
            .collect()
    };
    // Defaults: the pod network, Linux nodes, TLS 1.2 and up.
    let m = render(ctx, &json!({}));
    let pod = &m.one("Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"], json!({"kubernetes.io/os": "linux"}));
    assert!(
        pod.get("hostNetwork").is_none() && pod.get("dnsPolicy").is_none(),
        "{pod}"
    );
    let has_args = |m: &Manifests, wanted: &[&str]| {
        let args = deployment_args(m);
        for arg in wanted {
            assert!(args.contains(&arg.to_string()), "{arg} not in {args:?}");
        }
    };
    has_args(
        &m,
        &[
            "--listen=0.0.0.0:8443",
            "--probe-listen=0.0.0.0:8080",
            "--tls-min-version=1.2",
        ],
    );
    assert_eq!(
        ports(&m),
        vec![("https".into(), 8443), ("http-probes".into(), 8080)]
    );

    // The node's network, other ports, TLS 1.3 only: the Service still forwards by name.
    let values = json!({"hostNetwork": true, "ports": {"webhook": 10443, "probes": 10080},
        "tls": {"minVersion": "1.3"}, "nodeSelector": {"pool": "system"}});
    let m = render(ctx, &values);
    let pod = &m.one("Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
    // Helm merges maps: a label of one's own keeps the Linux one, which `null` removes.
    assert_eq!(
        pod["nodeSelector"],
        json!({"kubernetes.io/os": "linux", "pool": "system"})
    );
    let own = render(
        ctx,
        &json!({"nodeSelector": {"kubernetes.io/os": null, "pool": "system"}}),
    );
    assert_eq!(
        own.one("Deployment")["spec"]["template"]["spec"]["nodeSelector"],
        json!({"pool": "system"})
    );
    has_args(
        &m,
        &[
            "--listen=0.0.0.0:10443",
            "--probe-listen=0.0.0.0:10080",
            "--tls-min-version=1.3",
        ],
    );
    assert_eq!(
        ports(&m),
        vec![("https".into(), 10443), ("http-probes".into(), 10080)]
    );
    assert_eq!(m.one("Service")["spec"]["ports"][0]["targetPort"], "https");
    let m = render(ctx, &json!({"hostNetwork": true, "dnsPolicy": "Default"}));
    assert_eq!(
        m.one("Deployment")["spec"]["template"]["spec"]["dnsPolicy"],
        "Default"
    );

    // A second --config would stop the webhook at start: the render refuses it and says what
    // to do instead.
    for extra in [
        json!(["--config=/etc/mine.yaml"]),
        json!(["--config", "/etc/mine.yaml"]),
    ] {
        let err = ctx
            .helm()
            .template(RELEASE, NS, &json!({"extraArgs": extra}))
            .err()
            .unwrap_or_else(|| panic!("helm template accepted extraArgs {extra}"));
        assert!(
            err.contains("extraArgs must not pass --config") && err.contains("`policy`"),
            "{err}"
        );
    }
    render(ctx, &json!({"extraArgs": ["--max-body-bytes=1048576"]}));
}

pub(super) fn service_and_pdb_select_the_pods(ctx: &mut Ctx) {
    let m = render(ctx, &json!({}));
    let d = m.one("Deployment");
    let selector = &d["spec"]["selector"]["matchLabels"];
    let pod_labels = d["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .expect("labels");
    for (k, v) in selector.as_object().expect("selector") {
        assert_eq!(pod_labels.get(k), Some(v), "pod labels lack {k}");
    }
    assert_eq!(&m.one("Service")["spec"]["selector"], selector);
    let pdb = m.one("PodDisruptionBudget");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], selector);
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert!(pdb["spec"].get("minAvailable").is_none());
    let m = render(
        ctx,
        &json!({"podDisruptionBudget": {"minAvailable": 1, "maxUnavailable": null}}),
    );
    let pdb = m.one("PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert!(pdb["spec"].get("maxUnavailable").is_none());
    let err = ctx
        .helm()
        .template(
            RELEASE,
            NS,
            &json!({"podDisruptionBudget": {"minAvailable": 1}}),
        )
        .expect_err("both minAvailable and maxUnavailable must fail");
    assert!(err.contains("podDisruptionBudget"), "{err}");
    let m = render(ctx, &json!({"podDisruptionBudget": {"enabled": false}}));
    assert!(!m.has("PodDisruptionBudget"));
}

/// `clientAuth`: the CA from a Secret or from PEM in the values, mounted as a directory (so it
/// reloads) and passed as `--client-ca`; anything else is refused at render time.
pub(super) fn client_auth_mounts_the_ca_and_requires_client_certificates(ctx: &mut Ctx) {
    let client_ca = |m: &Manifests| -> Vec<String> {
        strs(&container(m)["args"])
            .into_iter()
            .filter(|a| a.starts_with("--client-ca"))
            .map(String::from)
            .collect()
    };
    let volume = |m: &Manifests| -> Option<Value> {
        let d = m.one("Deployment");
        d["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["name"] == "client-ca").cloned())
    };
    let m = render(ctx, &json!({}));
    assert!(client_ca(&m).is_empty() && volume(&m).is_none());

    let want = vec!["--client-ca=/client-ca/ca.crt".to_string()];
    let m = render(
        ctx,
        &json!({"clientAuth": {"enabled": true, "caSecret": "apiserver-webhook-client-ca"}}),
    );
    assert_eq!(client_ca(&m), want);
    assert_eq!(
        volume(&m),
        Some(
            json!({"name": "client-ca", "secret": {"secretName": "apiserver-webhook-client-ca",
            "items": [{"key": "ca.crt", "path": "ca.crt"}]}})
        )
    );
    let mounts = container(&m)["volumeMounts"].as_array().expect("mounts");
    assert!(mounts.iter().any(|v| v["name"] == "client-ca"
        && v["mountPath"] == "/client-ca"
        && v["readOnly"] == true
        && v.get("subPath").is_none()));
    assert!(
        !m.ids()
            .contains(&"ConfigMap/wfe-admission-client-ca".to_string())
    );

    let pem = test_ca_pem();
    let m = render(
        ctx,
        &json!({"clientAuth": {"enabled": true, "caBundle": pem}}),
    );
    assert_eq!(client_ca(&m), want);
    let cm = m.get("ConfigMap", "wfe-admission-client-ca");
    assert_eq!(
        cm["data"]["ca.crt"].as_str().map(str::trim),
        Some(pem.trim())
    );
    assert_eq!(
        volume(&m).map(|v| v["configMap"]["name"].clone()),
        Some(json!("wfe-admission-client-ca"))
    );

    for (values, needle) in [
        (
            json!({"enabled": true}),
            "exactly one of clientAuth.caSecret",
        ),
        (
            json!({"enabled": true, "caSecret": "s", "caBundle": pem}),
            "exactly one of clientAuth.caSecret",
        ),
        (
            json!({"enabled": true, "caBundle": "not a certificate"}),
            "clientAuth.caBundle must be a PEM certificate",
        ),
    ] {
        let err = ctx
            .helm()
            .template(RELEASE, NS, &json!({"clientAuth": values}))
            .err()
            .unwrap_or_else(|| panic!("helm template accepted clientAuth {values}"));
        assert!(err.contains(needle), "{err}");
    }
}
