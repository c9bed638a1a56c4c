//! Push delivery's adapters: the HTTP provider ([`HttpProvider`]) and the store of
//! sent job ids in RocksDB ([`RocksSentStore`]).

mod http;
mod sent;

pub use http::{ClientTls, HttpProvider};
pub use sent::RocksSentStore;
