//! wfe-admission: a validating and mutating admission webhook for the status lifecycle of
//! `WorkflowExecution` resources.
#![forbid(unsafe_code)]

pub mod bench;
pub mod certgen;
pub mod cli;
pub mod config;
pub mod events;
pub mod policy;
pub mod selfcert;
pub mod server;
pub mod status;
