//! `helm uninstall` and `helm upgrade` with this test standing in for the kubelet of the
//! release's hook Jobs: each Job's container runs here with the Job's own args (its ConfigMap
//! volumes written to a folder, their mount paths pointed there), as the release's service
//! account, and the Job is then marked done or failed, which is what Helm waits for.

use super::*;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Patch, PatchParams};

/// Runs `helm uninstall` and every hook Job it creates meanwhile; helm's output.
pub(super) fn uninstall_running_hooks(cluster: &Cluster, helm: &Helm) -> std::process::Output {
    helm_running_hooks(
        cluster,
        helm,
        &["uninstall", RELEASE, "--namespace", NS, "--timeout", "60s"],
    )
    .0
}

/// A hook Job this test ran: its name and what its container printed.
pub(super) struct RanJob {
    pub name: String,
    pub output: std::process::Output,
}

/// Runs helm with `args` and every hook Job it creates meanwhile; helm's output and the Jobs'.
pub(super) fn helm_running_hooks(
    cluster: &Cluster,
    helm: &Helm,
    args: &[&str],
) -> (std::process::Output, Vec<RanJob>) {
    let kubeconfig = cluster.kubeconfig();
    let mut child = helm
        .command()
        .args(["--kubeconfig", path_str(&kubeconfig)])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn helm");
    let jobs: Api<Job> = Api::namespaced(cluster.admin.clone(), NS);
    let mut ran: Vec<RanJob> = Vec::new();
    while child.try_wait().expect("helm").is_none() {
        let listed = cluster.block_on(jobs.list(&Default::default()));
        for job in listed.map(|l| l.items).unwrap_or_default() {
            let name = job.metadata.name.clone().unwrap_or_default();
            // A Job this loop ran is marked done or failed right away, as is one left by an
            // earlier run: only a Job with no outcome yet is run.
            let open = job
                .status
                .as_ref()
                .is_none_or(|s| s.completion_time.is_none() && s.failed.is_none());
            if open {
                let output = run_job(cluster, &jobs, &job);
                ran.push(RanJob { name, output });
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("helm output");
    (out, ran)
}

/// The Job's ConfigMap volumes written under `dir`, and each mount path → its folder there.
fn config_map_volumes(cluster: &Cluster, job: &Job, dir: &Path) -> Vec<(String, PathBuf)> {
    use k8s_openapi::api::core::v1::ConfigMap;
    let pod = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a pod spec");
    let config_maps: Api<ConfigMap> = Api::namespaced(cluster.admin.clone(), NS);
    let mut mounts = Vec::new();
    for volume in pod.volumes.iter().flatten() {
        let Some(source) = &volume.config_map else {
            continue;
        };
        let cm = cluster
            .block_on(config_maps.get(&source.name))
            .unwrap_or_else(|e| panic!("the Job's ConfigMap {}: {e}", source.name));
        let folder = dir.join(&volume.name);
        std::fs::create_dir_all(&folder).expect("volume folder");
        for (key, value) in cm.data.iter().flatten() {
            std::fs::write(folder.join(key), value).expect("volume file");
        }
        for container in &pod.containers {
            for m in container.volume_mounts.iter().flatten() {
                if m.name == volume.name {
                    mounts.push((m.mount_path.clone(), folder.clone()));
                }
            }
        }
    }
    mounts
}

fn run_job(cluster: &Cluster, jobs: &Api<Job>, job: &Job) -> std::process::Output {
    let name = job.metadata.name.as_deref().unwrap_or_default();
    let container = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .expect("a container");
    let dir = cluster.workdir(&format!("job-{name}"));
    let kubeconfig = cluster.write_sa_kubeconfig(&dir);
    let mounts = config_map_volumes(cluster, job, &dir);
    let args: Vec<String> = container
        .args
        .iter()
        .flatten()
        .map(|a| {
            mounts.iter().fold(a.clone(), |a, (path, folder)| {
                a.replace(path.as_str(), path_str(folder))
            })
        })
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_wfe-admission"))
        .args(&args)
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .env("POD_NAMESPACE", NS)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env_remove("KUBECONFIG")
        .output()
        .expect("run the Job's container");
    let ok = out.status.success();
    eprintln!(
        "chart: hook Job {name} ran here ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let condition = |kind: &str| {
        json!({"type": kind, "status": "True", "lastProbeTime": now, "lastTransitionTime": now,
               "reason": if ok { "CompletionsReached" } else { "BackoffLimitExceeded" },
               "message": "run by the chart test"})
    };
    let done = |kinds: &[&str]| {
        let conditions: Vec<Value> = kinds.iter().map(|k| condition(k)).collect();
        let status = if ok {
            json!({"startTime": now, "completionTime": now, "succeeded": 1,
                   "conditions": conditions})
        } else {
            json!({"startTime": now, "failed": 1, "conditions": conditions})
        };
        cluster.block_on(jobs.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        ))
    };
    let mut marked = if ok {
        done(&["SuccessCriteriaMet", "Complete"])
    } else {
        done(&["FailureTarget", "Failed"])
    };
    // Before 1.31 the API server refuses SuccessCriteriaMet on a Job without a success policy:
    // its Job controller wrote Complete alone.
    if let Err(kube::Error::Api(e)) = &marked
        && ok
        && e.message.contains("SuccessCriteriaMet")
    {
        marked = done(&["Complete"]);
    }
    marked.unwrap_or_else(|e| panic!("mark Job {name} done: {e}"));
    out
}
