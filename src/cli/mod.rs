//! The subcommands of the `gracerpc` binary.

pub mod logger;
pub mod serve;
