//! The few etcd v3 calls gracerpc needs, over the JSON gateway (`/v3/...`, served by etcd 3.4
//! and later on its client port): lease grant, keep-alive and revoke, put, range over a prefix,
//! and watch a prefix.

use std::io;
use std::time::Duration;

use super::base64;
use super::http::{Http, Line, Stream};
use super::json::Value;

/// A key and its value.
pub(crate) type Kv = (Vec<u8>, Vec<u8>);

/// A blocking etcd client with one timeout for every request.
#[derive(Clone, Debug)]
pub(crate) struct Etcd {
    http: Http,
}

/// One change seen by a watch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// The key was written.
    Put(Kv),
    /// The key was deleted (or its lease ended).
    Delete(Vec<u8>),
}

/// What a watch produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Watched {
    /// Changes, in order.
    Events(Vec<Event>),
    /// Nothing within the poll interval.
    Idle,
}

impl Etcd {
    pub fn new(authority: &str, timeout: Duration) -> Etcd {
        Etcd {
            http: Http {
                authority: authority.to_owned(),
                timeout,
            },
        }
    }

    /// POSTs a request and parses the answer; a non-200 answer is an error carrying etcd's
    /// message (`NotFound` for HTTP 404).
    fn call(&self, path: &str, body: &str) -> io::Result<Value> {
        let ans = self.http.post(path, body)?;
        // A streamed RPC (keep-alive) answers one document per line: take the first.
        let first = ans
            .body
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        let value = Value::parse(first);
        if ans.status != 200 {
            let msg = value
                .as_ref()
                .and_then(|v| v.get("message"))
                .and_then(Value::as_str)
                .unwrap_or(first)
                .to_owned();
            let kind = if ans.status == 404 {
                io::ErrorKind::NotFound
            } else {
                io::ErrorKind::Other
            };
            return Err(io::Error::new(
                kind,
                format!("etcd {path}: HTTP {}: {msg}", ans.status),
            ));
        }
        let value = value.ok_or_else(|| bad(path, "answer is not JSON"))?;
        if let Some(err) = value.get("error") {
            let msg = err
                .get("message")
                .or(value.at(&["error"]))
                .and_then(Value::as_str)
                .unwrap_or("error");
            return Err(io::Error::other(format!("etcd {path}: {msg}")));
        }
        Ok(value)
    }

    /// A new lease of `ttl` seconds; returns its id.
    pub fn grant(&self, ttl: u64) -> io::Result<i64> {
        let v = self.call("/v3/lease/grant", &format!(r#"{{"TTL":"{ttl}"}}"#))?;
        v.get("ID")
            .and_then(Value::as_i64)
            .ok_or_else(|| bad("/v3/lease/grant", "no lease ID"))
    }

    /// Renews a lease. `Some(ttl)` while it lives, `None` once it has expired or was revoked.
    pub fn keep_alive(&self, lease: i64) -> io::Result<Option<u64>> {
        let v = self.call("/v3/lease/keepalive", &format!(r#"{{"ID":"{lease}"}}"#))?;
        let result = v.get("result").unwrap_or(&v);
        // An expired lease is answered with its ID and no TTL (zero is omitted).
        let ttl = result.get("TTL").and_then(Value::as_i64).unwrap_or(0);
        Ok((ttl > 0).then_some(ttl as u64))
    }

    /// Revokes a lease, deleting every key attached to it. A lease that is already gone is not
    /// an error.
    pub fn revoke(&self, lease: i64) -> io::Result<()> {
        match self.call("/v3/lease/revoke", &format!(r#"{{"ID":"{lease}"}}"#)) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Writes `key = value` attached to `lease` (0: no lease).
    pub fn put(&self, key: &[u8], value: &[u8], lease: i64) -> io::Result<()> {
        let body = format!(
            r#"{{"key":"{}","value":"{}","lease":"{lease}"}}"#,
            base64::encode(key),
            base64::encode(value)
        );
        self.call("/v3/kv/put", &body).map(drop)
    }

    /// Every key under `prefix`, and the store's revision at that moment.
    pub fn range_prefix(&self, prefix: &[u8]) -> io::Result<(i64, Vec<Kv>)> {
        let body = format!(
            r#"{{"key":"{}","range_end":"{}"}}"#,
            base64::encode(prefix),
            base64::encode(&prefix_end(prefix))
        );
        let v = self.call("/v3/kv/range", &body)?;
        let revision = v
            .at(&["header", "revision"])
            .and_then(Value::as_i64)
            .ok_or_else(|| bad("/v3/kv/range", "no revision"))?;
        let kvs = v
            .get("kvs")
            .map(Value::items)
            .unwrap_or_default()
            .iter()
            .map(|kv| kv_of(kv).ok_or_else(|| bad("/v3/kv/range", "bad kv")))
            .collect::<io::Result<_>>()?;
        Ok((revision, kvs))
    }

    /// Watches every key under `prefix` from revision `from`. Each read waits at most `poll`.
    pub fn watch_prefix(&self, prefix: &[u8], from: i64, poll: Duration) -> io::Result<Watch> {
        let body = format!(
            r#"{{"create_request":{{"key":"{}","range_end":"{}","start_revision":"{from}"}}}}"#,
            base64::encode(prefix),
            base64::encode(&prefix_end(prefix))
        );
        let stream = self.http.stream("/v3/watch", &body, poll)?;
        Ok(Watch { stream })
    }
}

/// An open watch.
pub(crate) struct Watch {
    stream: Stream,
}

impl Watch {
    /// The next batch of changes, or `Idle`. An error means the watch is over (the connection
    /// ended, or etcd canceled it, e.g. because the revision was compacted): list again.
    pub fn next(&mut self) -> io::Result<Watched> {
        let line = match self.stream.next_line()? {
            Line::Idle => return Ok(Watched::Idle),
            Line::End => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "etcd ended the watch",
                ));
            }
            Line::Text(t) => t,
        };
        let v = Value::parse(&line).ok_or_else(|| bad("/v3/watch", "answer is not JSON"))?;
        if let Some(err) = v.get("error") {
            let msg = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("error");
            return Err(io::Error::other(format!("etcd watch: {msg}")));
        }
        let result = v.get("result").unwrap_or(&v);
        if result.get("canceled").and_then(Value::as_bool) == Some(true) {
            let why = result
                .get("cancel_reason")
                .and_then(Value::as_str)
                .unwrap_or("canceled");
            return Err(io::Error::other(format!("etcd canceled the watch: {why}")));
        }
        let mut events = Vec::new();
        for ev in result.get("events").map(Value::items).unwrap_or_default() {
            let Some(kv) = ev.get("kv") else {
                return Err(bad("/v3/watch", "event without kv"));
            };
            // PUT is the enum's default, so etcd leaves `type` out for it.
            match ev.get("type").and_then(Value::as_str) {
                Some("DELETE") => {
                    let key = kv
                        .get("key")
                        .and_then(Value::as_str)
                        .and_then(base64::decode)
                        .ok_or_else(|| bad("/v3/watch", "bad key"))?;
                    events.push(Event::Delete(key));
                }
                None | Some("PUT") => {
                    events.push(Event::Put(
                        kv_of(kv).ok_or_else(|| bad("/v3/watch", "bad kv"))?,
                    ));
                }
                Some(other) => return Err(bad("/v3/watch", &format!("event type {other}"))),
            }
        }
        Ok(Watched::Events(events))
    }
}

fn kv_of(kv: &Value) -> Option<Kv> {
    let key = base64::decode(kv.get("key")?.as_str()?)?;
    // An empty value is omitted.
    let value = match kv.get("value") {
        Some(v) => base64::decode(v.as_str()?)?,
        None => Vec::new(),
    };
    Some((key, value))
}

/// The end of the range of keys starting with `prefix` (etcd's `range_end`).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

fn bad(path: &str, what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("etcd {path}: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"gracerpc/echo/"), b"gracerpc/echo0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }
}
