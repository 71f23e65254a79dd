//! Slowloris clients: requests, or their bodies, sent a byte at a time, and what the gateway
//! answered before it closed the connection.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Sends `head` at once, then `rest` one byte every `gap`, reading the answer meanwhile, until
/// the gateway closes the connection or `bound` passes. Returns how long after `head` it
/// closed (`None`: it did not) and what it said.
pub async fn trickle(
    addr: SocketAddr,
    head: &[u8],
    rest: Vec<u8>,
    gap: Duration,
    bound: Duration,
) -> (Option<Duration>, Vec<u8>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = tcp.into_split();
    write.write_all(head).await.unwrap();
    let started = Instant::now();
    // Never more than `rest` bytes, and aborted below: the gateway is what should end it.
    let writer = tokio::spawn(async move {
        for byte in rest {
            if write.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(gap).await;
        }
        std::future::pending::<()>().await;
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(bound, async {
        let mut buf = [0u8; 4096];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    writer.abort();
    (read.ok().map(|()| started.elapsed()), answer)
}

/// The status of an HTTP answer, if the gateway said anything before closing.
pub fn status_of(answer: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(answer);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}
