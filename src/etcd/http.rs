//! Just enough HTTP/1.1 to talk to etcd's JSON gateway: `POST` with a JSON body over a blocking
//! [`TcpStream`], one connection per request (`Connection: close`), every step bounded by a
//! timeout. Answers come with `Content-Length` or chunked; a watch is one long chunked answer
//! whose body is a sequence of JSON documents, one per line, read with [`Stream`].
//!
//! Requests are rare (a lease keep-alive every few seconds, a list on each (re)connection), so
//! one connection per request costs nothing that matters and leaves no pool to manage.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Largest header block accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest body accepted (a range over a few hundred nodes is far below this).
const MAX_BODY: usize = 8 << 20;
/// Largest single line of a streamed body (one watch answer).
const MAX_LINE: usize = 8 << 20;

/// Where etcd listens and how long a request may take.
#[derive(Clone, Debug)]
pub(crate) struct Http {
    /// `host:port`.
    pub authority: String,
    /// Connecting, and each read or write, at most this long.
    pub timeout: Duration,
}

/// A finished answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub body: String,
}

impl Http {
    /// `POST path` with `body` (JSON); the whole answer, whatever its status. The total time is
    /// bounded by `deadline` as well as by the per-step timeout.
    pub fn post(&self, path: &str, body: &str) -> io::Result<Answer> {
        let deadline = Instant::now() + self.timeout;
        let mut stream = self.connect(deadline)?;
        send(&mut stream, &self.authority, path, body)?;
        let mut reader = Reader::new(stream, deadline);
        let head = reader.head()?;
        let mut out = Vec::new();
        match head.framing {
            Framing::Length(n) => {
                if n > MAX_BODY {
                    return Err(bad(format!("answer of {n} bytes is too large")));
                }
                reader.exact(n, &mut out)?;
            }
            Framing::Chunked => {
                let mut chunks = Chunked::default();
                while chunks.next(&mut reader, &mut out)? {
                    if out.len() > MAX_BODY {
                        return Err(bad("answer too large"));
                    }
                }
            }
            Framing::Close => reader.read_to_end(&mut out)?,
        }
        let body = String::from_utf8(out).map_err(|_| bad("answer is not UTF-8"))?;
        Ok(Answer {
            status: head.status,
            body,
        })
    }

    /// `POST path` with `body` and return the open answer, to read line by line (a watch).
    /// Reads wait at most `poll` each, so the caller can look at its stop flag.
    pub fn stream(&self, path: &str, body: &str, poll: Duration) -> io::Result<Stream> {
        let deadline = Instant::now() + self.timeout;
        let mut stream = self.connect(deadline)?;
        send(&mut stream, &self.authority, path, body)?;
        let mut reader = Reader::new(stream, deadline);
        let head = reader.head()?;
        if head.status != 200 {
            return Err(bad(format!("watch answered HTTP {}", head.status)));
        }
        reader.deadline = None;
        reader
            .stream
            .set_read_timeout(Some(poll.max(Duration::from_millis(1))))?;
        Ok(Stream {
            reader,
            chunked: matches!(head.framing, Framing::Chunked),
            chunks: Chunked::default(),
            body: Vec::new(),
            ended: false,
        })
    }

    fn connect(&self, deadline: Instant) -> io::Result<TcpStream> {
        let addrs: Vec<SocketAddr> = self.authority.to_socket_addrs()?.collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address for the registry");
        for addr in addrs {
            let left = left(deadline)?;
            match TcpStream::connect_timeout(&addr, left) {
                Ok(s) => {
                    s.set_nodelay(true)?;
                    s.set_write_timeout(Some(left))?;
                    return Ok(s);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

fn left(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "registry request timed out",
        ));
    }
    Ok(left)
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn send(stream: &mut TcpStream, authority: &str, path: &str, body: &str) -> io::Result<()> {
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes())
}

/// How the body's end is found.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    Close,
}

struct Head {
    status: u16,
    framing: Framing,
}

/// A buffered reader with a deadline (for whole answers) or a per-read timeout (for streams).
struct Reader {
    stream: TcpStream,
    buf: Vec<u8>,
    at: usize,
    deadline: Option<Instant>,
}

impl Reader {
    fn new(stream: TcpStream, deadline: Instant) -> Reader {
        Reader {
            stream,
            buf: Vec::new(),
            at: 0,
            deadline: Some(deadline),
        }
    }

    /// Reads more bytes into the buffer. `Ok(false)` at the end of the stream.
    fn fill(&mut self) -> io::Result<bool> {
        if self.at > 0 && self.at == self.buf.len() {
            self.buf.clear();
            self.at = 0;
        }
        if let Some(d) = self.deadline {
            self.stream.set_read_timeout(Some(left(d)?))?;
        }
        let mut tmp = [0u8; 8192];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.at..]
    }

    /// A line ending in CRLF (returned without it).
    fn line(&mut self, limit: usize) -> io::Result<String> {
        loop {
            if let Some(i) = self.pending().windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.pending()[..i]).into_owned();
                self.at += i + 2;
                return Ok(line);
            }
            if self.pending().len() > limit {
                return Err(bad("header line too long"));
            }
            if !self.fill()? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "registry closed the connection mid-answer",
                ));
            }
        }
    }

    fn head(&mut self) -> io::Result<Head> {
        let status_line = self.line(MAX_HEAD)?;
        // "HTTP/1.1 200 OK"
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        let status = parts.next().and_then(|s| s.parse::<u16>().ok());
        let Some(status) = status.filter(|_| version.starts_with("HTTP/1.")) else {
            return Err(bad(format!("not an HTTP answer: {status_line:?}")));
        };
        let mut framing = Framing::Close;
        let mut total = status_line.len();
        loop {
            let line = self.line(MAX_HEAD)?;
            total += line.len() + 2;
            if total > MAX_HEAD {
                return Err(bad("header block too long"));
            }
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(bad(format!("bad header line {line:?}")));
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("transfer-encoding") {
                if value.to_ascii_lowercase().ends_with("chunked") {
                    framing = Framing::Chunked;
                }
            } else if name.eq_ignore_ascii_case("content-length") && framing != Framing::Chunked {
                let n = value
                    .parse()
                    .map_err(|_| bad(format!("bad Content-Length {value:?}")))?;
                framing = Framing::Length(n);
            }
        }
        Ok(Head { status, framing })
    }

    /// Exactly `n` body bytes into `out`.
    fn exact(&mut self, n: usize, out: &mut Vec<u8>) -> io::Result<()> {
        while self.pending().len() < n {
            if !self.fill()? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "registry closed the connection mid-body",
                ));
            }
        }
        out.extend_from_slice(&self.pending()[..n]);
        self.at += n;
        Ok(())
    }

    fn read_to_end(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        loop {
            out.extend_from_slice(self.pending());
            self.at = self.buf.len();
            if out.len() > MAX_BODY {
                return Err(bad("answer too large"));
            }
            if !self.fill()? {
                return Ok(());
            }
        }
    }
}

/// Chunked transfer decoding, one chunk at a time.
#[derive(Default)]
struct Chunked {
    done: bool,
}

impl Chunked {
    /// Appends the next chunk to `out`. `Ok(false)` after the last (empty) chunk.
    fn next(&mut self, r: &mut Reader, out: &mut Vec<u8>) -> io::Result<bool> {
        if self.done {
            return Ok(false);
        }
        let size_line = r.line(1024)?;
        let size_text = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| bad(format!("bad chunk size {size_line:?}")))?;
        if size > MAX_LINE {
            return Err(bad("chunk too large"));
        }
        if size == 0 {
            // Trailers (none expected) end with an empty line.
            while !r.line(MAX_HEAD)?.is_empty() {}
            self.done = true;
            return Ok(false);
        }
        r.exact(size, out)?;
        if !r.line(0)?.is_empty() {
            return Err(bad("chunk not followed by CRLF"));
        }
        Ok(true)
    }
}

/// An open streamed answer, read one line (one JSON document) at a time.
pub(crate) struct Stream {
    reader: Reader,
    chunked: bool,
    chunks: Chunked,
    body: Vec<u8>,
    ended: bool,
}

/// What [`Stream::next_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// One complete line (without its newline).
    Text(String),
    /// Nothing within the poll interval.
    Idle,
    /// The answer ended.
    End,
}

impl Stream {
    /// The next complete line, or `Idle` if none arrived within the poll interval.
    pub fn next_line(&mut self) -> io::Result<Line> {
        loop {
            if let Some(i) = self.body.iter().position(|&b| b == b'\n') {
                let rest = self.body.split_off(i + 1);
                let mut line = std::mem::replace(&mut self.body, rest);
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let text = String::from_utf8(line).map_err(|_| bad("stream is not UTF-8"))?;
                return Ok(Line::Text(text));
            }
            if self.body.len() > MAX_LINE {
                return Err(bad("streamed line too long"));
            }
            if self.ended {
                return Ok(Line::End);
            }
            match self.read_more() {
                Ok(true) => {}
                Ok(false) => self.ended = true,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(Line::Idle);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Moves more body bytes into `body`. `Ok(false)` at the end of the answer.
    fn read_more(&mut self) -> io::Result<bool> {
        if !self.chunked {
            self.body.extend_from_slice(self.reader.pending());
            self.reader.at = self.reader.buf.len();
            let more = self.reader.fill()?;
            self.body.extend_from_slice(self.reader.pending());
            self.reader.at = self.reader.buf.len();
            return Ok(more);
        }
        // A read timeout may cut a chunk anywhere: decode a chunk only once it is all buffered,
        // so a timeout never leaves the decoder halfway.
        if self.chunks.done {
            return Ok(false);
        }
        if whole_chunk_buffered(&self.reader) != Some(false)
            && self.reader.pending().windows(2).any(|w| w == b"\r\n")
        {
            return self.chunks.next(&mut self.reader, &mut self.body);
        }
        if self.reader.pending().len() > MAX_LINE + 1024 {
            return Err(bad("chunk too large"));
        }
        if self.reader.fill()? {
            Ok(true)
        } else {
            Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "registry closed the stream mid-chunk",
            ))
        }
    }
}

/// Whether the buffered bytes hold a whole chunk (size line, data, CRLF; or the last chunk and
/// its final empty line). `None` if the size line is not even complete.
fn whole_chunk_buffered(r: &Reader) -> Option<bool> {
    let p = r.pending();
    let eol = p.windows(2).position(|w| w == b"\r\n")?;
    let text = std::str::from_utf8(&p[..eol]).ok()?;
    let size = usize::from_str_radix(text.split(';').next()?.trim(), 16).ok();
    let Some(size) = size else {
        return Some(true); // let the decoder report the bad size
    };
    if size == 0 {
        return Some(p[eol + 2..].windows(2).any(|w| w == b"\r\n"));
    }
    Some(p.len() >= eol + 2 + size + 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves one connection with `answer` (written in `pieces`, with pauses), returns the
    /// authority.
    fn serve(pieces: Vec<&'static [u8]>, pause: Duration) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = [0u8; 4096];
            let _ = s.read(&mut req);
            for p in pieces {
                let _ = s.write_all(p);
                let _ = s.flush();
                std::thread::sleep(pause);
            }
        });
        addr.to_string()
    }

    fn http(authority: String) -> Http {
        Http {
            authority,
            timeout: Duration::from_secs(2),
        }
    }

    #[test]
    fn content_length_answer() {
        let a = serve(
            vec![b"HTTP/1.1 404 Not Found\r\nContent-Length: 7\r\n\r\n{\"a\":1}"],
            Duration::ZERO,
        );
        let ans = http(a).post("/v3/x", "{}").unwrap();
        assert_eq!(ans.status, 404);
        assert_eq!(ans.body, "{\"a\":1}");
    }

    #[test]
    fn chunked_answer_cut_anywhere() {
        let a = serve(
            vec![
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"4\r\n{\"a\"\r\n",
                b"3\r",
                b"\n:1}\r\n0\r\n\r\n",
            ],
            Duration::from_millis(5),
        );
        let ans = http(a).post("/v3/x", "{}").unwrap();
        assert_eq!((ans.status, ans.body.as_str()), (200, "{\"a\":1}"));
    }

    #[test]
    fn stream_yields_lines_across_chunks_and_idles() {
        let a = serve(
            vec![
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"6\r\n{\"a\":1\r\n",
                b"5\r\n}\n{\"b\r\n",
                b"4\r\n\":2}\r\n",
                b"1\r\n\n\r\n0\r\n\r\n",
            ],
            Duration::from_millis(60),
        );
        let mut s = http(a)
            .stream("/v3/watch", "{}", Duration::from_millis(20))
            .unwrap();
        let mut lines = Vec::new();
        let mut idles = 0;
        loop {
            match s.next_line().unwrap() {
                Line::Text(t) => lines.push(t),
                Line::Idle => idles += 1,
                Line::End => break,
            }
        }
        assert_eq!(lines, ["{\"a\":1}", "{\"b\":2}"]);
        assert!(idles > 0, "the pauses show up as idle polls");
    }

    #[test]
    fn garbage_and_early_close_are_errors() {
        let a = serve(vec![b"SSH-2.0-nope\r\n\r\n"], Duration::ZERO);
        assert!(http(a).post("/", "").is_err());
        let a = serve(
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"],
            Duration::ZERO,
        );
        assert!(http(a).post("/", "").is_err());
        let a = serve(
            vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"],
            Duration::ZERO,
        );
        assert!(http(a).post("/", "").is_err());
    }

    #[test]
    fn a_silent_server_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let h = Http {
            authority: l.local_addr().unwrap().to_string(),
            timeout: Duration::from_millis(100),
        };
        let t = Instant::now();
        assert!(h.post("/", "{}").is_err());
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}
