//! The heartbeat record each gateway node keeps under `wsmq:node:{id}`.

use serde::{Deserialize, Serialize};

/// What a node says about itself every few seconds; read by `wsmq-cli nodes`.
///
/// Stored as JSON with a TTL of [`NODE_TTL_SECS`](crate::keys::NODE_TTL_SECS), so a node that
/// dies disappears from the list on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeHeartbeat {
    /// The node id (`--node-id`).
    pub id: String,
    /// The address the node listens on, as configured.
    pub addr: String,
    /// Start time, Unix seconds.
    pub started: u64,
    /// Open WebSocket sessions.
    pub connections: u64,
    /// Queue and channel subscriptions over all sessions.
    pub subscriptions: u64,
    /// The gateway version.
    pub version: String,
    /// Whether the node is draining (stopping; new clients should go elsewhere).
    #[serde(default)]
    pub draining: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_round_trips_and_tolerates_missing_draining() {
        let hb = NodeHeartbeat {
            id: "a".into(),
            addr: "0.0.0.0:3000".into(),
            started: 1,
            connections: 2,
            subscriptions: 3,
            version: "0.1.0".into(),
            draining: false,
        };
        let json = serde_json::to_string(&hb).unwrap();
        assert_eq!(serde_json::from_str::<NodeHeartbeat>(&json).unwrap(), hb);
        let old =
            r#"{"id":"a","addr":"x","started":1,"connections":0,"subscriptions":0,"version":"0"}"#;
        assert!(!serde_json::from_str::<NodeHeartbeat>(old).unwrap().draining);
    }
}
