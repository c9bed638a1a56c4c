//! Graceful shutdown as a value passed in: a trigger, and receivers that tasks await.

use tokio::sync::watch;

/// Fires shutdown for every [`Shutdown`] made from it.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// Tells a task that it should finish its batch, flush, commit and return.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new trigger and its first receiver.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    /// Asks every receiver to stop.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    /// Another receiver.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    /// A receiver that never fires (tests, one-shot commands).
    pub fn never() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        // Keep the sender alive forever so `wait` pends instead of seeing a closed
        // channel.
        std::mem::forget(tx);
        Shutdown(rx)
    }

    /// Whether shutdown was asked for.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes when shutdown is asked for. If every trigger is gone, shutdown can
    /// never be asked for any more and this pends forever — returning would make a
    /// `select!` loop on it spin.
    pub async fn wait(&mut self) {
        if self.0.wait_for(|v| *v).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[tokio::test]
    async fn a_dropped_trigger_never_completes_wait() {
        let (trigger, mut stop) = super::channel();
        drop(trigger);
        let waited = tokio::time::timeout(Duration::from_millis(50), stop.wait()).await;
        assert!(
            waited.is_err(),
            "wait must pend, not return, once no trigger exists"
        );
        assert!(!stop.is_triggered());
    }

    #[tokio::test]
    async fn trigger_completes_every_wait() {
        let (trigger, mut a) = super::channel();
        let mut b = trigger.subscribe();
        trigger.trigger();
        a.wait().await;
        b.wait().await;
        assert!(a.is_triggered() && b.is_triggered());
    }
}
