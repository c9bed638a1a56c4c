//! courier-chaos: seeded fault schedules against the `courier` binary, and the
//! reference every view is compared with after each one.
//!
//! - [`model`]: the reference fold of docs/DESIGN.md's semantics, written apart
//!   from `processors/` (it shares no code with it);
//! - [`schedule`]: what one seed means: the traffic's shape, the phases and the
//!   faults, printable so a failing run can be replayed with `--seed N`;
//! - [`check`]: the comparisons of what the views answer with the model.
//!
//! The binary (`src/main.rs`, feature `driver`) runs schedules: real `courier`
//! processes on real RocksDB, a push provider of its own on 127.0.0.1:0.

pub mod check;
pub mod model;
pub mod rng;
pub mod schedule;
