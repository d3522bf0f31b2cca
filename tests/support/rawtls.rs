//! A blocking TLS peer made directly of a rustls connection over a std socket, for tests that
//! shape the TLS byte stream themselves: frames split across records, records split across
//! reads, KeyUpdate and NewSessionTicket between the records of a call.

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::ops::DerefMut;
use std::time::{Duration, Instant};

use gracerpc::proto::decode;
use rustls::{ConnectionCommon, SideData};

pub struct RawTls<C> {
    pub conn: C,
    pub sock: TcpStream,
    buf: Vec<u8>,
}

impl<C, D> RawTls<C>
where
    C: DerefMut<Target = ConnectionCommon<D>>,
    D: SideData,
{
    pub fn new(conn: C, sock: TcpStream) -> RawTls<C> {
        sock.set_nodelay(true).expect("nodelay");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        RawTls {
            conn,
            sock,
            buf: Vec::new(),
        }
    }

    /// Runs the handshake to its end (blocking).
    pub fn handshake(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.conn.is_handshaking() {
            assert!(Instant::now() < deadline, "handshake did not finish in 5 s");
            match self.conn.complete_io(&mut self.sock) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("handshake: {e}"),
            }
        }
    }

    /// Encrypts each part as records of its own and returns the bytes (not sent yet).
    pub fn records(&mut self, parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in parts {
            let mut rest: &[u8] = p;
            while !rest.is_empty() {
                // rustls takes what its buffer limit allows; the records go out between.
                let n = self.conn.writer().write(rest).expect("plaintext");
                rest = &rest[n..];
                while self.conn.wants_write() {
                    self.conn.write_tls(&mut out).expect("records");
                }
            }
        }
        out
    }

    /// Whatever rustls wants to send (tickets, KeyUpdate), as bytes (not sent yet).
    pub fn pending(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while self.conn.wants_write() {
            self.conn.write_tls(&mut out).expect("records");
        }
        out
    }

    /// Sends `bytes` in writes of `chunk` bytes with a pause between, so the receiver reads
    /// records in pieces.
    pub fn send_chunked(&mut self, bytes: &[u8], chunk: usize) {
        for c in bytes.chunks(chunk.max(1)) {
            self.sock.write_all(c).expect("send");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Reads until one whole frame is there; returns its bytes.
    pub fn next_frame(&mut self, timeout: Duration) -> Vec<u8> {
        self.try_next_frame(timeout).expect("the peer closed")
    }

    /// The same; `None` when the peer closed.
    pub fn try_next_frame(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some((_, n))) = decode(&self.buf, 16 << 20) {
                return Some(self.buf.drain(..n).collect());
            }
            assert!(Instant::now() < deadline, "no frame within {timeout:?}");
            match self.conn.read_tls(&mut self.sock) {
                Ok(0) => return None,
                Ok(_) => {
                    if self.conn.process_new_packets().is_err() {
                        return None;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return None,
            }
            let mut tmp = [0u8; 16 * 1024];
            loop {
                match self.conn.reader().read(&mut tmp) {
                    Ok(0) => break,
                    Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                    Err(_) => break,
                }
            }
            // Answer what rustls must answer (a KeyUpdate of the peer).
            let out = self.pending();
            if !out.is_empty() {
                self.sock.write_all(&out).expect("send");
            }
        }
    }
}

/// What reading to the end of a TLS stream saw.
#[derive(Debug)]
pub struct End {
    /// The peer's close_notify arrived before its FIN.
    pub close_notify: bool,
    /// The peer's TLS alert or bad record, if the stream ended in one.
    pub tls_error: Option<rustls::Error>,
    /// Plaintext bytes read on the way.
    pub plaintext: usize,
}

impl<C, D> RawTls<C>
where
    C: DerefMut<Target = ConnectionCommon<D>>,
    D: SideData,
{
    /// Reads until the peer's FIN. `Err` if the socket was reset (an RST: what rule 4 forbids)
    /// or nothing ended within `timeout`.
    pub fn read_to_fin(&mut self, timeout: Duration) -> Result<End, io::Error> {
        let deadline = Instant::now() + timeout;
        let mut end = End {
            close_notify: false,
            tls_error: None,
            plaintext: 0,
        };
        let mut raw = [0u8; 16 * 1024];
        loop {
            if Instant::now() >= deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no FIN in time"));
            }
            if end.tls_error.is_some() || end.close_notify {
                // TLS is over: read the rest raw.
                match self.sock.read(&mut raw) {
                    Ok(0) => return Ok(end),
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            match self.conn.read_tls(&mut self.sock) {
                Ok(0) => return Ok(end),
                Ok(_) => match self.conn.process_new_packets() {
                    Ok(st) => {
                        end.close_notify = st.peer_has_closed();
                        let mut tmp = [0u8; 16 * 1024];
                        while let Ok(n) = self.conn.reader().read(&mut tmp) {
                            if n == 0 {
                                break;
                            }
                            end.plaintext += n;
                        }
                    }
                    Err(e) => end.tls_error = Some(e),
                },
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends close_notify, then shuts our write side (FIN).
    pub fn close(&mut self) {
        self.conn.send_close_notify();
        let out = self.pending();
        let _ = self.sock.write_all(&out);
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
    }
}
