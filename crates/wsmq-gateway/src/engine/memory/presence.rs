//! Presence in one process, with the Redis engine's semantics: memberships expire unless
//! refreshed, user counts per channel, joins and leaves reported when a count leaves or
//! reaches 0, and reads that skip what expired before it is swept.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Mutex,
    time::Duration,
};

use tokio::time::Instant;

use super::super::{Membership, PresenceChanges, PresenceList};

/// Presence of every channel.
#[derive(Default)]
pub(super) struct MemPresence {
    /// channel → its roster; a channel whose last membership went is forgotten.
    channels: Mutex<HashMap<String, Roster>>,
}

/// One channel's memberships.
#[derive(Default)]
struct Roster {
    /// session → (user, expiry).
    sessions: HashMap<String, (String, Instant)>,
    /// (expiry, session): the sweep takes the oldest first, as from the Redis ZSET.
    expiry: BTreeSet<(Instant, String)>,
    /// user → memberships, sorted for listing.
    users: BTreeMap<String, u64>,
}

impl Roster {
    /// Drops one membership; `Some(user)` when it was the user's last.
    fn drop_session(&mut self, session: &str) -> Option<Option<String>> {
        let (user, expires) = self.sessions.remove(session)?;
        self.expiry.remove(&(expires, session.to_owned()));
        let count = self.users.entry(user.clone()).or_default();
        *count = count.saturating_sub(1);
        if *count == 0 {
            self.users.remove(&user);
            return Some(Some(user));
        }
        Some(None)
    }
}

impl MemPresence {
    pub(super) fn add(&self, members: &[Membership<'_>], ttl: Duration) -> PresenceChanges {
        let expires = Instant::now() + ttl;
        let mut changes = PresenceChanges::default();
        let mut channels = self.lock();
        for m in members {
            let roster = channels.entry(m.channel.to_owned()).or_default();
            match roster.sessions.get_mut(m.session) {
                Some((_, at)) => {
                    roster.expiry.remove(&(*at, m.session.to_owned()));
                    *at = expires;
                }
                None => {
                    roster
                        .sessions
                        .insert(m.session.to_owned(), (m.user.to_owned(), expires));
                    let count = roster.users.entry(m.user.to_owned()).or_default();
                    *count += 1;
                    if *count == 1 {
                        changes
                            .joined
                            .push((m.channel.to_owned(), m.user.to_owned()));
                    }
                }
            }
            roster.expiry.insert((expires, m.session.to_owned()));
        }
        changes
    }

    pub(super) fn remove(&self, members: &[Membership<'_>]) -> PresenceChanges {
        let mut changes = PresenceChanges::default();
        let mut channels = self.lock();
        for m in members {
            let Some(roster) = channels.get_mut(m.channel) else {
                continue;
            };
            if let Some(Some(user)) = roster.drop_session(m.session) {
                changes.left.push((m.channel.to_owned(), user));
            }
            if roster.sessions.is_empty() {
                channels.remove(m.channel);
            }
        }
        changes
    }

    pub(super) fn sweep(&self, names: &[&str], max: usize) -> PresenceChanges {
        let now = Instant::now();
        let mut changes = PresenceChanges::default();
        let mut channels = self.lock();
        for &channel in names {
            let Some(roster) = channels.get_mut(channel) else {
                continue;
            };
            let stale: Vec<String> = roster
                .expiry
                .iter()
                .take_while(|(at, _)| *at <= now)
                .take(max)
                .map(|(_, session)| session.clone())
                .collect();
            for session in stale {
                if let Some(Some(user)) = roster.drop_session(&session) {
                    changes.left.push((channel.to_owned(), user));
                }
            }
            if roster.sessions.is_empty() {
                channels.remove(channel);
            }
        }
        changes
    }

    pub(super) fn members(&self, channel: &str, limit: usize) -> PresenceList {
        let now = Instant::now();
        let channels = self.lock();
        let Some(roster) = channels.get(channel) else {
            return PresenceList::default();
        };
        // What expired and is not swept yet does not count: subtract it.
        let mut expired: HashMap<&str, u64> = HashMap::new();
        for (_, session) in roster.expiry.iter().take_while(|(at, _)| *at <= now) {
            if let Some((user, _)) = roster.sessions.get(session) {
                *expired.entry(user.as_str()).or_default() += 1;
            }
        }
        let live = roster.users.iter().filter_map(|(user, count)| {
            let count = count.saturating_sub(expired.get(user.as_str()).copied().unwrap_or(0));
            (count > 0).then(|| (user.clone(), count))
        });
        let mut users = Vec::new();
        let mut total = 0u64;
        for (user, count) in live {
            total += 1;
            if users.len() < limit {
                users.push((user, count));
            }
        }
        PresenceList { users, total }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Roster>> {
        self.channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
