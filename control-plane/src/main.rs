//! The `control-plane` binary. Everything lives in the library (see `lib.rs`), so tests and
//! other binaries can start the same server; this file only installs the TLS provider, parses
//! the configuration and runs.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    // Guard against a dependency enabling rustls' `ring` provider next to aws-lc-rs, which would
    // make the first TLS connection panic (ARCHITECTURE.md, Dependency notes, D1).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let config = control_plane::config::Config::parse();
    match control_plane::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One readable line with the cause chain; no backtrace for a configuration mistake.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
