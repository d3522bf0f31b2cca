//! The error of a typed call.

use std::fmt;

use super::codec::CodecError;
use crate::client::CallError;
use crate::proto::Status;

/// Why a typed call did not return `Ok`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServiceError<E> {
    /// The method ran and returned this error.
    App(E),
    /// The call did not complete: refused (did not run, final), rejected everywhere, outcome
    /// unknown, deadline… [`CallError::may_have_run`] tells whether it may have run.
    Call(CallError),
    /// The method ran, but its answer does not decode as the result (or error) type: caller
    /// and node disagree on the schema (see the schema-evolution rules).
    BadReply {
        /// The answer's status.
        status: Status,
        /// What the codec said.
        error: CodecError,
    },
    /// The arguments did not encode. The call was not sent.
    Encode(CodecError),
}

impl<E> ServiceError<E> {
    /// Whether the method may have run on some node (`false`: it provably did not).
    pub fn may_have_run(&self) -> bool {
        match self {
            ServiceError::App(_) | ServiceError::BadReply { .. } => true,
            ServiceError::Call(e) => e.may_have_run(),
            ServiceError::Encode(_) => false,
        }
    }
}

impl<E> From<CallError> for ServiceError<E> {
    fn from(e: CallError) -> Self {
        ServiceError::Call(e)
    }
}

impl<E: fmt::Display> fmt::Display for ServiceError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceError::App(e) => write!(f, "the method failed: {e}"),
            ServiceError::Call(e) => fmt::Display::fmt(e, f),
            ServiceError::BadReply { status, error } => write!(
                f,
                "the method ran but its answer ({status}) does not decode: {error} \
                 (caller and node schemas differ)"
            ),
            ServiceError::Encode(e) => write!(f, "the arguments do not encode (not sent): {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display + 'static> std::error::Error for ServiceError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServiceError::Call(e) => Some(e),
            ServiceError::BadReply { error, .. } | ServiceError::Encode(error) => Some(error),
            ServiceError::App(_) => None,
        }
    }
}
