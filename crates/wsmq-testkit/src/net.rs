//! Free loopback ports, for servers a test or task starts as a separate process.

use std::{
    io,
    net::{Ipv4Addr, SocketAddr, TcpListener},
};

/// A loopback port on which nothing listens: the OS picks a free one for a listener on
/// port 0, which is then closed.
///
/// Another process may take the port before the caller binds it; that is rare enough for
/// tests, and callers that must not fail retry with a new port.
///
/// # Errors
///
/// When no loopback listener can be bound.
pub fn free_port() -> io::Result<u16> {
    Ok(free_addr()?.port())
}

/// `127.0.0.1:{port}` for a [`free_port`].
///
/// # Errors
///
/// When no loopback listener can be bound.
pub fn free_addr() -> io::Result<SocketAddr> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()
}
