//! The `hoist` command: parse arguments, then hand over to the TUI or a command.

use std::process::ExitCode;

use clap::Parser;
use hoist::cli::{self, Cli};

fn main() -> ExitCode {
    // Before anything holds a secret.
    hoist::auth::secrets::keep_out_of_core_dumps();
    // Usage errors exit 2 (clap's own code), as documented.
    let cli = Cli::parse();
    // The prompt path: no keyring, no runtime, no network.
    if matches!(cli.command, Some(hoist::cli::Command::Prompt)) {
        hoist::prompt::run();
        return ExitCode::SUCCESS;
    }
    // Must run before any thread starts: the kernel keyring is per process.
    hoist::auth::secrets::prepare();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("hoist: cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(cli::run(cli));
    cli::shut_down(runtime);
    hoist::commands::signals::end_as_signalled();
    code
}
