//! The guard itself: it starts a Redis that answers, stops it on drop, and an append-only one
//! keeps its data across stop and restart on the same port.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use wsmq_testkit::{Error, RedisServer};

#[test]
fn start_answers_and_drop_stops_the_server() {
    let redis = RedisServer::start().expect("redis-server starts");
    let port = redis.port();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}"));
    assert!(redis.is_running() && redis.pid() > 0 && redis.dir().is_none());
    assert_eq!(command(port, "PING"), "+PONG\r\n");
    drop(redis);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn append_only_keeps_data_across_stop_and_restart() {
    let mut redis = RedisServer::builder()
        .append_only("testkit")
        .timeout(Duration::from_secs(15))
        .start()
        .expect("redis-server starts");
    let (port, dir) = (redis.port(), redis.dir().unwrap().to_owned());
    assert_eq!(command(port, "SET greeting hello"), "+OK\r\n");
    assert!(matches!(redis.restart(), Err(Error::AlreadyRunning)));

    redis.stop().expect("redis-server stops on SIGTERM");
    assert!(!redis.is_running());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(matches!(redis.stop(), Err(Error::NotRunning)));

    redis.restart().expect("redis-server restarts");
    assert_eq!(redis.port(), port);
    assert_eq!(command(port, "GET greeting"), "$5\r\nhello\r\n");
    drop(redis);
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

/// Sends one inline command and returns the reply (one read is enough for these).
fn command(port: u16, line: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream.write_all(format!("{line}\r\n").as_bytes()).unwrap();
    let mut reply = [0u8; 64];
    let n = stream.read(&mut reply).unwrap();
    String::from_utf8_lossy(&reply[..n]).into_owned()
}
