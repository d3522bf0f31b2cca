//! The `gracerpc` command line.

mod cli;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

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

/// Shown under every command's `--help`.
const FOOTER: &str = "Environment:\n  GRACERPC_LOG  log level on stderr: error, warn, info \
                      (default), debug, trace\n\nDurations: a number with a unit (250ms, 1.5s, \
                      10us, 2m); a bare number is seconds.";

fn main() {
    let cmd = Cli::command()
        .after_help(FOOTER)
        .mut_subcommands(|c| c.after_help(FOOTER));
    let cli = Cli::from_arg_matches(&cmd.get_matches()).unwrap_or_else(|e| e.exit());
    let code = match cli.command {
        Command::Serve(args) => cli::serve::run(args),
        Command::Call(args) => cli::call::run(args),
        Command::Bench(args) => cli::bench::run(args),
        Command::Rollout(args) => cli::rollout::run(args),
    };
    std::process::exit(code);
}
