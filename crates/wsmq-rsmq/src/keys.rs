//! Redis key names of the rsmq layout, built in one place so that no other module
//! spells a key by hand.
//!
//! npm rsmq keeps `redisns = ns + ":"` and appends to it, so an `ns` of `rsmq` gives
//! `rsmq:QUEUES`, `rsmq:jobs`, `rsmq:jobs:Q` and `rsmq:rt:jobs`.

/// The SET of all queue names: `{ns}:QUEUES`.
pub fn queues(ns: &str) -> String {
    format!("{ns}:QUEUES")
}

/// A queue's HASH of attributes and message bodies: `{ns}:{qname}:Q`.
pub fn queue_hash(ns: &str, qname: &str) -> String {
    format!("{ns}:{qname}:Q")
}

/// A queue's ZSET of message ids scored by the ms at which each becomes visible:
/// `{ns}:{qname}`.
pub fn queue_zset(ns: &str, qname: &str) -> String {
    format!("{ns}:{qname}")
}

/// The pub/sub channel on which a realtime sender publishes the queue's message count:
/// `{ns}:rt:{qname}`.
pub fn realtime_channel(ns: &str, qname: &str) -> String {
    format!("{ns}:rt:{qname}")
}

/// The hash field holding a message's receive count: `{id}:rc`.
pub fn receive_count_field(id: &str) -> String {
    format!("{id}:rc")
}

/// The hash field holding a message's first-receive time in ms: `{id}:fr`.
pub fn first_receive_field(id: &str) -> String {
    format!("{id}:fr")
}

/// The namespace queue `qname` lives in on a Redis Cluster: `{ns}:{{qname}}` (braces
/// literal), so that every key of the queue carries the queue name as its hash tag and
/// hashes to one slot: `rsmq:{jobs}:jobs`, `rsmq:{jobs}:jobs:Q`, `rsmq:{jobs}:QUEUES`,
/// `rsmq:{jobs}:rt:jobs`. npm rsmq writes exactly these keys when given this namespace.
pub fn cluster_ns(ns: &str, qname: &str) -> String {
    format!("{ns}:{{{qname}}}")
}

/// The realtime channel of queue `qname` in namespace `ns`: `{ns}:rt:{qname}`, or in the
/// cluster layout `{ns}:{{qname}}:rt:{qname}`.
pub fn queue_realtime_channel(ns: &str, qname: &str, cluster: bool) -> String {
    if cluster {
        realtime_channel(&cluster_ns(ns, qname), qname)
    } else {
        realtime_channel(ns, qname)
    }
}

/// The queue whose realtime channel (in namespace `ns` and the given layout) is `channel`,
/// if it is one: the reverse of [`queue_realtime_channel`].
pub fn realtime_queue<'a>(ns: &str, channel: &'a str, cluster: bool) -> Option<&'a str> {
    let rest = channel.strip_prefix(ns)?;
    if !cluster {
        return rest.strip_prefix(":rt:");
    }
    // `:{q}:rt:q`: the tag and the name must agree.
    let rest = rest.strip_prefix(":{")?;
    let (tag, name) = rest.split_once("}:rt:")?;
    (tag == name).then_some(name)
}

/// The keys of one queue, built once per call: the two every queue operation touches, the
/// set of queue names its creation joins, and its realtime channel.
#[derive(Debug)]
pub(crate) struct QueueKeys {
    /// `{ns}:{qname}`: the visibility ZSET.
    pub(crate) zset: String,
    /// `{ns}:{qname}:Q`: the attribute and body HASH.
    pub(crate) hash: String,
    /// `{ns}:QUEUES`: the set of queue names.
    pub(crate) queues: String,
    /// `{ns}:rt:{qname}`: the realtime channel.
    pub(crate) realtime: String,
    /// `{ns}:{qname}:D`: on a Redis Cluster, where dead messages wait for the client to move
    /// them to the dead-letter queue (in another slot).
    pub(crate) park: String,
}

impl QueueKeys {
    /// The keys of `qname` in namespace `ns`; with `cluster`, in the queue's own tagged
    /// namespace ([`cluster_ns`]).
    pub(crate) fn new(ns: &str, qname: &str, cluster: bool) -> Self {
        let tagged;
        let ns = if cluster {
            tagged = cluster_ns(ns, qname);
            tagged.as_str()
        } else {
            ns
        };
        Self {
            zset: queue_zset(ns, qname),
            hash: queue_hash(ns, qname),
            queues: queues(ns),
            realtime: realtime_channel(ns, qname),
            park: format!("{}:D", queue_zset(ns, qname)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_npm_rsmq() {
        assert_eq!(queues("rsmq"), "rsmq:QUEUES");
        assert_eq!(queue_hash("rsmq", "jobs"), "rsmq:jobs:Q");
        assert_eq!(queue_zset("rsmq", "jobs"), "rsmq:jobs");
        assert_eq!(realtime_channel("rsmq", "jobs"), "rsmq:rt:jobs");
        assert_eq!(receive_count_field("abc"), "abc:rc");
        assert_eq!(first_receive_field("abc"), "abc:fr");
    }

    #[test]
    fn realtime_channels_name_their_queue_in_both_layouts() {
        for cluster in [false, true] {
            for q in ["jobs", "a-b_c", "x"] {
                let channel = queue_realtime_channel("rsmq", q, cluster);
                assert_eq!(realtime_queue("rsmq", &channel, cluster), Some(q));
                assert_eq!(realtime_queue("other", &channel, cluster), None);
            }
        }
        assert_eq!(realtime_queue("rsmq", "rsmq:{a}:rt:b", true), None);
        assert_eq!(realtime_queue("rsmq", "rsmq:rt:a", true), None);
        assert_eq!(realtime_queue("rsmq", "rsmq:{a}:rt:a", false), None);
        assert_eq!(realtime_queue("rsmq", "wsmq:ch:x", false), None);
    }

    #[test]
    fn cluster_keys_carry_the_queue_name_as_their_hash_tag() {
        let keys = QueueKeys::new("rsmq", "jobs", true);
        assert_eq!(keys.zset, "rsmq:{jobs}:jobs");
        assert_eq!(keys.hash, "rsmq:{jobs}:jobs:Q");
        assert_eq!(keys.queues, "rsmq:{jobs}:QUEUES");
        assert_eq!(keys.realtime, "rsmq:{jobs}:rt:jobs");
        let flat = QueueKeys::new("rsmq", "jobs", false);
        assert_eq!(
            [flat.zset, flat.hash, flat.queues, flat.realtime],
            ["rsmq:jobs", "rsmq:jobs:Q", "rsmq:QUEUES", "rsmq:rt:jobs"]
        );
    }
}
