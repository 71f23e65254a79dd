//! A bounded multi-producer, single-consumer queue that holds no storage while it is empty.
//!
//! Every session has an outbound queue and every queue subscription a command queue, and
//! most sessions are idle most of the time. tokio's `mpsc` allocates a block of 32 slots per
//! channel up front and keeps it (about 1.8 KiB each for our frame and command types, plus
//! 512 bytes of cache-padded channel state), which made these two queues a third of an idle
//! session's memory. Here the items live in a `VecDeque` that the receiver frees each time it
//! finds the queue empty and goes to sleep: a busy queue keeps its buffer, an idle one costs
//! a mutex, a `Notify`, the receiver's waker and a few counters.
//!
//! The API follows the subset of `tokio::sync::mpsc` the gateway uses: `send` (waits for
//! room), `try_send` (full or closed is the caller's business), `recv`, `poll_recv`,
//! `try_recv` and `close`, with the same end-of-stream rule: `recv` returns what was sent
//! before the last sender left or the receiver closed, then `None`. `poll_recv` lets a
//! session poll its outbound queue beside its socket in one task, without a future to keep.
//!
//! One addition: [`Sender::send_exempt`] queues an item that does not count against the
//! capacity, for producers whose items are bounded elsewhere (a session's queue deliveries
//! are bounded by the subscriptions' credit, and must never make the queue look full).

use std::{
    collections::VecDeque,
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll},
};

use futures_util::task::AtomicWaker;
use tokio::sync::Notify;

/// Creates a queue holding at most `capacity` items.
pub(crate) fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            exempt: 0,
            senders: 1,
            closed: false,
        }),
        readable: AtomicWaker::new(),
        writable: Notify::new(),
        capacity: capacity.max(1),
    });
    (
        Sender {
            shared: Arc::clone(&shared),
        },
        Receiver { shared },
    )
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Wakes the receiver (there is one): an item arrived or the last sender left.
    readable: AtomicWaker,
    /// Wakes senders waiting for room: an item was taken or the receiver closed.
    writable: Notify,
    capacity: usize,
}

struct State<T> {
    /// The items, each with whether it was sent exempt from the capacity.
    items: VecDeque<(T, bool)>,
    /// How many of `items` are exempt: the capacity applies to the others.
    exempt: usize,
    /// Live senders; at zero the receiver gets `None` once the items are taken.
    senders: usize,
    /// The receiver closed or dropped: sends fail.
    closed: bool,
}

impl<T> Shared<T> {
    /// A panic while the lock was held cannot leave the queue half-changed (every change is
    /// one `VecDeque` or counter operation), so a poisoned lock is still usable.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why `try_send` did not queue the item (which it hands back).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TrySendError<T> {
    /// The queue holds `capacity` items.
    Full(T),
    /// The receiver is gone or closed.
    Closed(T),
}

/// `send` failed: the receiver is gone or closed; the item is handed back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SendError<T>(pub T);

/// The producing end; cloneable.
pub(crate) struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Queues `item` if there is room.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] at capacity, [`TrySendError::Closed`] once the receiver closed.
    pub(crate) fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(TrySendError::Closed(item));
        }
        if state.items.len() - state.exempt >= self.shared.capacity {
            return Err(TrySendError::Full(item));
        }
        state.items.push_back((item, false));
        drop(state);
        self.shared.readable.wake();
        Ok(())
    }

    /// Queues `item` whatever the queue holds: it does not count against the capacity (nor
    /// does it stop other items from being queued). For items bounded by other means.
    ///
    /// # Errors
    ///
    /// [`SendError`] once the receiver closed.
    pub(crate) fn send_exempt(&self, item: T) -> Result<(), SendError<T>> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(SendError(item));
        }
        state.items.push_back((item, true));
        state.exempt += 1;
        drop(state);
        self.shared.readable.wake();
        Ok(())
    }

    /// Queues `item`, waiting for room.
    ///
    /// # Errors
    ///
    /// [`SendError`] once the receiver closed.
    pub(crate) async fn send(&self, mut item: T) -> Result<(), SendError<T>> {
        loop {
            // Registered before trying, so room made in between is not missed.
            let writable = self.shared.writable.notified();
            tokio::pin!(writable);
            writable.as_mut().enable();
            match self.try_send(item) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(back)) => return Err(SendError(back)),
                Err(TrySendError::Full(back)) => item = back,
            }
            writable.await;
        }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Sender {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.senders -= 1;
        let last = state.senders == 0;
        drop(state);
        if last {
            self.shared.readable.wake();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("mailbox::Sender").finish_non_exhaustive()
    }
}

/// The consuming end.
pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

/// `try_recv` found nothing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TryRecvError {
    /// Nothing queued now.
    Empty,
    /// Nothing queued, and nothing will be.
    Disconnected,
}

impl<T> Receiver<T> {
    /// The next item, waiting for one; `None` once the queue is empty and every sender is
    /// gone or the receiver closed.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next item: `Ready(None)` once the queue is empty and every sender is
    /// gone or the receiver closed; `Pending` wakes `cx` when that changes.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        for attempt in 0..2 {
            match self.try_recv() {
                Ok(item) => return Poll::Ready(Some(item)),
                Err(TryRecvError::Disconnected) => return Poll::Ready(None),
                // Registered, then checked again: an item queued between the first check and
                // the registration would otherwise wake nobody.
                Err(TryRecvError::Empty) if attempt == 0 => {
                    self.shared.readable.register(cx.waker())
                }
                Err(TryRecvError::Empty) => {}
            }
        }
        Poll::Pending
    }

    /// The next item if one is queued. Taking the last one frees the buffer.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] or, with no sender left (or closed), [`TryRecvError::Disconnected`].
    pub(crate) fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut state = self.shared.lock();
        match state.items.pop_front() {
            Some((item, exempt)) => {
                if exempt {
                    state.exempt -= 1;
                }
                if state.items.is_empty() {
                    // Idle queues hold no buffer. A queue busy enough to refill before the
                    // next take reallocates once per burst, not per item.
                    state.items = VecDeque::new();
                }
                drop(state);
                self.shared.writable.notify_waiters();
                Ok(item)
            }
            None if state.senders == 0 || state.closed => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Refuses further sends; what is queued can still be received.
    pub(crate) fn close(&mut self) {
        self.shared.lock().closed = true;
        self.shared.writable.notify_waiters();
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.close();
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("mailbox::Receiver").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn items_arrive_in_order_then_none_after_the_last_sender() {
        let (tx, mut rx) = channel(4);
        let tx2 = tx.clone();
        tx.try_send(1).unwrap();
        tx2.send(2).await.unwrap();
        drop(tx);
        assert_eq!(rx.recv().await, Some(1));
        tx2.try_send(3).unwrap();
        drop(tx2);
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, Some(3));
        assert_eq!(rx.recv().await, None);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }

    #[tokio::test]
    async fn full_and_closed_hand_the_item_back() {
        let (tx, mut rx) = channel(2);
        tx.try_send('a').unwrap();
        tx.try_send('b').unwrap();
        assert_eq!(tx.try_send('c'), Err(TrySendError::Full('c')));
        rx.close();
        assert_eq!(tx.try_send('d'), Err(TrySendError::Closed('d')));
        assert_eq!(tx.send('e').await, Err(SendError('e')));
        // Closing keeps what was queued.
        assert_eq!(rx.recv().await, Some('a'));
        assert_eq!(rx.recv().await, Some('b'));
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn send_waits_for_room_and_recv_for_an_item() {
        let (tx, mut rx) = channel(1);
        tx.try_send(1).unwrap();
        let sender = tokio::spawn(async move {
            tx.send(2).await.unwrap();
            tx.send(3).await.unwrap();
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!sender.is_finished(), "a full queue makes send wait");
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, Some(3));
        sender.await.unwrap();
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_waiting_sender_fails_when_the_receiver_drops() {
        let (tx, rx) = channel(1);
        tx.try_send(1).unwrap();
        let sender = tokio::spawn(async move { tx.send(2).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(rx);
        assert_eq!(sender.await.unwrap(), Err(SendError(2)));
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_for_an_item_and_for_the_last_sender() {
        let (tx, mut rx) = channel::<u8>(4);
        let receiver = tokio::spawn(async move {
            let first = rx.recv().await;
            let end = rx.recv().await;
            (first, end)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!receiver.is_finished(), "an empty queue makes recv wait");
        tx.try_send(7).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(tx);
        let received = tokio::time::timeout(Duration::from_secs(5), receiver)
            .await
            .expect("the receiver was woken");
        assert_eq!(received.unwrap(), (Some(7), None));
    }

    #[tokio::test]
    async fn exempt_items_do_not_count_against_the_capacity() {
        let (tx, mut rx) = channel(2);
        for i in 0..5 {
            tx.send_exempt(i).unwrap();
        }
        // The capacity is still there for the others, and then full.
        tx.try_send(10).unwrap();
        tx.try_send(11).unwrap();
        assert_eq!(tx.try_send(12), Err(TrySendError::Full(12)));
        for want in [0, 1, 2, 3, 4, 10] {
            assert_eq!(rx.recv().await, Some(want));
        }
        tx.try_send(13).unwrap();
        rx.close();
        assert_eq!(tx.send_exempt(14), Err(SendError(14)));
    }

    #[test]
    fn a_drained_queue_frees_its_buffer() {
        let (tx, mut rx) = channel(64);
        for i in 0..10 {
            tx.try_send(i).unwrap();
        }
        assert!(rx.shared.lock().items.capacity() >= 10);
        while rx.try_recv().is_ok() {}
        assert_eq!(rx.shared.lock().items.capacity(), 0);
    }
}
