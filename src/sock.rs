//! Raw socket calls with per-call flags: `recv` and `send` that never wait unless asked (so
//! only a caller reading its own answer ever waits) and never raise SIGPIPE, the switch to
//! blocking mode, and the connect check. The client's links use them all; the server's wires
//! (`server/wire.rs`) use `send`, from worker threads.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use mio::net::TcpStream;

/// Puts a connected socket in blocking mode with a receive timeout of `wait` (the link's wait
/// slice). Only a caller reading its own answer waits (see the client's `Link::read_own`); every other read
/// and write passes `MSG_DONTWAIT` (see [`recv`] and [`send`]), so the I/O thread never blocks.
pub(crate) fn make_blocking(fd: RawFd, wait: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: wait.as_secs() as libc::time_t,
        tv_usec: wait.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: plain fcntl/setsockopt calls on a socket the link owns, with a valid timeval.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        ) < 0
        {
            // Waiting without a timeout could outlive the call: back to non-blocking.
            let e = io::Error::last_os_error();
            libc::fcntl(fd, libc::F_SETFL, flags);
            return Err(e);
        }
    }
    Ok(())
}

/// One `recv` into `buf`: without waiting, or (`wait`) until data comes or the receive timeout
/// passes (`WouldBlock`).
pub(crate) fn recv(fd: RawFd, buf: &mut [u8], wait: bool) -> io::Result<usize> {
    let flags = if wait { 0 } else { libc::MSG_DONTWAIT };
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// One `send` of `buf`, never waiting (and never raising SIGPIPE).
pub(crate) fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
    let n = unsafe {
        libc::send(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Whether a non-blocking connect has finished: `Ok(true)` connected, `Ok(false)` not yet.
pub(crate) fn connect_result(stream: &TcpStream) -> io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}
