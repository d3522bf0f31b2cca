//! The etcd JSON gateway's plumbing, shared by single calls (`client.rs`) and watches
//! (`watch.rs`): the HTTP agent, how an answer's documents are read, error answers, and keys
//! and values as the gateway writes them (base64; 64-bit integers as strings).

use std::io::{self, BufRead, Read};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;

/// A key and its value.
pub(crate) type Kv = (Vec<u8>, Vec<u8>);

/// Largest answer document accepted (a range over a few hundred nodes is far below this).
pub(crate) const MAX_DOCUMENT: u64 = 8 << 20;

/// An agent that hands every status to the caller (etcd's error answers carry a message).
/// `timeout`: the whole request, connecting included; `None` for a watch, which only bounds
/// connecting and the answer's head.
pub(crate) fn agent(timeout: Option<Duration>) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(timeout)
        .timeout_connect(timeout.or(Some(Duration::from_secs(2))))
        .proxy(None)
        .build();
    ureq::Agent::new_with_config(config)
}

pub(crate) fn io_error(path: &str, e: ureq::Error) -> io::Error {
    let kind = match &e {
        ureq::Error::Io(io) => io.kind(),
        ureq::Error::Timeout(_) => io::ErrorKind::TimedOut,
        ureq::Error::ConnectionFailed => io::ErrorKind::ConnectionRefused,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("etcd {path}: {e}"))
}

/// The first non-blank line of `r` (one JSON document), at most [`MAX_DOCUMENT`] bytes;
/// `None` at the end of the stream.
pub(crate) fn first_document(r: &mut impl BufRead) -> io::Result<Option<String>> {
    loop {
        let mut line = Vec::new();
        let n = r
            .by_ref()
            .take(MAX_DOCUMENT + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(None);
        }
        if line.len() as u64 > MAX_DOCUMENT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "answer document too long",
            ));
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        return String::from_utf8(line)
            .map(Some)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "answer is not UTF-8"));
    }
}

/// An error answer: `{"error": "...", "message": "...", "code": N}` (the gateway's) or
/// `{"error": {"message": "..."}}` (a streamed RPC's).
#[derive(Deserialize)]
pub(crate) struct Failure {
    #[serde(default)]
    pub error: Option<FailureText>,
    #[serde(default)]
    message: Option<String>,
}

impl Failure {
    pub fn message(self) -> Option<String> {
        self.message.or(self.error.map(FailureText::text))
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum FailureText {
    Plain(String),
    Nested {
        #[serde(default)]
        message: Option<String>,
    },
}

impl FailureText {
    pub fn text(self) -> String {
        match self {
            FailureText::Plain(s) => s,
            FailureText::Nested { message } => message.unwrap_or_else(|| "error".into()),
        }
    }
}

/// A key and its value, base64 (an empty value is omitted).
#[derive(Deserialize)]
pub(crate) struct KeyValue {
    key: String,
    #[serde(default)]
    value: String,
}

impl KeyValue {
    pub fn decode(&self) -> Option<Kv> {
        Some((self.decode_key()?, B64.decode(&self.value).ok()?))
    }

    pub fn decode_key(&self) -> Option<Vec<u8>> {
        B64.decode(&self.key).ok()
    }
}

/// A 64-bit integer, which the gateway writes as a string (and older versions as a number).
pub(crate) fn int<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Text(String),
        Number(i64),
    }
    match Option::<Int>::deserialize(d)? {
        None => Ok(None),
        Some(Int::Number(n)) => Ok(Some(n)),
        Some(Int::Text(s)) => s.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

pub(crate) fn bad(path: &str, what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("etcd {path}: {what}"))
}
