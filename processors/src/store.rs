//! What every view store port shares: its error type.

/// A view store failure.
#[derive(Debug, thiserror::Error)]
#[error("{store}: {message}")]
pub struct StoreError {
    /// Which store (`presence/rocksdb`, ...).
    pub store: &'static str,
    /// What failed.
    pub message: String,
    /// Whether trying again may succeed (a server that is down or overloaded).
    pub retryable: bool,
}

impl StoreError {
    /// A failure worth retrying.
    pub fn retryable(store: &'static str, message: impl ToString) -> Self {
        StoreError {
            store,
            message: message.to_string(),
            retryable: true,
        }
    }

    /// A failure retrying cannot fix (corrupt data, bad configuration).
    pub fn fatal(store: &'static str, message: impl ToString) -> Self {
        StoreError {
            store,
            message: message.to_string(),
            retryable: false,
        }
    }
}

impl From<StoreError> for courier_pipeline::runner::HandlerError {
    fn from(e: StoreError) -> Self {
        courier_pipeline::runner::HandlerError {
            retryable: e.retryable,
            message: e.to_string(),
        }
    }
}
