//! The server half of a typed method: decode, run, encode.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::codec::Codec;
use crate::proto::Status;
use crate::server::{Builder, Failure, Reply, Request};

/// Something that registers its methods on a server: the `<Name>Server` the macro generates.
pub trait Register {
    /// Adds every method to `b`.
    fn register(self, b: Builder) -> Builder;
}

/// Runs one typed method on a request (called by the generated code).
///
/// Arguments that do not decode are refused before `f` runs (`REFUSED_BAD_BODY`: not run,
/// final); `Ok(v)` is answered OK with `v` encoded; `Err(e)` is APP_ERROR with `e` encoded.
pub fn serve<C, A, T, E>(req: &Request<'_>, f: impl FnOnce(A) -> Result<T, E>) -> Reply
where
    C: Codec,
    A: DeserializeOwned,
    T: Serialize,
    E: Serialize,
{
    let args: A = C::decode(req.body()).map_err(|e| {
        Failure::new(
            Status::REFUSED_BAD_BODY,
            format!("{}: arguments do not decode: {e}", req.method()),
        )
    })?;
    // On a worker, the answer goes into its spare buffer (an earlier request's, pooled): no
    // allocation once warm. Most answers fit in 64 bytes or in the request's size; a larger
    // one grows by doubling.
    let mut out = crate::server::spare_buffer();
    out.reserve(req.body().len().max(64));
    let (status, encoded) = match f(args) {
        Ok(v) => (Status::OK, C::encode(&v, &mut out)),
        Err(e) => (Status::APP_ERROR, C::encode(&e, &mut out)),
    };
    if let Err(e) = encoded {
        let msg = format!("{}: the answer does not encode: {e}", req.method());
        return Err(Failure::new(Status::INTERNAL, msg));
    }
    if status == Status::OK {
        Ok(out)
    } else {
        Err(Failure { status, body: out })
    }
}
