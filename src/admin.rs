//! The admin endpoint: `/metrics` (Prometheus text format), `/readyz` and `/livez`, served by
//! `tiny_http` on a thread of its own — never on the RPC event loop.
//!
//! ```no_run
//! use gracerpc::admin::AdminServer;
//! use gracerpc::server::{Request, Server};
//! use prometheus_client::registry::Registry;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::builder()
//!     .metrics()
//!     .inline_handler("echo", |r: &Request<'_>| Ok(r.body.to_vec()))
//!     .spawn()?;
//! let mut registry = Registry::with_prefix("gracerpc");
//! let metrics = server.metrics();
//! registry.register_collector(Box::new(metrics.clone()));
//! let admin = AdminServer::bind("127.0.0.1:9100", registry, move || metrics.is_serving())?;
//! println!("admin on http://{}/metrics", admin.local_addr());
//! # Ok(())
//! # }
//! ```
//!
//! [`AdminServer::from_listener`] builds it on a listening socket bound elsewhere (handed over
//! by a previous process, for instance).

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;

use prometheus_client::registry::Registry;

/// OpenMetrics, for scrapers that ask for it (Prometheus does).
const OPENMETRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The classic Prometheus text format, for everything else (curl, `promtool check metrics`).
const TEXT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A running admin endpoint. Dropping it stops its thread and closes the listening socket.
pub struct AdminServer {
    http: Arc<tiny_http::Server>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl AdminServer {
    /// Binds `addr` and serves `registry` on `/metrics`, and `/readyz` as `ready` says (200
    /// or 503); `/livez` is 200 while the process answers at all.
    pub fn bind(
        addr: &str,
        registry: Registry,
        ready: impl Fn() -> bool + Send + Sync + 'static,
    ) -> io::Result<AdminServer> {
        AdminServer::from_listener(TcpListener::bind(addr)?, registry, ready)
    }

    /// Like [`bind`](Self::bind), on a socket already bound and listening.
    pub fn from_listener(
        listener: TcpListener,
        registry: Registry,
        ready: impl Fn() -> bool + Send + Sync + 'static,
    ) -> io::Result<AdminServer> {
        let addr = listener.local_addr()?;
        // tiny_http's accept thread ends on the first accept error, and EAGAIN is one: a
        // listener inherited non-blocking (a handoff, socket activation) would leave the port
        // unserved. O_NONBLOCK belongs to the shared socket, so this is right for every process
        // holding it: only tiny_http accepts on an admin listener.
        listener.set_nonblocking(false)?;
        let http = tiny_http::Server::from_listener(listener, None).map_err(io::Error::other)?;
        let http = Arc::new(http);
        let serving = http.clone();
        let thread = std::thread::Builder::new()
            .name("gracerpc-admin".into())
            .spawn(move || serve(&serving, &registry, &ready))?;
        Ok(AdminServer {
            http,
            addr,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.http.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// OpenMetrics text as the classic Prometheus format: a counter family `x` (samples `x_total`)
/// is named `x_total` in its HELP and TYPE lines, and the `# EOF` marker goes.
fn classic_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        if line.starts_with("# HELP ") {
            if let Some(h) = help.replace(line) {
                out.push_str(h);
                out.push('\n');
            }
            continue;
        }
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|t| t.strip_suffix(" counter"))
        {
            if let Some(h) = help.take() {
                let text = h.strip_prefix("# HELP ").unwrap_or(h);
                let rest = text.strip_prefix(name).unwrap_or(text);
                out.push_str(&format!("# HELP {name}_total{rest}\n"));
            }
            out.push_str(&format!("# TYPE {name}_total counter\n"));
            continue;
        }
        if let Some(h) = help.take() {
            out.push_str(h);
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn serve(http: &tiny_http::Server, registry: &Registry, ready: &dyn Fn() -> bool) {
    // `unblock` (from Drop) ends the iteration.
    for req in http.incoming_requests() {
        let path = req.url().split('?').next().unwrap_or("");
        let openmetrics = req.headers().iter().any(|h| {
            h.field.equiv("Accept") && h.value.as_str().contains("application/openmetrics-text")
        });
        let (status, content_type, body) = match (req.method(), path) {
            (tiny_http::Method::Get, "/metrics") => {
                let mut text = String::new();
                match prometheus_client::encoding::text::encode(&mut text, registry) {
                    Ok(()) if openmetrics => (200, OPENMETRICS_TYPE, text),
                    Ok(()) => (200, TEXT_TYPE, classic_text(&text)),
                    Err(e) => (500, "text/plain", format!("encoding the metrics: {e}\n")),
                }
            }
            (tiny_http::Method::Get, "/readyz") => {
                if ready() {
                    (200, "text/plain", "ready\n".to_owned())
                } else {
                    (503, "text/plain", "not ready\n".to_owned())
                }
            }
            (tiny_http::Method::Get, "/livez") => (200, "text/plain", "alive\n".to_owned()),
            (tiny_http::Method::Get, _) => (404, "text/plain", "not found\n".to_owned()),
            _ => (405, "text/plain", "GET only\n".to_owned()),
        };
        let mut ans = tiny_http::Response::from_string(body).with_status_code(status);
        if let Ok(h) = tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes())
        {
            ans = ans.with_header(h);
        }
        if let Err(e) = req.respond(ans) {
            log::debug!("admin: answering a request: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::classic_text;

    #[test]
    fn counters_are_named_with_total_in_the_classic_format() {
        let om = "# HELP a_x Things.\n# TYPE a_x counter\na_x_total 3\n\
                  # HELP a_g Level.\n# TYPE a_g gauge\na_g 1\n# EOF\n";
        assert_eq!(
            classic_text(om),
            "# HELP a_x_total Things.\n# TYPE a_x_total counter\na_x_total 3\n\
             # HELP a_g Level.\n# TYPE a_g gauge\na_g 1\n"
        );
    }
}
