//! Reliability and security: bad input against the real HTTPS server, faults under a
//! bounded loopback load, a soak (`WFE_SOAK_SECONDS`, short by default), allowed results against
//! the CRD schema, and code hygiene. Figures are printed (`-- --nocapture`) and recorded in
//! docs/reliability.md.

mod support;

#[path = "reliability/bad_input.rs"]
mod bad_input;
#[path = "reliability/faults.rs"]
mod faults;
#[path = "reliability/hygiene.rs"]
mod hygiene;
#[path = "reliability/load.rs"]
mod load;
#[path = "reliability/process.rs"]
mod process;
#[path = "reliability/regressions.rs"]
mod regressions;
#[path = "reliability/schema.rs"]
mod schema;
#[path = "reliability/soak.rs"]
mod soak;
