//! A watch: one long streamed answer to `POST /v3/watch`, a JSON document per line.
//!
//! The answer is read on a thread of its own, one line at a time, and each line handed over a
//! bounded channel, so [`Watch::next`] can wait at most its poll interval (the watcher looks at
//! its stop flag in between) without a read timeout ever cutting the HTTP decoder halfway.
//! Dropping the watch shuts its connection down, which ends that thread at once.

use std::io::{self, BufReader};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde::Deserialize;

use super::gateway::{self, Failure, KeyValue, Kv, bad};

/// Lines read ahead of the watcher (each a batch of events).
const LINES_AHEAD: usize = 64;

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

/// An open watch.
pub(crate) struct Watch {
    lines: Receiver<io::Result<String>>,
    poll: Duration,
    /// Its own agent, so shutting it down ends this watch's connection and nothing else.
    agent: ureq::Agent,
}

impl Watch {
    /// Sends the watch request; `timeout` bounds connecting and the answer's head.
    pub fn open(
        url: &str,
        body: &serde_json::Value,
        timeout: Duration,
        poll: Duration,
    ) -> io::Result<Watch> {
        let agent = gateway::agent(None);
        let ans = agent
            .post(url)
            .config()
            .timeout_recv_response(Some(timeout))
            .timeout_send_request(Some(timeout))
            .build()
            .header("content-type", "application/json")
            .send(body.to_string())
            .map_err(|e| gateway::io_error("/v3/watch", e))?;
        if ans.status() != 200 {
            return Err(bad(
                "/v3/watch",
                &format!("watch answered HTTP {}", ans.status()),
            ));
        }
        let reader = ans.into_body().into_with_config().limit(u64::MAX).reader();
        let (tx, lines) = crossbeam_channel::bounded(LINES_AHEAD);
        std::thread::Builder::new()
            .name("gracerpc-etcd-watch-read".into())
            .spawn(move || read_lines(BufReader::new(reader), tx))?;
        Ok(Watch {
            lines,
            poll: poll.max(Duration::from_millis(1)),
            agent,
        })
    }

    /// The next batch of changes, or `Idle`. An error means the watch is over (the connection
    /// ended, or etcd canceled it, e.g. because the revision was compacted): list again.
    pub fn next(&mut self) -> io::Result<Watched> {
        let line = match self.lines.recv_timeout(self.poll) {
            Ok(line) => line?,
            Err(RecvTimeoutError::Timeout) => return Ok(Watched::Idle),
            Err(RecvTimeoutError::Disconnected) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "etcd ended the watch",
                ));
            }
        };
        parse(&line)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.agent.clone().shutdown();
    }
}

/// Hands every document of the stream to `tx`, then the reason it ended.
fn read_lines(mut r: impl io::BufRead, tx: Sender<io::Result<String>>) {
    loop {
        let line = match gateway::first_document(&mut r) {
            Ok(Some(line)) => Ok(line),
            Ok(None) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "etcd ended the watch",
            )),
            Err(e) => Err(e),
        };
        let last = line.is_err();
        if tx.send(line).is_err() || last {
            return;
        }
    }
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    result: Option<Batch>,
    #[serde(flatten)]
    flat: Batch,
}

#[derive(Deserialize, Default)]
struct Batch {
    #[serde(default)]
    canceled: bool,
    #[serde(default)]
    cancel_reason: Option<String>,
    #[serde(default)]
    events: Vec<RawEvent>,
}

#[derive(Deserialize)]
struct RawEvent {
    /// PUT is the enum's default, so etcd leaves `type` out for it.
    #[serde(default, rename = "type")]
    kind: Option<String>,
    kv: Option<KeyValue>,
}

/// One watch document.
fn parse(line: &str) -> io::Result<Watched> {
    if let Some(e) = serde_json::from_str::<Failure>(line)
        .ok()
        .and_then(|f| f.error)
    {
        return Err(io::Error::other(format!("etcd watch: {}", e.text())));
    }
    let answer: Answer = serde_json::from_str(line)
        .map_err(|e| bad("/v3/watch", &format!("answer is not JSON: {e}")))?;
    let batch = answer.result.unwrap_or(answer.flat);
    if batch.canceled {
        let why = batch.cancel_reason.unwrap_or_else(|| "canceled".into());
        return Err(io::Error::other(format!("etcd canceled the watch: {why}")));
    }
    let mut events = Vec::with_capacity(batch.events.len());
    for ev in batch.events {
        let Some(kv) = ev.kv else {
            return Err(bad("/v3/watch", "event without kv"));
        };
        match ev.kind.as_deref() {
            Some("DELETE") => {
                let key = kv.decode_key().ok_or_else(|| bad("/v3/watch", "bad key"))?;
                events.push(Event::Delete(key));
            }
            None | Some("PUT") => {
                events.push(Event::Put(
                    kv.decode().ok_or_else(|| bad("/v3/watch", "bad kv"))?,
                ));
            }
            Some(other) => return Err(bad("/v3/watch", &format!("event type {other}"))),
        }
    }
    Ok(Watched::Events(events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::Instant;

    /// Serves one connection: `head`, then each piece of `body` as one chunk (or, with `head`
    /// carrying a Content-Length, as is), with pauses; returns the watch URL and a receiver told
    /// when the client closed the connection.
    fn serve(head: &'static str, body: Vec<&'static str>, chunked: bool) -> (String, Receiver<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v3/watch", l.local_addr().unwrap());
        let (closed_tx, closed) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = [0u8; 4096];
            let _ = s.read(&mut req);
            let _ = s.write_all(head.as_bytes());
            for p in body {
                let piece = if chunked {
                    format!("{:x}\r\n{p}\r\n", p.len())
                } else {
                    p.to_owned()
                };
                // Cut every piece in two, so chunk headers arrive split too.
                let (a, b) = piece.split_at(piece.len() / 2);
                for part in [a, b] {
                    let _ = s.write_all(part.as_bytes());
                    let _ = s.flush();
                    std::thread::sleep(Duration::from_millis(40));
                }
            }
            // Wait for the client to close its end.
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            // (Skipping whatever of the request is still unread.)
            loop {
                match s.read(&mut req) {
                    Ok(0) => {
                        let _ = closed_tx.send(());
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        (url, closed)
    }

    fn open(url: &str) -> Watch {
        let body = serde_json::json!({});
        Watch::open(
            url,
            &body,
            Duration::from_secs(2),
            Duration::from_millis(20),
        )
        .unwrap()
    }

    #[test]
    fn documents_across_chunks_idle_polls_and_a_prompt_close() {
        let (url, closed) = serve(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            vec![
                r#"{"result":{"#,
                r#""events":[{"kv":{"key":""#,
                "YQ==\"}}]}}\n\n{\"re",
                r#"sult":{"events":[{"type":"DELETE","kv":{"#,
            ],
            true,
        );
        let mut w = open(&url);
        let mut got = Vec::new();
        let mut idles = 0;
        let t = Instant::now();
        while got.is_empty() && t.elapsed() < Duration::from_secs(10) {
            match w.next().unwrap() {
                Watched::Events(e) => got.extend(e),
                Watched::Idle => idles += 1,
            }
        }
        assert_eq!(got, [Event::Put((b"a".to_vec(), vec![]))]);
        assert!(idles > 0, "the pauses show up as idle polls");
        // The second document is still incomplete: dropping the watch closes the connection.
        drop(w);
        assert!(
            closed.recv_timeout(Duration::from_secs(5)).is_ok(),
            "dropping the watch closes its connection"
        );
    }

    #[test]
    fn cancel_error_and_end_end_the_watch() {
        const DOC: &str = r#"{"result":{"canceled":true,"cancel_reason":"gone"}}"#;
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 51\r\n\r\n";
        let (url, _closed) = serve(head, vec![DOC], false);
        let mut w = open(&url);
        let t = Instant::now();
        let err = loop {
            match w.next() {
                Ok(Watched::Idle) if t.elapsed() < Duration::from_secs(10) => {}
                other => break other.unwrap_err(),
            }
        };
        assert!(err.to_string().contains("gone"), "{err}");
        assert!(matches!(
            parse(r#"{"error":{"grpc_code":14,"message":"unavailable"}}"#),
            Err(e) if e.to_string().contains("unavailable")
        ));
    }
}
