//! What a Redis Cluster needs beyond routing by key: operations that span every master.
//!
//! In the cluster layout each queue `q` keeps its own set of names, `{ns}:{q}:QUEUES`
//! (see [`keys::cluster_ns`](crate::keys::cluster_ns)), so listing the queues means
//! scanning every master for those sets.

use redis::FromRedisValue;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};

use crate::RsmqError;

/// Keys one `SCAN` step asks each master for: a hint, not a bound.
pub(crate) const SCAN_COUNT: u64 = 1_000;

/// The masters of the cluster, as `(host, port)`, from `CLUSTER NODES` of any node: those
/// flagged `master` and not `fail`, that serve at least one slot.
pub(crate) async fn masters(conn: &mut ClusterConnection) -> Result<Vec<(String, u16)>, RsmqError> {
    let nodes: String = redis::cmd("CLUSTER").arg("NODES").query_async(conn).await?;
    Ok(parse_masters(&nodes))
}

/// Reads `CLUSTER NODES` output: `id ip:port@bus[,host] flags master ping pong epoch state
/// slot…`.
fn parse_masters(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = fields.get(2)?;
            if !flags.split(',').any(|f| f == "master")
                || flags.split(',').any(|f| f == "fail" || f == "noaddr")
                || fields.len() < 9
            {
                return None;
            }
            let addr = fields[1].split(['@', ',']).next()?;
            let (host, port) = addr.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
}

/// Every queue name of namespace `ns` on the cluster: the members of each
/// `{ns}:{…}:QUEUES` set on each master.
pub(crate) async fn list_queues(
    mut conn: ClusterConnection,
    ns: &str,
) -> Result<Vec<String>, RsmqError> {
    // `{` and `}` are plain characters in a SCAN pattern; `*`, `?`, `[` and `\` are not,
    // and a namespace holding them would match too much, so they are escaped.
    let pattern = format!("{}:{{*}}:QUEUES", escape_glob(ns));
    let mut names = Vec::new();
    for key in scan(conn.clone(), &pattern, Some("set")).await? {
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&key)
            .query_async(&mut conn)
            .await?;
        names.extend(members);
    }
    names.sort_unstable();
    names.dedup();
    Ok(names)
}

/// Every key matching `pattern` (of `kind`, when given) on every master.
pub(crate) async fn scan(
    mut conn: ClusterConnection,
    pattern: &str,
    kind: Option<&str>,
) -> Result<Vec<String>, RsmqError> {
    let mut found = Vec::new();
    for (host, port) in masters(&mut conn).await? {
        let mut cursor = "0".to_owned();
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(&cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT);
            if let Some(kind) = kind {
                scan.arg("TYPE").arg(kind);
            }
            let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                host: host.clone(),
                port,
            });
            let reply = conn.route_command(scan, route).await?;
            let (next, keys): (String, Vec<String>) = FromRedisValue::from_redis_value(reply)
                .map_err(|err| RsmqError::UnexpectedReply(format!("SCAN: {err}")))?;
            found.extend(keys);
            if next == "0" {
                break;
            }
            cursor = next;
        }
    }
    Ok(found)
}

fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masters_are_read_from_cluster_nodes() {
        let nodes = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002 master - 0 1 2 connected 5461-10922
c3 127.0.0.1:7003@17003 master,fail - 0 1 3 connected 10923-16383
d4 127.0.0.1:7004@17004,host4 slave a1 0 1 1 connected
e5 127.0.0.1:7005@17005 master - 0 1 5 connected
f6 127.0.0.1:7006@17006,node6 master - 0 1 6 connected 10923-16383
";
        assert_eq!(
            parse_masters(nodes),
            [
                ("127.0.0.1".to_owned(), 7001),
                ("127.0.0.1".to_owned(), 7002),
                ("127.0.0.1".to_owned(), 7006)
            ]
        );
    }

    #[test]
    fn glob_characters_of_the_namespace_are_escaped() {
        assert_eq!(escape_glob("rsmq"), "rsmq");
        assert_eq!(escape_glob("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
