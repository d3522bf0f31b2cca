//! The subcommands of the `gracerpc` binary.

pub mod bench;
pub mod call;
pub mod load;
pub mod logger;
pub mod registry;
pub mod rollout;
pub mod serve;
pub mod summary;
