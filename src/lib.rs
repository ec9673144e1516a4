//! wfe-admission: a validating and mutating admission webhook for the status lifecycle of
//! `WorkflowExecution` resources.
#![forbid(unsafe_code)]

pub mod bench;
pub mod certgen;
pub mod cli;
pub mod config;
pub mod events;
pub mod match_sync;
pub mod policy;
pub mod selfcert;
pub mod server;
pub mod status;

/// Installs ring as the process's rustls crypto provider: rustls, kube's client and rcgen all
/// use it. `false` when one was installed already (a test calling it again, or another crate).
pub fn install_crypto_provider() -> bool {
    rustls::crypto::ring::default_provider()
        .install_default()
        .is_ok()
}
