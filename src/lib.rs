//! wfe-admission: a validating and mutating admission webhook for the status lifecycle of
//! `WorkflowExecution` resources.
#![forbid(unsafe_code)]

// Test support shared by path between the unit tests and the other crates names the product
// one way, `wfe_admission::`, from inside the crate too.
#[cfg(test)]
extern crate self as wfe_admission;

pub mod arming;
pub mod certgen;
pub mod cli;
pub mod config;
pub mod events;
pub mod match_sync;
pub mod metrics;
pub mod offline;
pub mod policy;
pub mod replay;
pub mod retry;
pub mod selfcert;
pub mod server;
pub mod status;
pub mod webhook_configs;

/// Installs ring as the process's rustls crypto provider: rustls, kube's client and rcgen all
/// use it. `false` when one was installed already (a test calling it again, or another crate).
pub fn install_crypto_provider() -> bool {
    rustls::crypto::ring::default_provider()
        .install_default()
        .is_ok()
}

/// What the test suites reach into and the product does not export (feature `test-hooks`).
#[cfg(feature = "test-hooks")]
pub mod test_hooks {
    pub use crate::cli::policy_reload::reload_policy_on_change;
    pub use crate::retry::RaceHook;
}
