//! `wfe-admission repair`: fixes stored objects whose status breaks the derived-field rules
//! (missing times for their phase, stale duration, missing failure-reason mirror), each with
//! exactly one write through the status manager.

use std::process::ExitCode;

use jiff::Timestamp;
use kube::api::ListParams;

use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::policy::combine::{Status, repaired};
use crate::retry::WriteOutcome;
use crate::status::{StatusManager, api_for, stored_status};

#[derive(Debug, clap::Args)]
pub struct RepairArgs {
    /// Only this namespace (default: all namespaces).
    #[arg(long, short = 'n', env = "WFE_REPAIR_NAMESPACE")]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub cluster: super::kube::PolicyAndCluster,
    /// Print what would change without writing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Counts of one run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub checked: usize,
    pub repaired: usize,
    pub failed: usize,
    /// API writes made (conflict retries included).
    pub writes: u32,
}

fn changed_fields(before: &Status, after: &Status) -> Vec<String> {
    after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Repairs every object of the guarded resource in `namespace` (or all).
pub async fn repair(
    client: &kube::Client,
    policy: &Policy,
    manager: &StatusManager,
    namespace: Option<&str>,
    dry_run: bool,
) -> Result<Summary, String> {
    let r = &policy.config.resource;
    let api_version = format!("{}/{}", r.group, r.version);
    let list_api = api_for(client, policy, &api_version, &r.kind, namespace);
    let objects = list_api
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("cannot list {}: {e}", r.resource))?;
    let mut summary = Summary::default();
    for object in objects {
        summary.checked += 1;
        let now = Timestamp::now();
        let before = stored_status(&object.data);
        let Some(after) = repaired(policy, &before, now) else {
            continue;
        };
        let name = object.metadata.name.clone().unwrap_or_default();
        let ns = object.metadata.namespace.clone();
        let shown = format!("{}/{name}", ns.as_deref().unwrap_or("-"));
        let fields = changed_fields(&before, &after).join(", ");
        if dry_run {
            println!("would repair {shown}: {fields}");
            summary.repaired += 1;
            continue;
        }
        let api = api_for(client, policy, &api_version, &r.kind, ns.as_deref());
        let result = manager
            .update(&api, &name, policy, |status| {
                match repaired(policy, status, now) {
                    Some(fixed) => {
                        *status = fixed;
                        true
                    }
                    None => false,
                }
            })
            .await;
        match result {
            Ok(WriteOutcome::Written { attempts }) => {
                summary.repaired += 1;
                summary.writes += attempts;
                println!("repaired {shown}: {fields}");
            }
            Ok(WriteOutcome::Unchanged) => println!("{shown} was repaired meanwhile"),
            Err(e) => {
                summary.failed += 1;
                eprintln!("cannot repair {shown}: {e}");
            }
        }
    }
    Ok(summary)
}

pub fn run(args: RepairArgs) -> ExitCode {
    let RepairArgs {
        namespace,
        cluster,
        dry_run,
    } = args;
    let (config, kubeconfig) = (cluster.config.as_deref(), cluster.kubeconfig.as_deref());
    super::kube::run_with_cluster(config, kubeconfig, |policy, client| async move {
        let manager = StatusManager::new(Metrics::new());
        let s = repair(&client, &policy, &manager, namespace.as_deref(), dry_run).await?;
        println!(
            "repair: {} checked, {} repaired, {} failed",
            s.checked, s.repaired, s.failed
        );
        Ok(s.failed == 0)
    })
}
