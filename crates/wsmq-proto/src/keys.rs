//! Names of the Redis keys and pub/sub channels that wsmq itself owns (outside the rsmq layout).
//!
//! The gateway, the CLI and any other program that issues tokens or lists nodes must agree
//! on these names, so they live here as pure functions rather than in each binary.
//!
//! | key / channel | type | written by | meaning |
//! |---|---|---|---|
//! | `wsmq:access:{user}` | SET | `wsmq-cli token issue` | the user's valid access tokens (hex) |
//! | `wsmq:revoke` | pub/sub | `wsmq-cli token revoke` | payload: a user id whose sessions must close (4003) |
//! | `wsmq:revoked:{user}` | STRING (Unix seconds, with TTL) | `wsmq-cli token revoke` | the user's revocation mark: every JWT issued at or before it is refused |
//! | `wsmq:node:{id}` | STRING (JSON, with TTL) | each gateway node | heartbeat: [`NodeHeartbeat`](crate::NodeHeartbeat) |
//! | `wsmq:ch:{channel}` | pub/sub | gateways, API, CLI | broadcast channel messages |
//! | `wsmq:chh:{channel}` | pub/sub | gateways | publications of channels with history: `{offset} {epoch} {sent} {body}` |
//! | `wsmq:hist:{channel}` | STREAM (with TTL) | gateways | a channel's last publications, entry id `{offset}-0`, fields `m` (body) and `t` (sent, Unix ms) |
//! | `wsmq:hist:{channel}:pos` | HASH (with TTL) | gateways | the channel's `epoch` and last `offset` |

/// Prefix of every key and channel wsmq owns.
pub const PREFIX: &str = "wsmq:";

/// The pub/sub channel on which revocations are announced; the payload is the user id.
pub const REVOKE_CHANNEL: &str = "wsmq:revoke";

/// Seconds a revocation mark lives: the longest JWT lifetime the gateways accept
/// ([`MAX_JWT_LIFETIME_SECS`](crate::token::MAX_JWT_LIFETIME_SECS)) plus an hour for clock
/// leeway, so that every token issued before the revocation has expired when its mark goes.
pub const REVOCATION_TTL_SECS: u64 = crate::token::MAX_JWT_LIFETIME_SECS + 3600;

/// `SCAN MATCH` pattern of all node heartbeat keys.
pub const NODE_PATTERN: &str = "wsmq:node:*";

/// Seconds a heartbeat key lives; nodes refresh it well within this.
pub const NODE_TTL_SECS: u64 = 15;

/// The SET of access tokens registered for `user`.
pub fn access_tokens(user: &str) -> String {
    format!("wsmq:access:{user}")
}

/// The revocation mark of `user`: when the user was last revoked, Unix seconds.
pub fn revoked(user: &str) -> String {
    format!("wsmq:revoked:{user}")
}

/// The heartbeat key of node `id`.
pub fn node(id: &str) -> String {
    format!("wsmq:node:{id}")
}

/// The Redis pub/sub channel that carries broadcast channel `channel`.
pub fn channel(channel: &str) -> String {
    format!("wsmq:ch:{channel}")
}

/// The broadcast channel name inside a Redis pub/sub channel name, if it is one of ours.
pub fn channel_name(redis_channel: &str) -> Option<&str> {
    redis_channel.strip_prefix("wsmq:ch:")
}

/// The Redis pub/sub channel that carries the publications of channel `channel` when it has
/// history. A separate channel, so that the payload of `wsmq:ch:{channel}` stays the bare
/// body that nodes, tools and scripts unaware of history expect.
pub fn history_channel(channel: &str) -> String {
    format!("wsmq:chh:{channel}")
}

/// The broadcast channel name inside a history pub/sub channel name, if it is one.
pub fn history_channel_name(redis_channel: &str) -> Option<&str> {
    redis_channel.strip_prefix("wsmq:chh:")
}

/// The STREAM that holds channel `channel`'s history. The braces make it and
/// [`history_position`] one hash slot, so one script may touch both on a Redis Cluster.
pub fn history_stream(channel: &str) -> String {
    format!("wsmq:hist:{{{channel}}}")
}

/// The HASH with the `epoch` and last `offset` of channel `channel`'s history.
pub fn history_position(channel: &str) -> String {
    format!("wsmq:hist:{{{channel}}}:pos")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_round_trip() {
        assert_eq!(channel("room-1"), "wsmq:ch:room-1");
        assert_eq!(channel_name(&channel("room-1")), Some("room-1"));
        assert_eq!(channel_name("rsmq:rt:q"), None);
        assert_eq!(history_channel_name(&history_channel("r")), Some("r"));
        assert_eq!(channel_name(&history_channel("r")), None);
        assert_eq!(history_channel_name(&channel("r")), None);
        assert_eq!(history_stream("r"), "wsmq:hist:{r}");
        assert_eq!(history_position("r"), "wsmq:hist:{r}:pos");
    }

    #[test]
    fn registry_keys() {
        assert_eq!(access_tokens("u1"), "wsmq:access:u1");
        assert_eq!(revoked("u1"), "wsmq:revoked:u1");
        assert_eq!(node("a-1"), "wsmq:node:a-1");
        assert!(node("x").starts_with(NODE_PATTERN.trim_end_matches('*')));
    }
}
