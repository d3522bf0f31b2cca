//! The few etcd v3 calls gracerpc needs, over the JSON gateway (`/v3/...`, served by etcd 3.4
//! and later on its client port): lease grant, keep-alive and revoke, put, range over a prefix,
//! and watch a prefix (see `watch.rs`). HTTP through `ureq`, JSON through `serde_json`, both
//! set up in `gateway.rs`; keys and values are base64 in the gateway's JSON, and 64-bit
//! integers are strings.

use std::io::{self, BufReader};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::gateway::{
    Failure, KeyValue, Kv, MAX_DOCUMENT, agent, bad, first_document, int, io_error,
};
use super::watch::Watch;

/// A blocking etcd client with one timeout for every request.
#[derive(Clone, Debug)]
pub(crate) struct Etcd {
    agent: ureq::Agent,
    /// `http://host:port`.
    base: String,
    timeout: Duration,
}

impl Etcd {
    pub fn new(authority: &str, timeout: Duration) -> Etcd {
        Etcd {
            agent: agent(Some(timeout)),
            base: format!("http://{authority}"),
            timeout,
        }
    }

    /// POSTs `body` and decodes the answer's first document; a non-200 answer is an error
    /// carrying etcd's message (`NotFound` for HTTP 404).
    fn call<T: DeserializeOwned>(&self, path: &str, body: &serde_json::Value) -> io::Result<T> {
        let url = format!("{}{path}", self.base);
        let mut ans = self
            .agent
            .post(&url)
            .header("content-type", "application/json")
            .send(body.to_string())
            .map_err(|e| io_error(path, e))?;
        let status = ans.status().as_u16();
        let reader = ans.body_mut().with_config().limit(MAX_DOCUMENT).reader();
        // A streamed RPC (keep-alive) answers one document per line: take the first.
        let doc = first_document(&mut BufReader::new(reader))
            .map_err(|e| io::Error::new(e.kind(), format!("etcd {path}: {e}")))?
            .unwrap_or_default();
        if status != 200 {
            let msg = serde_json::from_str::<Failure>(&doc)
                .ok()
                .and_then(Failure::message)
                .unwrap_or_else(|| doc.clone());
            let kind = if status == 404 {
                io::ErrorKind::NotFound
            } else {
                io::ErrorKind::Other
            };
            return Err(io::Error::new(
                kind,
                format!("etcd {path}: HTTP {status}: {msg}"),
            ));
        }
        if let Some(msg) = serde_json::from_str::<Failure>(&doc)
            .ok()
            .and_then(|f| f.error)
            .map(|e| e.text())
        {
            return Err(io::Error::other(format!("etcd {path}: {msg}")));
        }
        serde_json::from_str(&doc).map_err(|e| bad(path, &format!("answer is not JSON: {e}")))
    }

    /// A new lease of `ttl` seconds; returns its id.
    pub fn grant(&self, ttl: u64) -> io::Result<i64> {
        let a: Grant = self.call("/v3/lease/grant", &json!({ "TTL": ttl.to_string() }))?;
        a.id.ok_or_else(|| bad("/v3/lease/grant", "no lease ID"))
    }

    /// Renews a lease. `Some(ttl)` while it lives, `None` once it has expired or was revoked.
    pub fn keep_alive(&self, lease: i64) -> io::Result<Option<u64>> {
        let a: Streamed<KeepAlive> =
            self.call("/v3/lease/keepalive", &json!({ "ID": lease.to_string() }))?;
        // An expired lease is answered with its ID and no TTL (zero is omitted).
        let ttl = a.result.or(a.flat).and_then(|k| k.ttl).unwrap_or(0);
        Ok(u64::try_from(ttl).ok().filter(|&t| t > 0))
    }

    /// Revokes a lease, deleting every key attached to it. A lease that is already gone is not
    /// an error.
    pub fn revoke(&self, lease: i64) -> io::Result<()> {
        let body = json!({ "ID": lease.to_string() });
        match self.call::<serde_json::Value>("/v3/lease/revoke", &body) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Writes `key = value` attached to `lease` (0: no lease).
    pub fn put(&self, key: &[u8], value: &[u8], lease: i64) -> io::Result<()> {
        let body = json!({
            "key": B64.encode(key),
            "value": B64.encode(value),
            "lease": lease.to_string(),
        });
        self.call::<serde_json::Value>("/v3/kv/put", &body)
            .map(drop)
    }

    /// Every key under `prefix`, and the store's revision at that moment.
    pub fn range_prefix(&self, prefix: &[u8]) -> io::Result<(i64, Vec<Kv>)> {
        let body = json!({
            "key": B64.encode(prefix),
            "range_end": B64.encode(prefix_end(prefix)),
        });
        let a: Range = self.call("/v3/kv/range", &body)?;
        let revision = a
            .header
            .and_then(|h| h.revision)
            .ok_or_else(|| bad("/v3/kv/range", "no revision"))?;
        let kvs = a
            .kvs
            .iter()
            .map(|kv| kv.decode().ok_or_else(|| bad("/v3/kv/range", "bad kv")))
            .collect::<io::Result<_>>()?;
        Ok((revision, kvs))
    }

    /// Watches every key under `prefix` from revision `from`. Each read waits at most `poll`.
    pub fn watch_prefix(&self, prefix: &[u8], from: i64, poll: Duration) -> io::Result<Watch> {
        let body = json!({ "create_request": {
            "key": B64.encode(prefix),
            "range_end": B64.encode(prefix_end(prefix)),
            "start_revision": from.to_string(),
        }});
        Watch::open(
            &format!("{}/v3/watch", self.base),
            &body,
            self.timeout,
            poll,
        )
    }
}

/// A streamed RPC's document: `{"result": {...}}`, or the fields themselves.
#[derive(Deserialize)]
struct Streamed<T> {
    #[serde(default = "none")]
    result: Option<T>,
    #[serde(flatten)]
    flat: Option<T>,
}

fn none<T>() -> Option<T> {
    None
}

#[derive(Deserialize)]
struct Grant {
    #[serde(rename = "ID", default, deserialize_with = "int")]
    id: Option<i64>,
}

#[derive(Deserialize)]
struct KeepAlive {
    #[serde(rename = "TTL", default, deserialize_with = "int")]
    ttl: Option<i64>,
}

#[derive(Deserialize)]
pub(crate) struct Header {
    #[serde(default, deserialize_with = "int")]
    revision: Option<i64>,
}

#[derive(Deserialize)]
struct Range {
    header: Option<Header>,
    #[serde(default)]
    kvs: Vec<KeyValue>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"gracerpc/echo/"), b"gracerpc/echo0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }

    #[test]
    fn gateway_documents() {
        let r: Range = serde_json::from_str(
            r#"{"header":{"revision":"42"},"kvs":[{"key":"YQ==","value":"Yg=="},{"key":"Yw=="}]}"#,
        )
        .unwrap();
        assert_eq!(r.header.unwrap().revision, Some(42));
        let kvs: Vec<Kv> = r.kvs.iter().map(|kv| kv.decode().unwrap()).collect();
        assert_eq!(
            kvs,
            [(b"a".to_vec(), b"b".to_vec()), (b"c".to_vec(), vec![])]
        );
        let k: Streamed<KeepAlive> =
            serde_json::from_str(r#"{"result":{"ID":"7","TTL":"5"}}"#).unwrap();
        assert_eq!(k.result.and_then(|k| k.ttl), Some(5));
        let g: Grant = serde_json::from_str(r#"{"ID":7587,"TTL":"5"}"#).unwrap();
        assert_eq!(g.id, Some(7587));
        let f: Failure = serde_json::from_str(r#"{"error":"lease not found","code":5}"#).unwrap();
        assert_eq!(f.message().as_deref(), Some("lease not found"));
    }
}
