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

    /// Completes when shutdown is asked for (or every trigger is gone).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|v| *v).await;
    }
}
