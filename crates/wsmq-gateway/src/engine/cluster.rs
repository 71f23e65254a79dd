//! [`ClusterState`]: what every node shares besides messages.

use futures_util::future::BoxFuture;
use tokio::sync::broadcast;
use wsmq_proto::NodeHeartbeat;

use super::EngineError;

/// The access-token registry, revocations and node heartbeats.
pub trait ClusterState: Send + Sync + 'static {
    /// Whether `token` (hex) is registered for `user` (`wsmq:access:{user}`).
    fn is_access_token_registered<'a>(
        &'a self,
        user: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<bool, EngineError>>;

    /// User ids whose access was revoked, on any node, from now on.
    fn revocations(&self) -> broadcast::Receiver<String>;

    /// Writes this node's heartbeat with a TTL (no-op for a single-node engine).
    fn write_heartbeat<'a>(
        &'a self,
        heartbeat: &'a NodeHeartbeat,
    ) -> BoxFuture<'a, Result<(), EngineError>>;

    /// Removes this node's heartbeat on a clean shutdown.
    fn remove_heartbeat<'a>(&'a self, node_id: &'a str) -> BoxFuture<'a, Result<(), EngineError>>;
}
