//! [`Presence`]: who is subscribed to a channel, on every node.
//!
//! A separate seam from the [`Broker`](super::Broker), as centrifuge's `PresenceManager` is
//! from its broker: an engine may carry publications without keeping presence (the default
//! methods refuse with [`EngineError::Invalid`]).
//!
//! The unit is a *membership*: one session of one user subscribed to one channel, named by a
//! session id unique across nodes and restarts (the node id, a random instance and a counter,
//! without spaces). Memberships live for a ttl unless their node refreshes them (its heartbeat
//! does, in batches), so those of a node that died without cleaning up go away on their own.
//! The engine keeps per channel how many live memberships each user has, and reports when a
//! user's count goes from 0 to 1 (*joined*) or back to 0 (*left*), whichever node caused it:
//! that is what nodes announce, coalesced, over [`Presence::announce`].
//!
//! Every method takes many memberships at once: a node batches what its sessions did, so a
//! reconnect storm costs a few round trips, not one per session.

use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};

use super::EngineError;

/// One session's membership of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership<'a> {
    /// The channel.
    pub channel: &'a str,
    /// The session: unique across nodes and restarts, without spaces.
    pub session: &'a str,
    /// Its user.
    pub user: &'a str,
}

/// Users whose presence on a channel changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresenceChanges {
    /// (channel, user) pairs whose user went from no live membership to one.
    pub joined: Vec<(String, String)>,
    /// (channel, user) pairs whose user's last live membership went.
    pub left: Vec<(String, String)>,
}

impl PresenceChanges {
    /// Adds `other`'s changes after these.
    pub fn extend(&mut self, other: PresenceChanges) {
        self.joined.extend(other.joined);
        self.left.extend(other.left);
    }
}

/// The users present on a channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresenceList {
    /// (user, live sessions), sorted by user, at most the `limit` asked for.
    pub users: Vec<(String, u64)>,
    /// How many users there are in all.
    pub total: u64,
}

const UNSUPPORTED: &str = "presence needs the Redis or in-memory engine";

/// Presence of users on channels, across nodes.
pub trait Presence: Send + Sync + 'static {
    /// Adds the memberships, or refreshes those that exist, so that each lives `ttl` from
    /// now; returns the users who joined by it (a membership that had expired counts anew).
    fn add<'a>(
        &'a self,
        members: &'a [Membership<'a>],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<PresenceChanges, EngineError>> {
        let _ = (members, ttl);
        unsupported().boxed()
    }

    /// Removes the memberships (those already gone are skipped); returns the users who left
    /// by it.
    fn remove<'a>(
        &'a self,
        members: &'a [Membership<'a>],
    ) -> BoxFuture<'a, Result<PresenceChanges, EngineError>> {
        let _ = members;
        unsupported().boxed()
    }

    /// Drops at most `max` expired memberships of each channel (those of a node that stopped
    /// refreshing them); returns the users who left by it.
    fn sweep<'a>(
        &'a self,
        channels: &'a [&'a str],
        max: usize,
    ) -> BoxFuture<'a, Result<PresenceChanges, EngineError>> {
        let _ = (channels, max);
        unsupported().boxed()
    }

    /// The users with a live membership of `channel` and their session counts: the first
    /// `limit` by user id, and how many there are. Expired memberships are not counted, swept
    /// or not.
    fn members<'a>(
        &'a self,
        channel: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<PresenceList, EngineError>> {
        let _ = (channel, limit);
        unsupported().boxed()
    }

    /// Tells every node subscribed to `channel` who joined and left it: their broker's
    /// handler gets [`BrokerHandler::on_presence`](super::BrokerHandler::on_presence).
    fn announce<'a>(
        &'a self,
        channel: &'a str,
        joined: &'a [String],
        left: &'a [String],
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        let _ = (channel, joined, left);
        unsupported().boxed()
    }
}

async fn unsupported<T>() -> Result<T, EngineError> {
    Err(EngineError::Invalid(UNSUPPORTED.to_owned()))
}

/// The payload of an announcement on the wire between nodes: `{"joined":[…],"left":[…]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Announcement {
    /// Users who joined.
    #[serde(default)]
    pub joined: Vec<String>,
    /// Users who left.
    #[serde(default)]
    pub left: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;
    impl Presence for Nothing {}

    #[tokio::test]
    async fn an_engine_without_presence_refuses_clearly() {
        let err = Nothing.members("c", 10).await.unwrap_err();
        assert_eq!(err, EngineError::Invalid(UNSUPPORTED.to_owned()));
        assert!(Nothing.add(&[], Duration::from_secs(1)).await.is_err());
    }
}
