//! The handoff messages and their framing, sans-IO: bytes in, messages out.
//!
//! ```text
//! frame   := kind:u8  len:u16 (big-endian)  payload[len]          (len <= MAX_PAYLOAD)
//! HELLO     1  magic "GRPCHO" version:u16 pid:u32                  new -> old
//! LISTENERS 2  pid:u32 count:u8 { name_len:u8 name }*count         old -> new, + count fds
//! READY     3  pid:u32                                             new -> old
//! COMMIT    4  (empty)                                             old -> new
//! ACK       5  pid:u32                                             new -> old
//! ABORT     6  reason (UTF-8)                                      either way
//! ```
//!
//! The descriptors of LISTENERS travel as SCM_RIGHTS ancillary data of the same `sendmsg`, in
//! the order of the names.

use std::fmt;

/// The protocol version this build speaks.
pub const VERSION: u16 = 1;
/// Bytes a HELLO starts with, so a stray client of the path is told apart.
pub const MAGIC: &[u8; 6] = b"GRPCHO";
/// The largest payload (bounded buffers on both sides).
pub const MAX_PAYLOAD: usize = 4096;
/// The most listeners one handoff carries.
pub const MAX_LISTENERS: usize = 16;
/// The longest listener name.
pub const MAX_NAME: usize = 64;
const HEADER: usize = 3;

/// One handoff message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    /// The new process introduces itself.
    Hello {
        /// Protocol version.
        version: u16,
        /// Its pid.
        pid: u32,
    },
    /// The old process's listeners, by name; their descriptors ride along.
    Listeners {
        /// The old process's pid.
        pid: u32,
        /// One name per descriptor, in order.
        names: Vec<String>,
    },
    /// The new process has started and is ready, without accepting.
    Ready {
        /// Its pid.
        pid: u32,
    },
    /// The old process commits: the new one may accept.
    Commit,
    /// The new process accepts now.
    Ack {
        /// Its pid.
        pid: u32,
    },
    /// The sender gives up; the handoff is off.
    Abort {
        /// Why, for the log.
        reason: String,
    },
}

impl Msg {
    /// The message's name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Msg::Hello { .. } => "HELLO",
            Msg::Listeners { .. } => "LISTENERS",
            Msg::Ready { .. } => "READY",
            Msg::Commit => "COMMIT",
            Msg::Ack { .. } => "ACK",
            Msg::Abort { .. } => "ABORT",
        }
    }

    /// Descriptors that travel with this message.
    pub fn fd_count(&self) -> usize {
        match self {
            Msg::Listeners { names, .. } => names.len(),
            _ => 0,
        }
    }
}

/// Bytes that are not a valid handoff message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MsgError {
    /// An unknown message kind (another program on the path, or a newer protocol).
    UnknownKind(u8),
    /// A payload longer than [`MAX_PAYLOAD`].
    TooLong(usize),
    /// A payload that does not parse as its kind.
    Malformed(&'static str),
    /// A HELLO without the magic bytes: not a gracerpc process.
    BadMagic,
    /// A HELLO of a protocol version this build does not speak.
    Version(u16),
    /// A message that cannot be encoded (too many or too long names).
    TooBig(&'static str),
}

impl fmt::Display for MsgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MsgError::UnknownKind(k) => write!(f, "unknown handoff message kind {k}"),
            MsgError::TooLong(n) => write!(f, "handoff message of {n} bytes (max {MAX_PAYLOAD})"),
            MsgError::Malformed(what) => write!(f, "malformed handoff message: {what}"),
            MsgError::BadMagic => write!(f, "the peer does not speak the gracerpc handoff"),
            MsgError::Version(v) => write!(
                f,
                "handoff protocol version {v} (this build speaks {VERSION}): upgrade across \
                 compatible versions or restart without handoff"
            ),
            MsgError::TooBig(what) => write!(f, "cannot encode handoff message: {what}"),
        }
    }
}

impl std::error::Error for MsgError {}

/// Appends the frame of `msg` to `out`.
pub fn encode(msg: &Msg, out: &mut Vec<u8>) -> Result<(), MsgError> {
    let mut p = Vec::new();
    let kind = match msg {
        Msg::Hello { version, pid } => {
            p.extend_from_slice(MAGIC);
            p.extend_from_slice(&version.to_be_bytes());
            p.extend_from_slice(&pid.to_be_bytes());
            1
        }
        Msg::Listeners { pid, names } => {
            if names.len() > MAX_LISTENERS {
                return Err(MsgError::TooBig("more than 16 listeners"));
            }
            p.extend_from_slice(&pid.to_be_bytes());
            p.push(names.len() as u8);
            for n in names {
                if n.is_empty() || n.len() > MAX_NAME {
                    return Err(MsgError::TooBig(
                        "a listener name is empty or over 64 bytes",
                    ));
                }
                p.push(n.len() as u8);
                p.extend_from_slice(n.as_bytes());
            }
            2
        }
        Msg::Ready { pid } => {
            p.extend_from_slice(&pid.to_be_bytes());
            3
        }
        Msg::Commit => 4,
        Msg::Ack { pid } => {
            p.extend_from_slice(&pid.to_be_bytes());
            5
        }
        Msg::Abort { reason } => {
            let mut end = reason.len().min(MAX_PAYLOAD);
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            p.extend_from_slice(&reason.as_bytes()[..end]);
            6
        }
    };
    out.push(kind);
    out.extend_from_slice(&(p.len() as u16).to_be_bytes());
    out.extend_from_slice(&p);
    Ok(())
}

/// Decodes one message from the front of `buf`: `Ok(None)` if it is not complete yet, else
/// the message and the bytes it used.
pub fn decode(buf: &[u8]) -> Result<Option<(Msg, usize)>, MsgError> {
    let Some(head) = buf.first_chunk::<HEADER>() else {
        return Ok(None);
    };
    let kind = head[0];
    if !(1..=6).contains(&kind) {
        return Err(MsgError::UnknownKind(kind));
    }
    let len = usize::from(u16::from_be_bytes([head[1], head[2]]));
    if len > MAX_PAYLOAD {
        return Err(MsgError::TooLong(len));
    }
    let Some(p) = buf.get(HEADER..HEADER + len) else {
        return Ok(None);
    };
    let mut r = Reader(p);
    let msg = match kind {
        1 => {
            if r.take(MAGIC.len())? != MAGIC {
                return Err(MsgError::BadMagic);
            }
            let version = r.u16()?;
            if version != VERSION {
                return Err(MsgError::Version(version));
            }
            Msg::Hello {
                version,
                pid: r.u32()?,
            }
        }
        2 => {
            let pid = r.u32()?;
            let count = usize::from(r.u8()?);
            if count > MAX_LISTENERS {
                return Err(MsgError::Malformed("more than 16 listeners"));
            }
            let mut names = Vec::with_capacity(count);
            for _ in 0..count {
                let n = usize::from(r.u8()?);
                if n == 0 || n > MAX_NAME {
                    return Err(MsgError::Malformed("listener name empty or over 64 bytes"));
                }
                let name = std::str::from_utf8(r.take(n)?)
                    .map_err(|_| MsgError::Malformed("listener name is not UTF-8"))?;
                names.push(name.to_owned());
            }
            Msg::Listeners { pid, names }
        }
        3 => Msg::Ready { pid: r.u32()? },
        4 => Msg::Commit,
        5 => Msg::Ack { pid: r.u32()? },
        _ => Msg::Abort {
            reason: String::from_utf8_lossy(r.take(len)?).into_owned(),
        },
    };
    if !r.0.is_empty() {
        return Err(MsgError::Malformed("trailing bytes"));
    }
    Ok(Some((msg, HEADER + len)))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], MsgError> {
        if self.0.len() < n {
            return Err(MsgError::Malformed("payload too short"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, MsgError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, MsgError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, MsgError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Msg> {
        vec![
            Msg::Hello {
                version: VERSION,
                pid: 42,
            },
            Msg::Listeners {
                pid: 7,
                names: vec!["rpc".into(), "admin".into(), "upgrade".into()],
            },
            Msg::Ready { pid: 42 },
            Msg::Commit,
            Msg::Ack { pid: 42 },
            Msg::Abort {
                reason: "not ready in 30 s".into(),
            },
        ]
    }

    #[test]
    fn every_message_round_trips_even_byte_by_byte() {
        let mut buf = Vec::new();
        for m in all() {
            encode(&m, &mut buf).unwrap();
        }
        // Whole.
        let mut at = 0;
        for m in all() {
            let (got, n) = decode(&buf[at..]).unwrap().unwrap();
            assert_eq!(got, m);
            at += n;
        }
        assert_eq!(at, buf.len());
        // Every prefix of a frame is incomplete, never an error.
        let mut one = Vec::new();
        encode(&all()[1], &mut one).unwrap();
        for cut in 0..one.len() {
            assert_eq!(decode(&one[..cut]), Ok(None), "prefix of {cut} bytes");
        }
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        assert_eq!(decode(&[9, 0, 0]), Err(MsgError::UnknownKind(9)));
        assert_eq!(decode(&[1, 0xff, 0xff]), Err(MsgError::TooLong(0xffff)));
        let mut hello = Vec::new();
        encode(&Msg::Hello { version: 1, pid: 1 }, &mut hello).unwrap();
        let mut bad = hello.clone();
        bad[3] = b'X';
        assert_eq!(decode(&bad), Err(MsgError::BadMagic));
        let mut v2 = hello.clone();
        v2[3 + 6..3 + 8].copy_from_slice(&2u16.to_be_bytes());
        assert_eq!(decode(&v2), Err(MsgError::Version(2)));
        // A LISTENERS whose count promises more names than it has.
        assert!(matches!(
            decode(&[2, 0, 6, 0, 0, 0, 1, 3, 1]),
            Err(MsgError::Malformed(_))
        ));
        // Trailing bytes in a fixed-size message.
        assert!(matches!(decode(&[4, 0, 1, 0]), Err(MsgError::Malformed(_))));
        // Random bytes never panic.
        let mut x = 0x9e37_79b9_u32;
        for _ in 0..20_000 {
            let mut b = [0u8; 12];
            for v in &mut b {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *v = x as u8;
            }
            b[0] %= 8;
            b[1] = 0;
            b[2] %= 12;
            let _ = decode(&b);
        }
    }

    #[test]
    fn oversized_messages_are_refused_on_encode() {
        let names = (0..17).map(|i| format!("l{i}")).collect();
        let mut out = Vec::new();
        assert!(encode(&Msg::Listeners { pid: 1, names }, &mut out).is_err());
        let long = "x".repeat(65);
        assert!(
            encode(
                &Msg::Listeners {
                    pid: 1,
                    names: vec![long]
                },
                &mut out
            )
            .is_err()
        );
        assert_eq!(Msg::Commit.fd_count(), 0);
    }
}
