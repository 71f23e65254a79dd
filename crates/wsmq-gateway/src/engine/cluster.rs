//! [`ClusterState`]: what every node shares besides messages.
//!
//! Revocation rests on two records per user, both written by `wsmq-cli token revoke` in one
//! step: the access-token registry (`wsmq:access:{user}`, emptied) and the revocation mark
//! (`wsmq:revoked:{user}`, the revocation time, kept for
//! [`REVOCATION_TTL_SECS`](wsmq_proto::keys::REVOCATION_TTL_SECS)). Announcements on
//! `wsmq:revoke` only make nodes act at once; the records are what every check reads, so an
//! announcement that is lost costs time, never the revocation itself.

use futures_util::future::BoxFuture;
use tokio::sync::broadcast;
use wsmq_proto::NodeHeartbeat;

use super::EngineError;

/// The access-token registry, revocations and node heartbeats.
pub trait ClusterState: Send + Sync + 'static {
    /// Reads, in one round trip, the engine's clock and then, for each query in order, the
    /// user's revocation mark and (when the query names one) whether the access token (hex)
    /// is registered for the user.
    ///
    /// The clock is read before the registry, so a token found registered was still
    /// registered at `now`: a revocation after that is marked at `now` or later. That is what
    /// lets a JWT minted with `iat = now` be caught by any later revocation, whatever the
    /// gateway's own clock says.
    fn check_credentials<'a>(
        &'a self,
        queries: &'a [CredentialQuery<'a>],
    ) -> BoxFuture<'a, Result<CredentialChecks, EngineError>>;

    /// Revocations seen by this node from now on: users revoked on any node, and the notice
    /// that some may have been missed.
    fn revocations(&self) -> broadcast::Receiver<Revocation>;

    /// Writes this node's heartbeat with a TTL (no-op for a single-node engine).
    fn write_heartbeat<'a>(
        &'a self,
        heartbeat: &'a NodeHeartbeat,
    ) -> BoxFuture<'a, Result<(), EngineError>>;

    /// Removes this node's heartbeat on a clean shutdown.
    fn remove_heartbeat<'a>(&'a self, node_id: &'a str) -> BoxFuture<'a, Result<(), EngineError>>;
}

/// One credential to look up with [`ClusterState::check_credentials`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialQuery<'a> {
    /// The user id.
    pub user: &'a str,
    /// An access token (lowercase hex) whose registration to check, if any.
    pub access_token: Option<&'a str>,
}

/// The answer to one [`CredentialQuery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CredentialCheck {
    /// The user's revocation mark: when the user was last revoked, Unix seconds.
    pub revoked_at: Option<u64>,
    /// Whether the access token is registered (`None` when the query named none).
    pub registered: Option<bool>,
}

/// The answers of one [`ClusterState::check_credentials`] call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CredentialChecks {
    /// The engine's clock, Unix seconds, read before the registry.
    pub now: u64,
    /// One answer per query, in order.
    pub checks: Vec<CredentialCheck>,
}

/// What the revocation stream carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// This user was revoked: close the user's sessions.
    User(String),
    /// Announcements may have been lost (the engine's link was down or replaced): check every
    /// session against the records.
    Missed,
}
