//! A connection's abort: how a stream or session that gave up on a client that does not read
//! ends the TCP connection itself, rather than leaving it open with the kernel's buffers full.
//!
//! A client that stops reading leaves megabytes in the socket's send buffer. Closing such a
//! socket the ordinary way does not free them: an HTTP response cannot finish (so hyper keeps
//! the connection, and with it a `--max-connections` permit, for as long as the client does
//! not read), and a closed WebSocket becomes an orphan that the kernel keeps trying to deliver
//! for minutes. Each accepted socket is wrapped in an [`AbortableStream`], and its
//! [`ConnAbort`] goes into the request's extensions: an SSE stream ended as a slow client
//! [requests](ConnAbort::request) the abort (the accept loop gives hyper a moment to finish the
//! response, then drops the connection), and a WebSocket session whose close frame could not
//! be written marks the socket [to reset](ConnAbort::reset_on_drop) before dropping it. Either
//! way the socket is closed with `SO_LINGER` 0: the kernel discards what it holds and sends a
//! RST, and the client learns at once that the connection is gone.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::Notify,
};

/// The abort of one accepted connection; clones share it.
///
/// One allocation per connection, held for the connection's life: 56 bytes (the 40 of
/// `State`, by `size_of` on x86-64, and the `Arc`'s two counts), plus a pointer in the socket
/// wrapper and one in each holder (a WebSocket session's task, an SSE stream's).
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnAbort(Arc<State>);

#[derive(Debug, Default)]
struct State {
    /// Someone gave up on the client: the accept loop is to end the connection.
    requested: AtomicBool,
    /// Wakes the accept loop's wait in [`ConnAbort::requested`].
    notify: Notify,
    /// Close the socket with a RST when it is dropped.
    reset: AtomicBool,
}

impl ConnAbort {
    /// A connection nobody gave up on yet.
    pub(crate) fn new() -> ConnAbort {
        ConnAbort::default()
    }

    /// Asks the accept loop to end the connection (an SSE stream ended as a slow client).
    pub(crate) fn request(&self) {
        self.0.requested.store(true, Ordering::Release);
        self.0.notify.notify_waiters();
    }

    /// Resolves once [`ConnAbort::request`] was called.
    pub(crate) async fn requested(&self) {
        loop {
            // Created before the check: `notify_waiters` reaches a `Notified` from its
            // creation on, so a request between the check and the await is not missed.
            let notified = self.0.notify.notified();
            if self.0.requested.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// Has the socket closed with a RST (`SO_LINGER` 0) when it is dropped, discarding what the
    /// kernel still holds for the client.
    pub(crate) fn reset_on_drop(&self) {
        self.0.reset.store(true, Ordering::Release);
    }
}

/// An accepted socket that closes with a RST when dropped after [`ConnAbort::reset_on_drop`].
#[derive(Debug)]
pub(crate) struct AbortableStream {
    stream: TcpStream,
    abort: ConnAbort,
}

impl AbortableStream {
    /// Wraps `stream`, to be reset through `abort`.
    pub(crate) fn new(stream: TcpStream, abort: ConnAbort) -> AbortableStream {
        AbortableStream { stream, abort }
    }
}

impl Drop for AbortableStream {
    fn drop(&mut self) {
        if self.abort.0.reset.load(Ordering::Acquire) {
            // A zero linger makes the `close` that follows (the `TcpStream`'s drop) discard
            // the send buffer and send a RST instead of a FIN after data that will never be
            // read. It does not block: only a non-zero linger does.
            let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
        }
    }
}

impl AsyncRead for AbortableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for AbortableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::{
        io::AsyncWriteExt,
        net::{TcpListener, TcpStream},
    };

    use super::*;

    /// A request made before anyone waits is still seen.
    #[tokio::test]
    async fn a_request_before_the_wait_is_not_missed() {
        let abort = ConnAbort::new();
        abort.clone().request();
        tokio::time::timeout(Duration::from_secs(1), abort.requested())
            .await
            .expect("the request was seen");
    }

    /// With the reset requested, the peer sees a RST although data was still queued for it;
    /// without, the ordinary close leaves it readable and ends in EOF.
    #[tokio::test]
    async fn a_socket_marked_for_reset_is_reset_when_dropped() {
        for reset in [false, true] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let client = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let (accepted, _) = listener.accept().await.unwrap();
            let abort = ConnAbort::new();
            let mut server = AbortableStream::new(accepted, abort.clone());
            server.write_all(b"unread").await.unwrap();
            if reset {
                abort.reset_on_drop();
            }
            drop(server);
            let seen = tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    if let Some(err) = client.take_error().unwrap() {
                        return Some(err.kind());
                    }
                    let mut buf = [0u8; 16];
                    match client.try_read(&mut buf) {
                        Ok(0) => return None,
                        Ok(_) => {}
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                            client.readable().await.unwrap();
                        }
                        Err(err) => return Some(err.kind()),
                    }
                }
            })
            .await
            .expect("the close reaches the client");
            if reset {
                assert_eq!(seen, Some(io::ErrorKind::ConnectionReset));
            } else {
                assert_eq!(seen, None, "an ordinary close is an EOF after the data");
            }
        }
    }
}
