//! A small key-value service, typed end to end: the service definition, a node that implements
//! it, and a caller. Run it with `cargo run --example kv_store`; `tests/examples.rs` runs it in CI.
//!
//! * `get` and `list` are `#[idempotent]`: the client may retry them after an unknown outcome.
//! * `put` and `delete` are not: they are never retried blindly, and the node refuses a request
//!   that claims they are.

use std::collections::BTreeMap;
use std::time::Duration;

use gracerpc::client::Client;
use gracerpc::server::Server;
use gracerpc::service::ServiceError;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// A stored value and its version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub value: String,
    pub version: u64,
}

/// Why a call failed, as the caller sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvError {
    /// A conditional put lost a race: someone else wrote first.
    Conflict { current: u64 },
    /// Keys are 1..=64 bytes.
    BadKey,
}

impl std::fmt::Display for KvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KvError::Conflict { current } => write!(f, "conflict: the key is at version {current}"),
            KvError::BadKey => f.write_str("keys are 1 to 64 bytes"),
        }
    }
}

impl std::error::Error for KvError {}

#[gracerpc::service]
pub trait KeyValue {
    /// The entry under `key`, if any.
    #[idempotent]
    fn get(&self, key: String) -> Result<Option<Entry>, KvError>;
    /// Stores `value`; with `expect`, only if the key is at that version. Returns the new
    /// version.
    fn put(&self, key: String, value: String, expect: Option<u64>) -> Result<u64, KvError>;
    /// Removes `key`; whether it was there.
    fn delete(&self, key: String) -> Result<bool, KvError>;
    /// Keys starting with `prefix`, in order.
    #[idempotent]
    fn list(&self, prefix: String) -> Result<Vec<String>, KvError>;
}

/// The node's state: one map behind a lock.
#[derive(Default)]
pub struct Store {
    map: Mutex<BTreeMap<String, Entry>>,
}

fn check(key: &str) -> Result<(), KvError> {
    if key.is_empty() || key.len() > 64 {
        return Err(KvError::BadKey);
    }
    Ok(())
}

impl KeyValue for Store {
    fn get(&self, key: String) -> Result<Option<Entry>, KvError> {
        check(&key)?;
        Ok(self.map.lock().get(&key).cloned())
    }

    fn put(&self, key: String, value: String, expect: Option<u64>) -> Result<u64, KvError> {
        check(&key)?;
        let mut map = self.map.lock();
        let current = map.get(&key).map_or(0, |e| e.version);
        if expect.is_some_and(|v| v != current) {
            return Err(KvError::Conflict { current });
        }
        let version = current + 1;
        map.insert(key, Entry { value, version });
        Ok(version)
    }

    fn delete(&self, key: String) -> Result<bool, KvError> {
        check(&key)?;
        Ok(self.map.lock().remove(&key).is_some())
    }

    fn list(&self, prefix: String) -> Result<Vec<String>, KvError> {
        let map = self.map.lock();
        Ok(map
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect())
    }
}

/// Starts a node, talks to it, stops it. Returns what the caller saw, for the test.
pub fn run() -> Result<Vec<String>, Box<dyn std::error::Error>> {
    // The node: implement the trait, register it, spawn.
    let node = Server::builder()
        .listen("127.0.0.1:0")
        .service(KeyValueServer::new(Store::default()))
        .spawn()?;

    // The caller: a client of the node(s), wrapped in the generated typed client.
    let client = Client::builder().nodes([node.local_addr()]).build()?;
    let kv = KeyValueClient::new(client.clone());
    let mut log = Vec::new();

    let v1 = kv.put("user/ada".into(), "Ada Lovelace".into(), None)?;
    let v2 = kv.put("user/ada".into(), "Ada King".into(), Some(v1))?;
    kv.put("user/alan".into(), "Alan Turing".into(), None)?;
    log.push(format!("put user/ada at versions {v1} then {v2}"));

    match kv.put("user/ada".into(), "stale".into(), Some(v1)) {
        Err(ServiceError::App(KvError::Conflict { current })) => {
            log.push(format!("stale put refused: key at version {current}"));
        }
        other => return Err(format!("expected a conflict, got {other:?}").into()),
    }
    let ada = kv.get("user/ada".into())?;
    log.push(format!("get user/ada = {ada:?}"));
    log.push(format!("list user/ = {:?}", kv.list("user/".into())?));
    log.push(format!(
        "delete user/alan = {}",
        kv.delete("user/alan".into())?
    ));
    if let Err(e) = kv.get(String::new()) {
        log.push(format!("bad key: {e}"));
    }

    client.close(Duration::from_secs(1));
    node.shutdown();
    let report = node.wait()?;
    log.push(format!("node stopped, clean drain: {}", report.clean));
    Ok(log)
}

#[allow(dead_code)] // `tests/examples.rs` includes this file and calls `run` itself
fn main() -> Result<(), Box<dyn std::error::Error>> {
    for line in run()? {
        println!("{line}");
    }
    Ok(())
}
