//! `helm uninstall` with this test standing in for the kubelet of the release's hook Jobs: each
//! Job's container runs here with the Job's own args, as the release's service account, and
//! the Job is then marked done, which is what Helm waits for.

use super::*;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Patch, PatchParams};

/// Runs `helm uninstall` and every hook Job it creates meanwhile; helm's output.
pub(super) fn uninstall_running_hooks(cluster: &Cluster, helm: &Helm) -> std::process::Output {
    let kubeconfig = cluster.kubeconfig();
    let mut child = helm
        .command()
        .args(["--kubeconfig", path_str(&kubeconfig)])
        .args(["uninstall", RELEASE, "--namespace", NS, "--timeout", "60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn helm uninstall");
    let jobs: Api<Job> = Api::namespaced(cluster.admin.clone(), NS);
    let mut ran = Vec::new();
    while child.try_wait().expect("helm uninstall").is_none() {
        let listed = cluster.block_on(jobs.list(&Default::default()));
        for job in listed.map(|l| l.items).unwrap_or_default() {
            let name = job.metadata.name.clone().unwrap_or_default();
            if !ran.contains(&name) {
                run_job(cluster, &jobs, &job);
                ran.push(name);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().expect("helm uninstall output")
}

fn run_job(cluster: &Cluster, jobs: &Api<Job>, job: &Job) {
    let name = job.metadata.name.as_deref().unwrap_or_default();
    let container = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .expect("a container");
    let dir = cluster.workdir(&format!("job-{name}"));
    let kubeconfig = cluster.write_sa_kubeconfig(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_wfe-admission"))
        .args(container.args.iter().flatten())
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
    let status = if ok {
        json!({"startTime": now, "completionTime": now, "succeeded": 1,
               "conditions": [condition("SuccessCriteriaMet"), condition("Complete")]})
    } else {
        json!({"startTime": now, "failed": 1,
               "conditions": [condition("FailureTarget"), condition("Failed")]})
    };
    cluster
        .block_on(jobs.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        ))
        .unwrap_or_else(|e| panic!("mark Job {name} done: {e}"));
}
