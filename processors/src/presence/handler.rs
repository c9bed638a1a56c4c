//! Drives the presence fold from the runner: decode, fold, write rows with their
//! checkpoint, dead-letter what cannot be applied.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use courier_pipeline::runner::{Handler, HandlerError};
use courier_pipeline::{ConsumedRecord, EventLog, TopicPartition, dead_letter, replay};

use super::{PresenceRow, PresenceStore, fold};

/// The presence processor over a store port.
pub struct PresenceProcessor<S> {
    store: S,
    /// Where dead letters go.
    log: Arc<dyn EventLog>,
    /// Next offset to apply per owned partition, as stored with the rows.
    applied: HashMap<u32, u64>,
}

impl<S: PresenceStore> PresenceProcessor<S> {
    /// A processor writing to `store`, dead-lettering through `log`.
    pub fn new(store: S, log: Arc<dyn EventLog>) -> Self {
        PresenceProcessor {
            store,
            log,
            applied: HashMap::new(),
        }
    }

    /// The store (for queries after a run).
    pub fn store(&self) -> &S {
        &self.store
    }
}

#[async_trait]
impl<S: PresenceStore> Handler for PresenceProcessor<S> {
    async fn on_assigned(
        &mut self,
        tps: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, u64)>, HandlerError> {
        // The checkpoint written with the rows is the truth: the group's commit may
        // lag it by a batch after a crash.
        let mut seeks = Vec::new();
        for tp in tps {
            if let Some(next) = self.store.checkpoint(tp.partition)? {
                self.applied.insert(tp.partition, next);
                seeks.push((tp.clone(), next));
            }
        }
        Ok(seeks)
    }

    async fn on_revoked(&mut self, tps: &[TopicPartition]) -> Result<(), HandlerError> {
        for tp in tps {
            self.applied.remove(&tp.partition);
        }
        Ok(())
    }

    async fn handle(&mut self, batch: &[ConsumedRecord]) -> Result<(), HandlerError> {
        let mut latest: HashMap<String, PresenceRow> = HashMap::new();
        let mut rejected = Vec::new();
        let mut next: BTreeMap<u32, u64> = BTreeMap::new();
        for r in batch {
            next.insert(r.partition, r.offset + 1);
            // Records at or below the checkpoint were applied before a crash.
            if self
                .applied
                .get(&r.partition)
                .is_some_and(|cp| r.offset < *cp)
            {
                continue;
            }
            match replay::decode(r)
                .map_err(|e| e.to_string())
                .and_then(|e| fold(&e))
            {
                Ok(row) => {
                    latest.insert(row.user_id.clone(), row);
                }
                Err(reason) => rejected.push((r, reason)),
            }
        }
        dead_letter::send(&*self.log, "presence", &rejected)
            .await
            .map_err(|e| HandlerError::retryable(format!("writing dead letters: {e}")))?;
        let rows: Vec<_> = latest.into_values().collect();
        let checkpoints: Vec<_> = next.into_iter().collect();
        self.store.write(&rows, &checkpoints)?;
        self.applied.extend(checkpoints);
        Ok(())
    }
}
