#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc malloc: under concurrent load glibc's arenas spent about a quarter
/// of the webhook's CPU in malloc/free (fastbin consolidation on every large allocation, arena
/// locks); mimalloc's thread-local free lists made /mutate ~40 % faster at c=64
/// (docs/benchmarks.md, optimisation log).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    if !wfe_admission::install_crypto_provider() {
        eprintln!("error: a rustls crypto provider was already installed");
        return ExitCode::FAILURE;
    }
    wfe_admission::cli::run(wfe_admission::cli::Cli::parse())
}
