//! The ceiling of the inbox view: the batches the inbox processor writes, written
//! straight into a fresh store through the same store code
//! ([`InboxStore::write`]) — no log, no fold, no state loading.
//!
//! Shared by the inbox benchmark (`sinks/benches/inbox.rs`) and `courier bench
//! --baselines`.

use std::borrow::Borrow;
use std::time::{Duration, Instant};

use courier_processors::inbox::store::{InboxBatch, InboxStore};
use courier_processors::store::StoreError;

/// What [`write`] wrote.
#[derive(Debug, Clone, Copy, Default)]
pub struct Written {
    /// Batches written.
    pub batches: u64,
    /// Rows of them: messages, participants, inbox rows and states.
    pub rows: u64,
    /// Time spent in `write` only (not in producing the batches).
    pub elapsed: Duration,
}

/// The rows of a batch: messages, participants, inbox rows and states.
pub fn rows(batch: &InboxBatch) -> u64 {
    (batch.messages.len() + batch.participants.len() + batch.inbox.len() + batch.states.len())
        as u64
}

/// Writes every batch into `store` in order, timing only the writes: `batches`
/// may compute each batch lazily (a fold) without the fold being counted.
pub async fn write<S: InboxStore + ?Sized>(
    store: &mut S,
    batches: impl IntoIterator<Item = impl Borrow<InboxBatch>>,
) -> Result<Written, StoreError> {
    let mut w = Written::default();
    for b in batches {
        let b = b.borrow();
        let started = Instant::now();
        store.write(b).await?;
        w.elapsed += started.elapsed();
        w.batches += 1;
        w.rows += rows(b);
    }
    Ok(w)
}
