//! The `hoist` command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Just-in-time privileged access from the terminal.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a demo broker with demo identities and history on a free loopback port.
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("hoist: cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Demo => {
                let demo = hoist::demo::Demo::start().await?;
                println!("hoist demo broker at {}", demo.url());
                println!("tokens: demo-alice demo-bob demo-carol demo-dave demo-erin");
                println!(
                    "try: curl -H 'Authorization: Bearer demo-alice' {}/v1/roles",
                    demo.url()
                );
                println!("Ctrl-C stops it.");
                tokio::signal::ctrl_c().await?;
                demo.server.stop().await;
                anyhow::Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("hoist: {err:#}");
            ExitCode::FAILURE
        }
    }
}
