//! The `gracerpc` command line.

mod cli;

use clap::{Parser, Subcommand};

pub(crate) use cli::logger;

/// gracerpc: RPC nodes that restart under full load without a caller seeing an error.
#[derive(Parser, Debug)]
#[command(name = "gracerpc", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Serve(cli::serve::ServeArgs),
    Call(cli::call::CallArgs),
    Bench(cli::bench::BenchArgs),
    Rollout(cli::rollout::RolloutArgs),
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Serve(args) => cli::serve::run(args),
        Command::Call(args) => cli::call::run(args),
        Command::Bench(args) => cli::bench::run(args),
        Command::Rollout(args) => cli::rollout::run(args),
    };
    std::process::exit(code);
}
