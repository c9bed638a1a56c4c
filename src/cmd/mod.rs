//! One module per subcommand.

pub mod bench;
pub mod inbox;
pub mod lag;
pub mod messages;
pub mod migrate;
pub mod presence;
pub mod produce;
pub mod rebuild;
pub mod replay;
pub mod run;
pub mod search;
pub mod token;
pub mod topics;
pub mod up;
