//! One module per subcommand.

pub mod lag;
pub mod presence;
pub mod produce;
pub mod replay;
pub mod run;
pub mod topics;
