//! [`RedisCluster`]: a real Redis Cluster of `redis-server` processes on free loopback ports
//! (3 masters, and replicas when a test needs failover), created with
//! `redis-cli --cluster create` and stopped by PID on drop.
//!
//! Each node is a [`RedisServer`] built with [`Builder::cluster_node`](crate::Builder), so
//! a test can kill one (`node_mut(i).kill()`) the way a crash would and watch its replica
//! take over. The cluster node timeout defaults to 1 s, so a failover takes a few seconds.

use std::{
    process::{Command, Output},
    thread,
    time::{Duration, Instant},
};

use crate::{Error, RedisServer};

/// How long [`ClusterBuilder::start`] waits for every node to report the cluster healthy.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How often health is polled.
const POLL: Duration = Duration::from_millis(50);

/// A running Redis Cluster owned by this process.
#[derive(Debug)]
pub struct RedisCluster {
    /// Every node: the first `masters` were created as masters, the rest as their replicas
    /// (roles change with failovers; [`RedisCluster::masters`] asks the cluster).
    nodes: Vec<RedisServer>,
}

/// Options for a [`RedisCluster`], from [`RedisCluster::builder`].
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    masters: usize,
    replicas: usize,
    node_timeout_ms: u64,
}

impl RedisCluster {
    /// Starts a cluster of 3 masters and no replicas, and waits until it serves every slot.
    ///
    /// # Errors
    ///
    /// As [`ClusterBuilder::start`].
    pub fn start() -> Result<RedisCluster, Error> {
        RedisCluster::builder().start()
    }

    /// Options: masters, replicas per master, node timeout.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder {
            masters: 3,
            replicas: 0,
            node_timeout_ms: 1_000,
        }
    }

    /// Every node's URL, comma-separated, as `--redis-url` takes seeds in cluster mode.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(RedisServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every node, in the order they were started.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// One node, to kill or restart it.
    ///
    /// # Panics
    ///
    /// When `i` is out of range.
    pub fn node_mut(&mut self, i: usize) -> &mut RedisServer {
        &mut self.nodes[i]
    }

    /// The index (in [`nodes`](Self::nodes)) of the master that serves `key`'s slot now, as a
    /// running node sees it (`CLUSTER KEYSLOT`, then `CLUSTER NODES`).
    ///
    /// # Errors
    ///
    /// When no running node answers, or none claims the slot.
    pub fn master_of(&self, key: &str) -> Result<usize, Error> {
        let port = self.live_port()?;
        let slot: u16 = cli(port, &["CLUSTER", "KEYSLOT", key])?
            .trim()
            .parse()
            .map_err(|_| Error::Cluster(format!("CLUSTER KEYSLOT {key:?}: not a number")))?;
        let nodes = cli(port, &["CLUSTER", "NODES"])?;
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                matches!((lo.parse::<u16>(), hi.parse::<u16>()), (Ok(lo), Ok(hi)) if (lo..=hi).contains(&slot))
            });
            if !serves {
                continue;
            }
            // `127.0.0.1:7001@17001` (or with a hostname after a comma).
            let addr = fields[1].split(['@', ',']).next().unwrap_or_default();
            let node_port = addr.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
            if let Some(i) = self.nodes.iter().position(|n| Some(n.port()) == node_port) {
                return Ok(i);
            }
        }
        Err(Error::Cluster(format!("no live master serves slot {slot}")))
    }

    /// Waits until every running node reports `cluster_state:ok` with all 16,384 slots
    /// served, e.g. after a failover.
    ///
    /// # Errors
    ///
    /// When that does not happen within `timeout`; the error holds the last `CLUSTER INFO`.
    pub fn wait_healthy(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut last = String::new();
            let healthy = self.nodes.iter().filter(|n| n.is_running()).all(|node| {
                match cli(node.port(), &["CLUSTER", "INFO"]) {
                    Ok(info) => {
                        let ok = info.contains("cluster_state:ok")
                            && info.contains("cluster_slots_ok:16384");
                        if !ok {
                            last = format!("node {}: {info}", node.port());
                        }
                        ok
                    }
                    Err(err) => {
                        last = err.to_string();
                        false
                    }
                }
            });
            if healthy {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Cluster(format!(
                    "not healthy within {timeout:?}; {}",
                    last.replace("\r\n", " ")
                )));
            }
            thread::sleep(POLL);
        }
    }

    /// The port of some running node.
    fn live_port(&self) -> Result<u16, Error> {
        self.nodes
            .iter()
            .find(|n| n.is_running())
            .map(RedisServer::port)
            .ok_or_else(|| Error::Cluster("no node is running".to_owned()))
    }
}

impl ClusterBuilder {
    /// Masters (at least 3, as `redis-cli --cluster create` requires; default 3).
    pub fn masters(mut self, masters: usize) -> ClusterBuilder {
        self.masters = masters;
        self
    }

    /// Replicas per master (default 0; 1 for failover tests).
    pub fn replicas(mut self, replicas: usize) -> ClusterBuilder {
        self.replicas = replicas;
        self
    }

    /// `--cluster-node-timeout` of every node (default 1,000 ms): how long a master may be
    /// unreachable before its replica is promoted.
    pub fn node_timeout_ms(mut self, ms: u64) -> ClusterBuilder {
        self.node_timeout_ms = ms;
        self
    }

    /// Starts the nodes, joins them with `redis-cli --cluster create --cluster-yes`, and waits
    /// until every node serves the whole slot space and every replica is in sync.
    ///
    /// # Errors
    ///
    /// When a node cannot start ([`Error::NotInstalled`] without `redis-server`),
    /// `redis-cli` fails, or the cluster is not healthy within 60 s.
    pub fn start(self) -> Result<RedisCluster, Error> {
        let total = self.masters * (1 + self.replicas);
        let mut nodes = Vec::with_capacity(total);
        for _ in 0..total {
            // On failure, dropping `nodes` stops what was started.
            nodes.push(
                RedisServer::builder()
                    .cluster_node(self.node_timeout_ms)
                    .start()?,
            );
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port()));
        }
        create
            .args(["--cluster-replicas", &self.replicas.to_string()])
            .arg("--cluster-yes");
        let output = create.output().map_err(cli_spawn_error)?;
        if !output.status.success() {
            return Err(Error::Cluster(format!(
                "redis-cli --cluster create failed: {}",
                output_text(&output)
            )));
        }
        let cluster = RedisCluster { nodes };
        cluster.wait_healthy(READY_TIMEOUT)?;
        cluster.wait_replicas_synced(READY_TIMEOUT)?;
        Ok(cluster)
    }
}

impl RedisCluster {
    /// Waits until every replica's link to its master is up, so that a failover test starts
    /// from replicas that hold the data.
    fn wait_replicas_synced(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut waiting = None;
            for node in &self.nodes {
                let info = cli(node.port(), &["INFO", "replication"])?;
                if info.contains("role:slave") && !info.contains("master_link_status:up") {
                    waiting = Some(node.port());
                    break;
                }
            }
            match waiting {
                None => return Ok(()),
                Some(port) if Instant::now() >= deadline => {
                    return Err(Error::Cluster(format!(
                        "replica {port} not in sync within {timeout:?}"
                    )));
                }
                Some(_) => thread::sleep(POLL),
            }
        }
    }
}

/// Runs `redis-cli -p port args…` and returns what it printed.
fn cli(port: u16, args: &[&str]) -> Result<String, Error> {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .map_err(cli_spawn_error)?;
    if !output.status.success() {
        return Err(Error::Cluster(format!(
            "redis-cli -p {port} {}: {}",
            args.join(" "),
            output_text(&output)
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn cli_spawn_error(err: std::io::Error) -> Error {
    match err.kind() {
        std::io::ErrorKind::NotFound => Error::NotInstalled,
        _ => Error::Spawn(err),
    }
}

fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
    .trim()
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_three_master_cluster_serves_every_slot_and_spreads_keys() {
        let cluster = RedisCluster::start().expect("cluster starts");
        assert_eq!(cluster.nodes().len(), 3);
        assert_eq!(cluster.urls().split(',').count(), 3);
        cluster
            .wait_healthy(Duration::from_secs(1))
            .expect("healthy");
        let owners: std::collections::HashSet<usize> = (0..30)
            .map(|i| cluster.master_of(&format!("key{i}")).expect("owner"))
            .collect();
        assert_eq!(owners.len(), 3, "30 keys land on all three masters");
    }
}
