//! Reference-counted local interest in named things (queues, channels).
//!
//! The Redis engine subscribes to a pub/sub channel when the first local session becomes
//! interested in it and unsubscribes when the last one leaves. [`Interests`] counts the
//! holders; the `on_change` callback runs under the registry lock so that subscribe and
//! unsubscribe commands for one name are issued in the order they happened. It is handed the
//! shared value too, so that a subscribe can report back to exactly the holders it was made
//! for (a name dropped and joined again gets a new value).

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
};

/// Called with `(name, value, true)` on the first holder of `name` and `(name, value, false)`
/// after the last.
pub type OnChange<T> = Box<dyn Fn(&str, &T, bool) + Send + Sync>;

/// A registry of named values shared by everybody interested in the name.
pub struct Interests<T> {
    /// name → (shared value, number of live guards).
    entries: Mutex<HashMap<String, (T, usize)>>,
    /// Told about the first and last holder of each name.
    on_change: OnChange<T>,
}

/// Keeps one unit of interest alive; dropping it gives the interest back.
pub struct InterestGuard {
    /// Runs once, on drop.
    release: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl<T: Clone + Send + 'static> Interests<T> {
    /// An empty registry.
    pub fn new(on_change: OnChange<T>) -> Arc<Interests<T>> {
        Arc::new(Interests {
            entries: Mutex::new(HashMap::new()),
            on_change,
        })
    }

    /// Joins the interest in `name`, creating its value with `make` if nobody holds it yet.
    pub fn join(self: &Arc<Self>, name: &str, make: impl FnOnce() -> T) -> (T, InterestGuard) {
        let mut entries = self.entries.lock().expect("interest registry poisoned");
        let value = match entries.get_mut(name) {
            Some((value, count)) => {
                *count += 1;
                value.clone()
            }
            None => {
                let value = make();
                entries.insert(name.to_owned(), (value.clone(), 1));
                (self.on_change)(name, &value, true);
                value
            }
        };
        drop(entries);
        let this = Arc::clone(self);
        let name = name.to_owned();
        let guard = InterestGuard {
            release: Some(Box::new(move || this.leave(&name))),
        };
        (value, guard)
    }

    /// The shared value of `name` while anybody holds it.
    pub fn get(&self, name: &str) -> Option<T> {
        let entries = self.entries.lock().expect("interest registry poisoned");
        entries.get(name).map(|(value, _)| value.clone())
    }

    /// Every name somebody holds (to re-subscribe after a reconnect).
    pub fn names(&self) -> Vec<String> {
        let entries = self.entries.lock().expect("interest registry poisoned");
        entries.keys().cloned().collect()
    }

    /// Every name somebody holds, with its value.
    pub fn entries(&self) -> Vec<(String, T)> {
        let entries = self.entries.lock().expect("interest registry poisoned");
        entries
            .iter()
            .map(|(name, (value, _))| (name.clone(), value.clone()))
            .collect()
    }

    fn leave(&self, name: &str) {
        let mut entries = self.entries.lock().expect("interest registry poisoned");
        if let Some((_, count)) = entries.get_mut(name) {
            *count -= 1;
            if *count == 0
                && let Some((value, _)) = entries.remove(name)
            {
                (self.on_change)(name, &value, false);
            }
        }
    }
}

impl InterestGuard {
    /// A guard that holds nothing (for engines that need no bookkeeping).
    pub fn none() -> InterestGuard {
        InterestGuard { release: None }
    }
}

impl Drop for InterestGuard {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

impl fmt::Debug for InterestGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InterestGuard")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_and_last_holder_are_reported_once() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        let interests: Arc<Interests<u32>> = Interests::new(Box::new(move |name, value, on| {
            sink.lock().unwrap().push((name.to_owned(), *value, on));
        }));
        let (a, g1) = interests.join("c", || 7);
        let (b, g2) = interests.join("c", || 9);
        assert_eq!((a, b), (7, 7));
        drop(g1);
        assert_eq!(interests.get("c"), Some(7));
        assert_eq!(interests.entries(), vec![("c".to_owned(), 7)]);
        drop(g2);
        assert_eq!(interests.get("c"), None);
        assert_eq!(
            *log.lock().unwrap(),
            vec![("c".to_owned(), 7, true), ("c".to_owned(), 7, false)]
        );
    }
}
