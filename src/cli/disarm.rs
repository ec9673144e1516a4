//! `wfe-admission disarm`: makes the webhook's own configurations fail open (`failurePolicy:
//! Ignore`), so that status writes pass while no webhook answers. The chart runs it as a
//! pre-delete hook: Helm deletes the Service before the configurations, and a write in between
//! would otherwise be refused. An admin can run it in an emergency too.

use std::process::ExitCode;

use crate::metrics::Metrics;
use crate::status::StatusManager;

#[derive(Debug, clap::Args)]
pub struct DisarmArgs {
    #[command(flatten)]
    pub own: super::kube::OwnConfigurations,
    #[command(flatten)]
    pub cluster: super::kube::PolicyAndCluster,
}

/// Exit 0 when every configuration found fails open (none found is fine: nothing to refuse a
/// write), 2 when a write failed.
pub fn run(args: DisarmArgs) -> ExitCode {
    let names = args.own.webhook_configurations.clone();
    super::kube::run_with_cluster(
        args.cluster.config.as_deref(),
        args.cluster.kubeconfig.as_deref(),
        |_, client| async move {
            let manager = StatusManager::new(Metrics::new());
            let found = crate::arming::disarm(&client, &names, manager.writer())
                .await
                .map_err(|e| format!("cannot disarm: {e}"))?;
            println!(
                "disarm: {found} webhook configuration(s) named {} now fail open (failurePolicy Ignore)",
                names.join(", ")
            );
            Ok(true)
        },
    )
}
