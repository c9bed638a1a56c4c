//! Presence in the gateway: the presence view behind `GET /v1/presence/{user_id}`
//! (a small port, so the store of the presence processor plugs in at wiring
//! time: `courier up` wires its local RocksDB table; with none wired, the
//! endpoint answers 503), who may see whose presence, and the live fan-out of
//! presence changes to those users.
//!
//! Contacts are users who are, now, members of a conversation together. They
//! are read from the views (a user's inbox rows, then those conversations'
//! states), so presence shows nobody who talks to whom beyond what a user's own
//! conversations already show them.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use courier_pipeline::shutdown::Shutdown;
use courier_pipeline::{ConsumedRecord, EventLog, LogError};
use courier_processors::inbox::store::InboxStore;
use courier_processors::presence::PresenceRow;
use courier_processors::store::StoreError;
use courier_schemas::proto::event::Body;
use courier_topics::PRESENCE;

use crate::live::{Hub, Live};
use crate::resume::Topic;
use crate::tail::TailReads;

/// Answers `GET /v1/presence/{user_id}`.
#[async_trait]
pub trait PresenceViews: Send + Sync {
    /// A user's latest presence; `None` for a user never seen.
    async fn presence(&self, user: &str) -> Result<Option<PresenceRow>, StoreError>;
}

/// The users who may see `user`'s presence: `user`, and everyone who is a
/// member, now, of a conversation `user` is a member of now.
pub async fn audience(views: &dyn InboxStore, user: &str) -> Result<BTreeSet<String>, StoreError> {
    let ids: Vec<String> = views
        .inbox_rows(user)
        .await?
        .into_iter()
        .map(|r| r.conversation_id)
        .collect();
    let mut users = BTreeSet::from([user.to_string()]);
    for state in views.load_states(&ids).await?.into_iter().flatten() {
        let members = state.members();
        if members.contains(&user) {
            users.extend(members.into_iter().map(str::to_string));
        }
    }
    Ok(users)
}

/// Starts tailing every partition of `courier.presence.v1` at its current end:
/// each presence event goes live to the connected users of its [`audience`].
/// The tails stop with `stop`.
pub async fn start_tails(
    log: Arc<dyn EventLog>,
    views: Arc<dyn InboxStore>,
    hub: Arc<Hub>,
    stop: Shutdown,
) -> Result<(), LogError> {
    for p in 0..log.partitions(PRESENCE)? {
        let (_, high) = log.watermarks(PRESENCE, p).await?;
        hub.start_tail(Topic::Presence, p, high);
        let tail = tail(
            log.clone(),
            views.clone(),
            hub.clone(),
            p,
            high,
            stop.clone(),
        );
        tokio::spawn(tail);
    }
    Ok(())
}

/// Delivers one record of the presence topic live, to its audience.
async fn deliver(views: &dyn InboxStore, hub: &Hub, p: u32, r: &ConsumedRecord) {
    // Working out an audience reads the views: only while someone listens.
    if hub.is_empty() {
        return;
    }
    let Ok(event) = courier_schemas::decode(&r.value) else {
        return;
    };
    let Some(Body::Presence(presence)) = &event.body else {
        return;
    };
    match audience(views, &presence.user_id).await {
        Ok(users) => hub.deliver(
            users.iter().map(String::as_str),
            Live::new(Topic::Presence, p, r.offset, &event),
        ),
        Err(e) => {
            tracing::warn!(error = %e, user = %presence.user_id, "gateway presence tail: reading the views failed; this presence change is not delivered live")
        }
    }
}

async fn tail(
    log: Arc<dyn EventLog>,
    views: Arc<dyn InboxStore>,
    hub: Arc<Hub>,
    p: u32,
    mut next: u64,
    mut stop: Shutdown,
) {
    let mut reads = TailReads::new(PRESENCE, p);
    while let Some(records) = reads.next(&*log, next, &mut stop).await {
        for r in records {
            if r.offset < next {
                continue;
            }
            next = r.offset + 1;
            hub.claim(Topic::Presence, p, next);
            deliver(&*views, &hub, p, &r).await;
            hub.delivered(Topic::Presence, p, next);
        }
    }
}
