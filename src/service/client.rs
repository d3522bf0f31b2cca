//! The caller half of a typed method: encode, call, decode.

use std::cell::Cell;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::codec::Codec;
use super::error::ServiceError;
use crate::client::{CallError, CallOptions, Client};
use crate::proto::Status;

thread_local! {
    /// One encoding buffer per thread, reused call after call: a typed call allocates nothing
    /// more than a bytes call does.
    static ARGS: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// A [`Client`] that calls typed methods with codec `C` (the generated `<Name>Client` wraps one).
pub struct TypedClient<C> {
    client: Client,
    opts: CallOptions,
    /// `opts` flagged idempotent: built once, not per call.
    opts_idempotent: CallOptions,
    codec: PhantomData<fn() -> C>,
}

impl<C> Clone for TypedClient<C> {
    fn clone(&self) -> Self {
        TypedClient {
            client: self.client.clone(),
            opts: self.opts.clone(),
            opts_idempotent: self.opts_idempotent.clone(),
            codec: PhantomData,
        }
    }
}

impl<C> std::fmt::Debug for TypedClient<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedClient")
            .field("client", &self.client)
            .field("opts", &self.opts)
            .finish()
    }
}

impl<C: Codec> TypedClient<C> {
    /// Wraps `client`, with the client's default options.
    pub fn new(client: Client) -> Self {
        TypedClient {
            client,
            opts: CallOptions::default(),
            opts_idempotent: CallOptions::default().idempotent(true),
            codec: PhantomData,
        }
    }

    /// The options of every call; `idempotent` is overridden per method.
    pub fn with_options(mut self, opts: CallOptions) -> Self {
        self.opts_idempotent = opts.clone().idempotent(true);
        self.opts = opts.idempotent(false);
        self
    }

    /// The client underneath (for bytes calls beside typed ones).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Calls `method` with `args` encoded, flagged idempotent or not, and decodes the answer.
    pub fn call<A, T, E>(
        &self,
        method: &str,
        idempotent: bool,
        args: &A,
    ) -> Result<T, ServiceError<E>>
    where
        A: Serialize + ?Sized,
        T: DeserializeOwned,
        E: DeserializeOwned,
    {
        let mut buf = ARGS.take();
        buf.clear();
        let result = match C::encode(args, &mut buf) {
            Ok(()) => {
                let opts = if idempotent {
                    &self.opts_idempotent
                } else {
                    &self.opts
                };
                Ok(self.client.call_with(method, &buf, opts))
            }
            Err(e) => Err(ServiceError::Encode(e)),
        };
        ARGS.set(buf);
        match result? {
            Ok(reply) => C::decode(&reply.body).map_err(|error| ServiceError::BadReply {
                status: Status::OK,
                error,
            }),
            Err(CallError::Status { status, body }) if status == Status::APP_ERROR => {
                match C::decode(&body) {
                    Ok(e) => Err(ServiceError::App(e)),
                    Err(error) => Err(ServiceError::BadReply { status, error }),
                }
            }
            Err(e) => Err(ServiceError::Call(e)),
        }
    }
}
