//! What the benchmarks read about processes from `/proc`: CPU time, resident memory and
//! descendants (nginx serves from worker processes under its master), plus Redis
//! `INFO` fields over a bare socket.

use std::{
    fs,
    io::{Read as _, Write as _},
    net::TcpStream,
    time::Duration,
};

/// Linux reports process times in USER_HZ ticks, fixed at 100/s by the kernel ABI.
const TICKS_PER_SECOND: f64 = 100.0;

/// utime + stime of `pid` and all its descendants, seconds; 0 for a gone process.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    family(pid).into_iter().map(own_cpu_seconds).sum()
}

/// VmRSS of `pid` and all its descendants, KiB.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    family(pid)
        .into_iter()
        .filter_map(|pid| {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            status.lines().find_map(|line| {
                line.strip_prefix("VmRSS:")?
                    .trim()
                    .trim_end_matches(" kB")
                    .parse::<u64>()
                    .ok()
            })
        })
        .sum()
}

fn own_cpu_seconds(pid: u32) -> f64 {
    let Some(fields) = stat_fields(pid) else {
        return 0.0;
    };
    // Fields after the command name: state is 0, ppid 1, utime 11, stime 12.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / TICKS_PER_SECOND
}

fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// `pid` and every process below it.
fn family(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Some(ppid) = stat_fields(child).and_then(|f| f.get(1)?.parse().ok()) {
                parents.push((child, ppid));
            }
        }
    }
    let mut family = vec![pid];
    let mut i = 0;
    while i < family.len() {
        let parent = family[i];
        family.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        i += 1;
    }
    family
}

/// A numeric field of Redis `INFO <section>` (e.g. `used_memory`), from the server on
/// `port`; `None` if Redis does not answer.
pub(crate) fn redis_info(port: u16, section: &str, field: &str) -> Option<f64> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(format!("INFO {section}\r\n").as_bytes())
        .ok()?;
    // A bulk string: `$<len>\r\n<text>\r\n`; read until the whole text is in.
    let mut reply = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&reply);
        if let Some((head, body)) = text.split_once("\r\n") {
            let len: usize = head.trim_start_matches('$').parse().ok()?;
            if body.len() >= len {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&reply);
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == field).then(|| value.trim().parse().ok())?
    })
}
