//! Authorization: who may consume, subscribe to and publish on what.
//!
//! - Each user owns the queue named by the `--own-queue` template with `{user}` replaced.
//! - The JWT claim `wsmq` may grant glob patterns: `consume` over queue names, `subscribe`
//!   over channel names, `publish` over `queue:NAME` and `channel:NAME`.
//! - `--open` lets any authenticated user consume any queue.
//!
//! Globs know `*` (any run of characters) and `?` (one character); names cannot contain
//! either, so there is nothing to escape.

use wsmq_proto::{ChannelName, QueueName};

use super::Identity;

/// The node's authorization rules.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    /// `--own-queue`, e.g. `{user}` or `inbox-{user}`.
    own_queue: String,
    /// `--open`.
    open: bool,
}

impl Policy {
    /// Rules from the configuration.
    pub(crate) fn new(own_queue: &str, open: bool) -> Policy {
        Policy {
            own_queue: own_queue.to_owned(),
            open,
        }
    }

    /// The queue `user` owns.
    pub(crate) fn own_queue(&self, user: &str) -> String {
        self.own_queue.replace("{user}", user)
    }

    /// Whether `who` may consume (subscribe to, ack, nack) `queue`.
    pub(crate) fn may_consume(&self, who: &Identity, queue: &QueueName) -> bool {
        self.open
            || self.own_queue(who.user.as_str()) == queue.as_str()
            || who
                .grants
                .as_ref()
                .is_some_and(|g| g.consume.iter().any(|p| glob(p, queue.as_str())))
    }

    /// Whether `who` may subscribe to `channel`.
    pub(crate) fn may_subscribe(&self, who: &Identity, channel: &ChannelName) -> bool {
        who.grants
            .as_ref()
            .is_some_and(|g| g.subscribe.iter().any(|p| glob(p, channel.as_str())))
    }

    /// Whether `who` may publish to `queue`: their own queue, or a `queue:GLOB` grant.
    pub(crate) fn may_publish_queue(&self, who: &Identity, queue: &QueueName) -> bool {
        self.own_queue(who.user.as_str()) == queue.as_str()
            || publish_grant(who, "queue:", queue.as_str())
    }

    /// Whether `who` may publish to `channel`: a `channel:GLOB` grant.
    pub(crate) fn may_publish_channel(&self, who: &Identity, channel: &ChannelName) -> bool {
        publish_grant(who, "channel:", channel.as_str())
    }
}

fn publish_grant(who: &Identity, prefix: &str, name: &str) -> bool {
    who.grants.as_ref().is_some_and(|g| {
        g.publish
            .iter()
            .filter_map(|p| p.strip_prefix(prefix))
            .any(|p| glob(p, name))
    })
}

/// Matches `name` against a pattern of literals, `*` and `?`, in linear time (the classic
/// backtrack-to-last-star algorithm, no recursion).
///
/// Hand-written rather than `globset`/`wildmatch` because it runs on every client publish and
/// those compile (allocate) a matcher per pattern; names are ASCII by validation, so bytes do.
pub(crate) fn glob(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use wsmq_proto::{Grants, UserId};

    use super::*;
    use crate::auth::Via;

    fn who(user: &str, grants: Option<Grants>) -> Identity {
        Identity {
            user: UserId::new(user).unwrap(),
            grants,
            exp: None,
            via: Via::Jwt,
            issued: None,
            access_token: None,
        }
    }

    fn q(name: &str) -> QueueName {
        QueueName::new(name).unwrap()
    }

    fn c(name: &str) -> ChannelName {
        ChannelName::new(name).unwrap()
    }

    #[test]
    fn globs() {
        assert!(glob("*", ""));
        assert!(glob("jobs-*", "jobs-1"));
        assert!(glob("a?c", "abc"));
        assert!(glob("*-x-*", "a-x-b"));
        assert!(!glob("jobs-*", "job"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exact2"));
    }

    #[test]
    fn users_own_their_queue_and_nothing_else_by_default() {
        let policy = Policy::new("{user}", false);
        let alice = who("alice", None);
        assert!(policy.may_consume(&alice, &q("alice")));
        assert!(!policy.may_consume(&alice, &q("bob")));
        assert!(!policy.may_subscribe(&alice, &c("news")));
        assert!(policy.may_publish_queue(&alice, &q("alice")));
        assert!(!policy.may_publish_channel(&alice, &c("news")));
        assert!(Policy::new("inbox-{user}", false).may_consume(&alice, &q("inbox-alice")));
    }

    #[test]
    fn grants_and_open_widen_access() {
        let policy = Policy::new("{user}", false);
        let grants = Grants {
            consume: vec!["jobs-*".into()],
            subscribe: vec!["room-?".into()],
            publish: vec!["queue:jobs-*".into(), "channel:room-*".into()],
        };
        let bob = who("bob", Some(grants));
        assert!(policy.may_consume(&bob, &q("jobs-7")));
        assert!(!policy.may_consume(&bob, &q("alice")));
        assert!(policy.may_subscribe(&bob, &c("room-1")));
        assert!(!policy.may_subscribe(&bob, &c("room-12")));
        assert!(policy.may_publish_queue(&bob, &q("jobs-1")));
        assert!(policy.may_publish_channel(&bob, &c("room-12")));
        assert!(!policy.may_publish_channel(&bob, &c("jobs-1")));
        assert!(Policy::new("{user}", true).may_consume(&who("eve", None), &q("alice")));
    }
}
