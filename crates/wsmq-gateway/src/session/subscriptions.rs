//! A session's subscriptions of one kind, by name: a small map in a vector.
//!
//! A session holds a few subscriptions (at most `--max-subscriptions`, 64 by default), most
//! sessions exactly one. A `HashMap` allocates at least four buckets, 180 bytes for one
//! queue subscription of an idle session; a vector sized to what it holds takes 40, and a
//! lookup among a few short names costs less than hashing the name.

use std::borrow::Borrow;

/// Subscriptions by name, in the order they were made.
#[derive(Debug)]
pub(crate) struct Subscriptions<K, V> {
    entries: Vec<(K, V)>,
}

impl<K: Eq, V> Subscriptions<K, V> {
    /// No subscriptions (and no allocation).
    pub(crate) fn new() -> Self {
        Subscriptions {
            entries: Vec::new(),
        }
    }

    /// How many there are.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The names subscribed to, in the order the subscriptions were made.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.iter().map(|(k, _)| k)
    }

    /// Whether `key` is subscribed.
    pub(crate) fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.get(key).is_some()
    }

    /// The subscription to `key`.
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.entries
            .iter()
            .find(|(k, _)| k.borrow() == key)
            .map(|(_, v)| v)
    }

    /// Adds or replaces the subscription to `key`; returns the one it replaced.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        if let Some((_, old)) = self.entries.iter_mut().find(|(k, _)| *k == key) {
            return Some(std::mem::replace(old, value));
        }
        // Room for one more only: most sessions never make a second subscription.
        self.entries.reserve_exact(1);
        self.entries.push((key, value));
        None
    }

    /// Removes the subscription to `key` and returns it.
    pub(crate) fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let index = self.entries.iter().position(|(k, _)| k.borrow() == key)?;
        Some(self.entries.remove(index).1)
    }

    /// Drops every subscription, in the order they were made.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_replace_remove() {
        let mut subs = Subscriptions::new();
        assert_eq!(subs.len(), 0);
        assert_eq!(subs.insert("a".to_owned(), 1), None);
        assert_eq!(subs.insert("b".to_owned(), 2), None);
        assert_eq!(subs.insert("a".to_owned(), 3), Some(1));
        assert_eq!(subs.len(), 2);
        assert_eq!(subs.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(subs.get("a"), Some(&3));
        assert!(subs.contains_key("b"));
        assert!(!subs.contains_key("c"));
        assert_eq!(subs.remove("a"), Some(3));
        assert_eq!(subs.remove("a"), None);
        assert_eq!(subs.get("b"), Some(&2));
        subs.clear();
        assert_eq!(subs.len(), 0);
    }

    #[test]
    fn one_subscription_takes_room_for_one() {
        let mut subs = Subscriptions::new();
        subs.insert(1u8, [0u64; 4]);
        assert_eq!(subs.entries.capacity(), 1);
    }
}
