//! The reads of the gateway's group-less tails of the log (conversations,
//! presence): every gateway reads every partition from where it started, and
//! rides out a log outage instead of failing.

use std::time::Duration;

use courier_pipeline::shutdown::Shutdown;
use courier_pipeline::{ConsumedRecord, EventLog};

/// How long a read waits for records before coming back empty.
const WAIT: Duration = Duration::from_millis(200);

/// One partition's tail reads, with the back-off of failed ones.
pub(crate) struct TailReads {
    topic: &'static str,
    partition: u32,
    backoff: Duration,
}

impl TailReads {
    pub(crate) fn new(topic: &'static str, partition: u32) -> Self {
        TailReads {
            topic,
            partition,
            backoff: Duration::from_millis(100),
        }
    }

    /// Up to 1,000 records from `next` (none after [`WAIT`] without any). A failed
    /// read is logged and tried again after a pause that doubles up to 5 s, and
    /// starts again at 100 ms once a read succeeds. `None` once `stop` fires.
    pub(crate) async fn next(
        &mut self,
        log: &dyn EventLog,
        next: u64,
        stop: &mut Shutdown,
    ) -> Option<Vec<ConsumedRecord>> {
        loop {
            let read = tokio::select! {
                r = log.read(self.topic, self.partition, next, 1000, WAIT) => r,
                _ = stop.wait() => return None,
            };
            match read {
                Ok(records) => {
                    self.backoff = Duration::from_millis(100);
                    return Some(records);
                }
                Err(e) => {
                    tracing::warn!(error = %e, topic = self.topic, partition = self.partition, "gateway tail: reading the log failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(self.backoff) => {}
                        _ = stop.wait() => return None,
                    }
                    self.backoff = (self.backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
