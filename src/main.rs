//! The `gracerpc` command line.

use clap::Parser;

/// gracerpc: RPC nodes that restart under full load without a caller seeing an error.
#[derive(Parser, Debug)]
#[command(name = "gracerpc", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
