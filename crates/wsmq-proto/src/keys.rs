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
//! | `wsmq:presence:{channel}` | ZSET (with TTL) | gateways | one member per subscribed session, `{session} {user}`, scored by when it expires (Unix ms) unless its node refreshes it |
//! | `wsmq:presence:{channel}:users` | HASH (with TTL) | gateways | user → how many of the zset's members are theirs |
//! | `wsmq:pres:{channel}` | pub/sub | gateways | who joined and left the channel: JSON `{"joined":[…],"left":[…]}`, at most one per node per second |
//!
//! On a Redis Cluster the user's two keys carry the user id as their hash tag
//! (`wsmq:access:{u}`, `wsmq:revoked:{u}`, braces literal: [`access_tokens_tagged`],
//! [`revoked_tagged`]), so a revocation's script touches one slot; and the three pub/sub channels of a broadcast channel are sharded
//! (`SPUBLISH`/`SSUBSCRIBE`) and braced, `wsmq:ch:{c}` with literal braces ([`Carrier`]), so
//! that they hash to the slot of the channel's history and presence keys.

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

/// [`access_tokens`] on a Redis Cluster: `wsmq:access:{user}` with literal braces, so that
/// it shares the user's hash slot with [`revoked_tagged`] and one script (a revocation) may
/// touch both.
pub fn access_tokens_tagged(user: &str) -> String {
    format!("wsmq:access:{{{user}}}")
}

/// [`revoked`] on a Redis Cluster: `wsmq:revoked:{user}` with literal braces.
pub fn revoked_tagged(user: &str) -> String {
    format!("wsmq:revoked:{{{user}}}")
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

/// The ZSET of channel `channel`'s presence: one member `{session} {user}` per subscribed
/// session (a session id holds no space), scored by its expiry, Unix ms. Braced like the
/// history keys, so [`presence_users`] shares its hash slot.
pub fn presence(channel: &str) -> String {
    format!("wsmq:presence:{{{channel}}}")
}

/// The HASH user → session count of channel `channel`'s presence, kept with [`presence`] by
/// the same scripts.
pub fn presence_users(channel: &str) -> String {
    format!("wsmq:presence:{{{channel}}}:users")
}

/// Splits a [`presence`] member into the session id and the user.
pub fn split_presence_member(member: &str) -> Option<(&str, &str)> {
    member.split_once(' ').filter(|(_, user)| !user.is_empty())
}

/// The pub/sub channel on which nodes announce who joined and left channel `channel`.
pub fn presence_channel(channel: &str) -> String {
    format!("wsmq:pres:{channel}")
}

/// The broadcast channel name inside a presence pub/sub channel name, if it is one.
pub fn presence_channel_name(redis_channel: &str) -> Option<&str> {
    redis_channel.strip_prefix("wsmq:pres:")
}

/// What a pub/sub channel of a broadcast channel carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// Bare bodies ([`channel`]).
    Plain,
    /// Publications with their history position ([`history_channel`]).
    History,
    /// Presence announcements ([`presence_channel`]).
    Presence,
}

impl Carrier {
    /// Every carrier, in the order [`Carrier::sharded_names`] lists them.
    pub const ALL: [Carrier; 3] = [Carrier::Plain, Carrier::History, Carrier::Presence];

    fn prefix(self) -> &'static str {
        match self {
            Carrier::Plain => "wsmq:ch:",
            Carrier::History => "wsmq:chh:",
            Carrier::Presence => "wsmq:pres:",
        }
    }

    /// This carrier's sharded pub/sub channel of `channel` on a Redis Cluster:
    /// `wsmq:ch:{c}`, `wsmq:chh:{c}`, `wsmq:pres:{c}` (braces literal), so that all three
    /// share the hash slot of the channel's history and presence keys and the scripts that
    /// write those may `SPUBLISH` on them.
    pub fn sharded(self, channel: &str) -> String {
        format!("{}{{{channel}}}", self.prefix())
    }

    /// The three sharded channels of `channel`, one per carrier, in [`Carrier::ALL`]'s order.
    pub fn sharded_names(channel: &str) -> [String; 3] {
        Carrier::ALL.map(|carrier| carrier.sharded(channel))
    }

    /// Which carrier a sharded pub/sub channel name is, and of which broadcast channel.
    pub fn parse_sharded(redis_channel: &str) -> Option<(Carrier, &str)> {
        Carrier::ALL.into_iter().find_map(|carrier| {
            let name = redis_channel
                .strip_prefix(carrier.prefix())?
                .strip_prefix('{')?
                .strip_suffix('}')?;
            Some((carrier, name))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharded_carriers_round_trip_and_share_the_history_slot() {
        for name in ["room-1", "a}b", "x{y", "dm:u1:u2"] {
            for carrier in Carrier::ALL {
                let sharded = carrier.sharded(name);
                assert_eq!(Carrier::parse_sharded(&sharded), Some((carrier, name)));
            }
        }
        assert_eq!(
            Carrier::sharded_names("r"),
            ["wsmq:ch:{r}", "wsmq:chh:{r}", "wsmq:pres:{r}"]
        );
        assert_eq!(Carrier::parse_sharded("wsmq:ch:room"), None);
        assert_eq!(Carrier::parse_sharded("wsmq:revoke"), None);
        // The same braces as the history and presence keys: one hash tag.
        assert!(history_stream("r").contains("{r}") && presence("r").contains("{r}"));
    }

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
        assert_eq!(presence_channel_name(&presence_channel("r")), Some("r"));
        assert_eq!(channel_name(&presence_channel("r")), None);
        assert_eq!(presence("r"), "wsmq:presence:{r}");
        assert_eq!(presence_users("r"), "wsmq:presence:{r}:users");
        assert_eq!(
            split_presence_member("n-1/ab3 al ice"),
            Some(("n-1/ab3", "al ice"))
        );
        assert_eq!(split_presence_member("n-1/ab3"), None);
    }

    #[test]
    fn registry_keys() {
        assert_eq!(access_tokens("u1"), "wsmq:access:u1");
        assert_eq!(revoked("u1"), "wsmq:revoked:u1");
        assert_eq!(node("a-1"), "wsmq:node:a-1");
        assert!(node("x").starts_with(NODE_PATTERN.trim_end_matches('*')));
    }
}
