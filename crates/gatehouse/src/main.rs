//! The `gatehouse` binary: parses the command line, loads configuration, wires the library crates.

mod access_reload;
mod cli;
mod config;
mod keys_cmd;
mod memory;
mod oauth_cmd;
mod output;
mod scan;
mod signing_key_cmd;
mod supervisor;
mod up;
mod users_cmd;
mod webhooks_cmd;

use std::process::ExitCode;

use clap::Parser;

// A proxy allocates and frees small buffers on every request from two worker threads; mimalloc
// does that with less contention than the system allocator (measured in BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    // Before the configuration is read: the default connection caps derive from this limit.
    gatehouse_server::listener::raise_open_file_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
