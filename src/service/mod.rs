//! Typed services: serde values over the bytes API, from one `#[gracerpc::service]` trait.
//!
//! ```
//! use gracerpc::client::Client;
//! use gracerpc::server::Server;
//!
//! #[gracerpc::service]
//! pub trait Calc {
//!     #[idempotent]
//!     fn add(&self, a: i64, b: i64) -> Result<i64, String>;
//! }
//!
//! struct MyCalc;
//! impl Calc for MyCalc {
//!     fn add(&self, a: i64, b: i64) -> Result<i64, String> {
//!         a.checked_add(b).ok_or_else(|| "overflow".to_string())
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::builder().service(CalcServer::new(MyCalc)).spawn()?;
//! let calc = CalcClient::new(Client::builder().nodes([server.local_addr()]).build()?);
//! assert_eq!(calc.add(2, 3)?, 5);
//! # Ok(())
//! # }
//! ```
//!
//! The macro gives the trait to implement, `CalcServer` (registered with
//! [`Builder::service`](crate::server::Builder::service)) and `CalcClient`. Method `add` of
//! trait `Calc` is `calc.add` on the wire, so a bytes caller can call it too. Arguments travel
//! as one tuple, results and the method's error type as they are, in the [`Codec`] chosen
//! (default [`Postcard`]).
//!
//! # Contract
//! * `#[idempotent]` methods are flagged IDEMPOTENT by the client (so they are retried after an
//!   unknown outcome); a request flagged IDEMPOTENT to a method without it is refused unrun
//!   (`Status::REFUSED_NOT_IDEMPOTENT`), whoever sent it.
//! * A body that does not decode as the method's arguments is refused unrun
//!   (`Status::REFUSED_BAD_BODY`): the caller gets [`CallError::Refused`](crate::client::CallError::Refused).
//! * The handler's `Err(e)` travels as `Status::APP_ERROR` with `e` encoded, and comes back as
//!   [`ServiceError::App`].
//!
//! # Schema evolution (rolling upgrades)
//! Postcard, like every compact binary codec, writes no field names: a message is its fields in
//! order. The codec contract ([`Codec`]) makes two changes safe in a mixed fleet:
//! * **Adding a field**: add it **at the end** of the message — the last field of the last
//!   argument, or of the result type — with a type whose zero encoding is its "absent" value
//!   (`Option<T>`, integers, `bool`, `String`, `Vec<T>`, or a struct of those). An old reader
//!   ignores the bytes it does not know; a new reader of an old message reads the missing
//!   trailing field as absent (`None`, 0, empty). Never insert, remove, reorder or retype a field.
//! * **Adding a method**: roll it out to every node first; only then let callers use it. Until
//!   then a node without it refuses it as `REFUSED_UNKNOWN_METHOD` (not run, final — the caller
//!   is not told to try elsewhere, since in a finished rollout no node lacks it).
//! * Adding a variant to an error or result enum breaks old readers ([`ServiceError::BadReply`]
//!   — it ran): add variants only once every caller knows them.
//! * Renaming a trait or method renames it on the wire: keep names.
//!
//! `tests/typed_evolution.rs` proves the first two with v1 and v2 nodes and callers mixed.

mod client;
mod codec;
mod encode;
mod error;
mod server;

pub use client::TypedClient;
pub use codec::{Codec, CodecError, Postcard};
pub use error::ServiceError;
pub use server::{Register, serve};
