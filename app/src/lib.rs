//! What the `courier` command does, one module per subcommand; the binary only parses arguments and calls these.

pub mod bench;
pub mod config;
pub mod dead_letters;
pub mod groups;
pub mod inbox;
pub mod lag;
pub mod messages;
pub mod metrics;
pub mod migrate;
pub mod presence;
pub mod processors;
pub mod produce;
pub mod progress;
pub mod rebuild;
pub mod registry;
pub mod replay;
pub mod run;
pub mod search;
pub mod token;
pub mod topics;
pub mod up;
pub mod views;
