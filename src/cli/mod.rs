//! The subcommands of the `gracerpc` binary.

pub mod admin;
pub mod bench;
pub mod call;
pub mod load;
pub mod logger;
pub mod record;
pub mod registry;
pub mod rollout;
pub mod serve;
pub mod summary;
pub mod timer;
pub mod tls;
pub mod upgrade;

/// Parses a duration flag given in seconds: a finite number from 0 to one day. Anything else
/// (`inf`, `nan`, negative, a typo) is a usage error, not a panic deep in `Duration`.
pub fn seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !v.is_finite() || !(0.0..=86_400.0).contains(&v) {
        return Err(format!("`{s}` must be between 0 and 86400 seconds"));
    }
    Ok(v)
}

/// A drain budget for `rollout`: like [`duration`], but more than 0. With 0 a node ends every
/// connection at once on SIGTERM, so every call in flight fails: that is `--mode naive`'s
/// lesson, not a graceful rollout.
pub fn drain_duration(s: &str) -> Result<std::time::Duration, String> {
    let v = duration(s)?;
    if v.is_zero() {
        return Err(format!(
            "`{s}`: a graceful drain needs a budget above 0 s (with 0 every call in flight at \
             SIGTERM fails; `--mode naive` shows that)"
        ));
    }
    Ok(v)
}

/// Rounds of restarts: 1 to 100,000 (0 would restart nothing and audit an idle cluster; use
/// `bench` for load without restarts).
pub fn rounds(s: &str) -> Result<usize, String> {
    bounded(s, 1, 100_000).map_err(|e| {
        format!("{e} (0 restarts nothing: use `gracerpc bench` for load without restarts)")
    })
}

/// A node address `host:port`; a host name (`localhost:7000`) is resolved, preferring IPv4 (a
/// `gracerpc serve` listens on 127.0.0.1 by default).
pub fn node_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(a) = s.trim().parse() {
        return Ok(a);
    }
    let addrs: Vec<std::net::SocketAddr> = s
        .trim()
        .to_socket_addrs()
        .map_err(|e| format!("`{s}` is not host:port ({e})"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("`{s}` resolves to no address"))
}

/// Parses a duration flag: a number with a unit, `us`, `ms`, `s` or `m` (`250ms`, `1.5s`), or
/// a bare number of seconds; finite, from 0 to one day. Every duration flag of the CLI takes
/// this form (the older `--*-ms` spellings stay as hidden aliases).
pub fn duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" => 1e-6,
        "m" => 60.0,
        _ => {
            return Err(format!(
                "`{s}`: the unit must be us, ms, s or m (e.g. 250ms)"
            ));
        }
    };
    let secs = seconds(num)? * scale;
    if secs > 86_400.0 {
        return Err(format!("`{s}` must be at most one day"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// A whole number within `lo..=hi`, for flags that size memory or processes.
fn bounded(s: &str, lo: usize, hi: usize) -> Result<usize, String> {
    let v: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number"))?;
    if !(lo..=hi).contains(&v) {
        return Err(format!("`{s}` must be between {lo} and {hi}"));
    }
    Ok(v)
}

/// Calls kept in flight by the load generator: 1 to 100,000.
pub fn concurrency(s: &str) -> Result<usize, String> {
    bounded(s, 1, 100_000)
}

/// A request body size: up to 16 MiB (a node accepts 1 MiB by default; larger calls fail typed).
pub fn payload(s: &str) -> Result<usize, String> {
    bounded(s, 0, 16 << 20)
}

/// Nodes of a local cluster: 1 to 256 (the client's node table holds 256).
pub fn nodes(s: &str) -> Result<usize, String> {
    bounded(s, 1, gracerpc::client::table::MAX_NODES)
}

/// Threads of a node or driver threads: 1 to 1,024.
pub fn threads(s: &str) -> Result<usize, String> {
    bounded(s, 1, 1024)
}

/// Connections per node: 1 to 16.
pub fn lanes(s: &str) -> Result<usize, String> {
    bounded(s, 1, 16)
}

#[cfg(test)]
mod tests {
    use super::{concurrency, duration, nodes, payload, seconds};
    use std::time::Duration;

    #[test]
    fn durations_take_a_unit_or_seconds() {
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(duration("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        for bad in ["5h", "ms", "-1ms", "infs", "2000m", "1 s x"] {
            assert!(duration(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn counts_are_bounded() {
        assert_eq!(concurrency("64"), Ok(64));
        assert!(concurrency("0").is_err() && concurrency("1000000000").is_err());
        assert!(payload("17000000").is_err() && payload("-1").is_err());
        assert!(nodes("257").is_err() && nodes("3").is_ok());
    }

    #[test]
    fn rollout_refuses_zero_rounds_and_a_zero_drain() {
        assert!(super::rounds("0").is_err() && super::rounds("2").is_ok());
        assert!(super::drain_duration("0").is_err() && super::drain_duration("0.5").is_ok());
    }

    #[test]
    fn node_addresses_resolve_host_names() {
        let a = super::node_addr("localhost:7000").expect("localhost resolves");
        assert!(a.ip().is_loopback() && a.port() == 7000, "{a}");
        assert_eq!(
            super::node_addr("127.0.0.1:9"),
            Ok("127.0.0.1:9".parse().expect("addr"))
        );
        assert!(super::node_addr("no-port").is_err());
    }

    #[test]
    fn seconds_accepts_finite_durations_and_refuses_the_rest() {
        assert_eq!(seconds("2.5"), Ok(2.5));
        assert_eq!(seconds("0"), Ok(0.0));
        for bad in ["inf", "-1", "nan", "1e9", "ten", ""] {
            assert!(seconds(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
