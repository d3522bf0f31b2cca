//! Moving bytes through one rustls session: the read pass and the write pass both sides use.
//!
//! A read pass hands out plaintext rustls already holds before it reads the socket again, and
//! ends only when the socket is drained **and** rustls holds no plaintext: under TLS a record
//! can carry several frames, so an edge-triggered socket says nothing of plaintext already
//! decrypted. A write pass counts plaintext as written once rustls took it (the records are
//! then rustls's to send), and writes records until none is left or the socket would block.
//!
//! The socket is read in big chunks into [`Incoming`], not by rustls itself: `read_tls` asks
//! for at most 4 KiB at a time (one syscall per 4 KiB, and two for a record of a 4 KiB frame),
//! while one `recv` into `Incoming` takes everything the socket holds, up to 64 KiB, and
//! rustls then takes it from memory. A short `recv` drained the socket, so the pass ends
//! without the extra `recv` that would only say `WouldBlock`, as the plaintext path does.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;

use rustls::ConnectionCommon;

/// Bytes asked of each socket read.
const CHUNK: usize = 64 * 1024;

/// Ciphertext read from the socket that rustls has not taken yet.
#[derive(Default)]
pub(crate) struct Incoming {
    buf: Vec<u8>,
    /// `buf[start..]` is still to give to rustls.
    start: usize,
}

impl Incoming {
    fn is_empty(&self) -> bool {
        self.start == self.buf.len()
    }

    /// Frees the buffer's memory if rustls took every byte of it (an idle connection holds
    /// none).
    pub(crate) fn release_if_empty(&mut self) {
        if self.is_empty() && self.buf.capacity() > 0 {
            self.buf = Vec::new();
            self.start = 0;
        }
    }

    /// One socket read into the (empty) buffer; whether it drained the socket (was short).
    fn fill(&mut self, sock: &impl AsRawFd) -> io::Result<(usize, bool)> {
        self.buf.clear();
        self.start = 0;
        self.buf.reserve(CHUNK);
        let spare = self.buf.spare_capacity_mut();
        let room = spare.len();
        // SAFETY: `spare` is writable memory of `room` bytes that `buf` owns; recv(2) writes
        // at most that many bytes into it.
        let n = unsafe { libc::recv(sock.as_raw_fd(), spare.as_mut_ptr().cast(), room, 0) };
        let Ok(n) = usize::try_from(n) else {
            return Err(io::Error::last_os_error());
        };
        // SAFETY: recv(2) initialized the first `n` bytes of the spare capacity (n ≤ room).
        unsafe { self.buf.set_len(n) };
        Ok((n, n < room))
    }
}

/// What one step of a read pass produced.
pub(crate) enum Pulled {
    /// `n` bytes of plaintext were put in the buffer. `drained`: this step's socket read was
    /// short and rustls holds nothing more to hand out, so the pass may end without another
    /// read (the socket signals again when bytes arrive) — unless the socket said a FIN may
    /// have come with the bytes. `n` is 0 only with `drained`: the read brought part of a
    /// record.
    Plain { n: usize, drained: bool },
    /// The peer's stream ended: `clean` with its close_notify, otherwise a TCP FIN (a
    /// truncation, or a peer that just closed).
    End { clean: bool },
    /// The socket is drained (or would block) and rustls holds no plaintext: the pass is over.
    Blocked,
    /// The peer broke TLS (a bad record, a bad certificate, an alert): rustls queued the alert
    /// to send; the socket itself still works.
    Tls(rustls::Error),
    /// The socket failed.
    Io(io::Error),
}

/// One step of a read pass: plaintext rustls holds, else ciphertext `incoming` holds, else one
/// socket read, until there is plaintext to hand out, the end, or nothing more.
///
/// Only the step that read the socket can say `drained`: a later step cannot tell whether its
/// pass was interrupted (back-pressure) and the socket signalled in between, so after a read
/// of several records the pass ends with one more read, which finds the socket empty.
pub(crate) fn pull<D>(
    conn: &mut ConnectionCommon<D>,
    sock: &impl AsRawFd,
    incoming: &mut Incoming,
    buf: &mut [u8],
) -> Pulled {
    // This step's socket read was short, and the peer has not closed TLS (its close_notify
    // is read as the end, on a next step).
    let mut drained = false;
    loop {
        match conn.reader().read(buf) {
            Ok(0) if !buf.is_empty() => return Pulled::End { clean: true },
            Ok(n) => {
                // A short read of the reader emptied rustls's plaintext.
                let drained = drained && n < buf.len() && incoming.is_empty();
                return Pulled::Plain { n, drained };
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Pulled::End { clean: false };
            }
            Err(e) => return Pulled::Io(e),
        }
        if incoming.is_empty() {
            if drained {
                // Only part of a record came: the rest arrives with the socket's next signal
                // (the caller still reads on if a FIN may have followed).
                return Pulled::Plain { n: 0, drained };
            }
            match incoming.fill(sock) {
                // EOF: rustls learns it from an empty read.
                Ok((0, _)) => return end_of_stream(conn, buf),
                Ok((_, short)) => drained = short,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Pulled::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Pulled::Io(e),
            }
        }
        let mut rest = &incoming.buf[incoming.start..];
        match conn.read_tls(&mut rest) {
            // After close_notify rustls takes nothing more: what follows is not TLS's.
            Ok(0) => return end_of_stream(conn, buf),
            Ok(n) => {
                incoming.start += n;
                match conn.process_new_packets() {
                    Ok(state) => drained &= !state.peer_has_closed(),
                    Err(e) => return Pulled::Tls(e),
                }
            }
            Err(e) => return Pulled::Io(e),
        }
    }
}

/// The socket's stream ended (or rustls took no more after close_notify): the records rustls
/// holds, then clean or not.
fn end_of_stream<D>(conn: &mut ConnectionCommon<D>, buf: &mut [u8]) -> Pulled {
    // An empty read tells rustls the stream ended.
    if let Err(e) = conn.read_tls(&mut io::empty()) {
        return Pulled::Io(e);
    }
    if let Err(e) = conn.process_new_packets() {
        return Pulled::Tls(e);
    }
    match conn.reader().read(buf) {
        Ok(n) if n > 0 => Pulled::Plain { n, drained: false },
        Ok(_) => Pulled::End { clean: true },
        Err(_) => Pulled::End { clean: false },
    }
}

/// What a write pass ended with.
pub(crate) enum Pushed {
    /// Every record is written; plaintext left over (if any) waits for the handshake.
    Done,
    /// The socket would block with records left.
    Blocked,
    /// The socket failed.
    Io(io::Error),
}

/// A core's output as the write pass sees it.
pub(crate) trait Plain {
    /// The bytes still to write.
    fn pending(&self) -> &[u8];
    /// `n` bytes of them were taken.
    fn taken(&mut self, n: usize);
}

impl Plain for crate::proto::ServerConn {
    fn pending(&self) -> &[u8] {
        self.out()
    }
    fn taken(&mut self, n: usize) {
        self.written(n)
    }
}

impl Plain for crate::proto::ClientConn {
    fn pending(&self) -> &[u8] {
        self.out()
    }
    fn taken(&mut self, n: usize) {
        self.written(n)
    }
}

/// One write pass: hands `plain`'s output to rustls (a frame counts as written once rustls took
/// its last byte) and writes records until none is left or the socket would block.
pub(crate) fn push<D>(
    conn: &mut ConnectionCommon<D>,
    sock: &mut impl Write,
    plain: &mut impl Plain,
) -> Pushed {
    loop {
        let mut took = 0;
        while !plain.pending().is_empty() {
            match conn.writer().write(plain.pending()) {
                // rustls's buffer is full (or the session failed): records go out first.
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    took += n;
                    plain.taken(n);
                }
            }
        }
        while conn.wants_write() {
            match conn.write_tls(sock) {
                Ok(0) => return Pushed::Io(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Pushed::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Pushed::Io(e),
            }
        }
        if took == 0 || plain.pending().is_empty() {
            return Pushed::Done;
        }
    }
}

/// Writes records left (an alert, close_notify) until none is left or the socket would block.
pub(crate) fn flush_records<D>(conn: &mut ConnectionCommon<D>, sock: &mut impl Write) -> Pushed {
    struct Nothing;
    impl Plain for Nothing {
        fn pending(&self) -> &[u8] {
            &[]
        }
        fn taken(&mut self, _: usize) {}
    }
    push(conn, sock, &mut Nothing)
}

/// What a TLS failure means, in words a caller's error and a node's log can carry.
pub(crate) fn describe(e: &rustls::Error) -> &'static str {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    match e {
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "TLS: the peer's certificate has expired"
        }
        E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "TLS: the peer's certificate is not valid yet"
        }
        E::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            "TLS: the peer's certificate is not signed by a trusted CA"
        }
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "TLS: the node's certificate does not carry the expected server name"
        }
        E::InvalidCertificate(_) => "TLS: the peer's certificate is invalid",
        E::NoCertificatesPresented => "TLS: the caller presented no client certificate",
        E::AlertReceived(A::CertificateRequired) => "TLS: the node requires a client certificate",
        E::AlertReceived(A::UnknownCA | A::BadCertificate | A::CertificateUnknown) => {
            "TLS: the peer refused our certificate (not from a CA it trusts)"
        }
        E::AlertReceived(A::CertificateExpired) => "TLS: the peer says our certificate expired",
        E::AlertReceived(A::DecryptError | A::BadRecordMac) => {
            "TLS: the peer could not verify us (a certificate it does not trust, or a bad record)"
        }
        E::AlertReceived(_) => "TLS: the peer sent an alert",
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => {
            "TLS: the peer sent bytes that are not TLS here (plaintext, or a renegotiation)"
        }
        E::InappropriateHandshakeMessage { .. } => {
            "TLS: an unexpected handshake message (a renegotiation attempt?)"
        }
        E::DecryptError => "TLS: a record did not decrypt (corrupted or forged)",
        E::PeerIncompatible(_) => "TLS: no version or cipher suite in common",
        _ => "TLS failed",
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::Shutdown;
    use std::os::unix::net::UnixStream;

    use rustls::{ClientConnection, ServerConnection};

    use super::{Incoming, Pulled, pull};
    use crate::tls::{ClientTls, ServerTls, ThrowawayCa};

    /// Moves every record `from` holds into `to`.
    fn pass<A, B>(from: &mut rustls::ConnectionCommon<A>, to: &mut rustls::ConnectionCommon<B>) {
        let mut wire = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut wire).expect("write_tls");
        }
        let mut rest = &wire[..];
        while !rest.is_empty() {
            to.read_tls(&mut rest).expect("read_tls");
            to.process_new_packets().expect("records");
        }
    }

    /// A caller and a node past the handshake (in memory), and a socket pair: the test writes
    /// the node's records into `node_end`, the caller pulls from `caller_end`.
    fn pair() -> (ClientConnection, ServerConnection, UnixStream, UnixStream) {
        let ca = ThrowawayCa::new("session test CA").expect("CA");
        let cert = ca.issue("node", &["127.0.0.1"]).expect("cert");
        let node = ServerTls::from_pem(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes(), None)
            .expect("server TLS");
        let caller = ClientTls::from_pem(ca.cert_pem().as_bytes(), None).expect("client TLS");
        let mut c = caller
            .connect("127.0.0.1:1".parse().expect("addr"))
            .expect("client session");
        let mut s = ServerConnection::new(node.config()).expect("server session");
        while c.is_handshaking() || s.is_handshaking() {
            pass(&mut c, &mut s);
            pass(&mut s, &mut c);
        }
        pass(&mut s, &mut c); // session tickets
        let (caller_end, node_end) = UnixStream::pair().expect("socket pair");
        caller_end.set_nonblocking(true).expect("non-blocking");
        (c, s, caller_end, node_end)
    }

    /// The node's records for `data`.
    fn records(s: &mut ServerConnection, data: &[u8]) -> Vec<u8> {
        s.writer().write_all(data).expect("plaintext");
        let mut wire = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut wire).expect("write_tls");
        }
        wire
    }

    /// Pulls until a step ends the pass (drained, blocked or the end): the plaintext, and the
    /// step that ended it.
    fn pull_pass(
        c: &mut ClientConnection,
        sock: &UnixStream,
        inc: &mut Incoming,
    ) -> (Vec<u8>, Pulled) {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 16 * 1024]; // as the caller's READ_CHUNK
        loop {
            match pull(c, sock, inc, &mut buf) {
                Pulled::Plain { n, drained: false } => got.extend_from_slice(&buf[..n]),
                Pulled::Plain { n, drained: true } => {
                    got.extend_from_slice(&buf[..n]);
                    return (got, Pulled::Plain { n, drained: true });
                }
                end => return (got, end),
            }
        }
    }

    #[test]
    fn one_read_takes_many_records() {
        let (mut c, mut s, caller_end, mut node_end) = pair();
        let data: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
        node_end.write_all(&records(&mut s, &data)).expect("send");
        let mut inc = Incoming::default();
        let (got, end) = pull_pass(&mut c, &caller_end, &mut inc);
        assert!(got == data, "{} bytes of {}", got.len(), data.len());
        // Only the step that read the socket says drained: with several records in that read,
        // the pass ends with the read that finds the socket empty.
        assert!(matches!(
            end,
            Pulled::Blocked | Pulled::Plain { drained: true, .. }
        ));
        assert!(matches!(
            pull_pass(&mut c, &caller_end, &mut inc).1,
            Pulled::Blocked
        ));
    }

    #[test]
    fn a_short_read_of_one_record_ends_the_pass_without_another_read() {
        let (mut c, mut s, caller_end, mut node_end) = pair();
        node_end
            .write_all(&records(&mut s, &[5; 4096]))
            .expect("send");
        let mut inc = Incoming::default();
        let (got, end) = pull_pass(&mut c, &caller_end, &mut inc);
        assert_eq!(got, [5; 4096]);
        assert!(matches!(end, Pulled::Plain { drained: true, .. }));
    }

    #[test]
    fn part_of_a_record_is_drained_and_the_rest_completes_it() {
        let (mut c, mut s, caller_end, mut node_end) = pair();
        let wire = records(&mut s, b"one frame's bytes");
        node_end.write_all(&wire[..10]).expect("send");
        let mut inc = Incoming::default();
        let (got, end) = pull_pass(&mut c, &caller_end, &mut inc);
        assert!(got.is_empty());
        assert!(matches!(
            end,
            Pulled::Plain {
                n: 0,
                drained: true
            }
        ));
        node_end.write_all(&wire[10..]).expect("send");
        let (got, _) = pull_pass(&mut c, &caller_end, &mut inc);
        assert_eq!(got, b"one frame's bytes");
    }

    /// Read passes until one ends with something other than plaintext: all the plaintext,
    /// and how the last pass ended.
    fn pull_to_end(c: &mut ClientConnection, from: &UnixStream) -> (Vec<u8>, Pulled) {
        let mut inc = Incoming::default();
        let (mut got, mut end) = pull_pass(c, from, &mut inc);
        while matches!(end, Pulled::Plain { .. }) {
            let (more, e) = pull_pass(c, from, &mut inc);
            got.extend(more);
            end = e;
        }
        (got, end)
    }

    #[test]
    fn close_notify_then_fin_is_a_clean_end_after_the_data() {
        let (mut c, mut s, caller_end, mut node_end) = pair();
        let mut wire = records(&mut s, b"last answer");
        s.send_close_notify();
        while s.wants_write() {
            s.write_tls(&mut wire).expect("close_notify");
        }
        node_end.write_all(&wire).expect("send");
        node_end.shutdown(Shutdown::Write).expect("FIN");
        let (got, end) = pull_to_end(&mut c, &caller_end);
        assert_eq!(got, b"last answer");
        assert!(matches!(end, Pulled::End { clean: true }));
    }

    #[test]
    fn fin_without_close_notify_is_an_unclean_end() {
        let (mut c, mut s, caller_end, mut node_end) = pair();
        node_end.write_all(&records(&mut s, b"cut")).expect("send");
        node_end.shutdown(Shutdown::Write).expect("FIN");
        let (got, end) = pull_to_end(&mut c, &caller_end);
        assert_eq!(got, b"cut");
        assert!(matches!(end, Pulled::End { clean: false }));
    }
}
