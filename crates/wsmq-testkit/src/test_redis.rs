//! [`TestRedis`]: the Redis one test works against: a [`RedisServer`] of its own, or a
//! shared Redis named by an environment variable.

use crate::RedisServer;

/// A Redis for one test.
///
/// With the chosen environment variable set (e.g. by `cargo xtask e2e` or a developer's own
/// Redis), every test shares that server and must keep apart by namespace and unique names;
/// otherwise each test gets a fresh [`RedisServer`], which drop stops.
#[derive(Debug)]
pub struct TestRedis {
    /// The server this test started; `None` when the environment named a shared one.
    server: Option<RedisServer>,
    /// Where it listens.
    url: String,
}

impl TestRedis {
    /// Uses the Redis at `$var` when that is set, else starts a [`RedisServer`].
    ///
    /// # Panics
    ///
    /// When `var` is unset and `redis-server` cannot start; the message says why and how to
    /// fix it. Tests want the panic: a missing Redis is a broken setup, not a skipped test.
    pub fn from_env_or_start(var: &str) -> TestRedis {
        if let Ok(url) = std::env::var(var) {
            return TestRedis { server: None, url };
        }
        match RedisServer::start() {
            Ok(server) => TestRedis {
                url: server.url(),
                server: Some(server),
            },
            Err(err) => panic!("{err}; or set {var} to a Redis the tests may write to"),
        }
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether other tests use this Redis too (it came from the environment), so that
    /// server-wide observations (MONITOR, global keys) may see their traffic.
    pub fn is_shared(&self) -> bool {
        self.server.is_none()
    }

    /// The server this test started, if it did.
    pub fn server(&self) -> Option<&RedisServer> {
        self.server.as_ref()
    }
}
