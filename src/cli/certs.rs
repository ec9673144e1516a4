//! `wfe-admission certs`: certificate material for a dev cluster, `provided` mode or tests.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::certgen::{self, Validity};

#[derive(Debug, clap::Args)]
pub struct CertsArgs {
    /// Folder to write ca.crt, ca.key, tls.crt and tls.key into.
    #[arg(long, env = "WFE_CERTS_OUT", default_value = "certs/dev")]
    pub out: PathBuf,
    /// Names the serving certificate covers (DNS names or IP addresses); repeat the flag.
    #[arg(long = "host", env = "WFE_CERTS_HOSTS", value_delimiter = ',', default_values_t = certgen::default_hosts())]
    pub hosts: Vec<String>,
    /// Days the certificates stay valid.
    #[arg(long, env = "WFE_CERTS_DAYS", default_value_t = 365)]
    pub days: i64,
}

pub fn run(args: CertsArgs) -> ExitCode {
    let written = certgen::generate(&args.hosts, Validity::days(args.days))
        .and_then(|bundle| certgen::write(&bundle, &args.out));
    match written {
        Ok(()) => {
            println!(
                "wrote ca.crt, ca.key, tls.crt, tls.key to {} (hosts: {})",
                args.out.display(),
                args.hosts.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
