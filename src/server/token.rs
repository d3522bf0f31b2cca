//! Connection tokens that carry a generation.
//!
//! A slab slot is reused as soon as its connection closes. The token of a connection is its slot
//! *and* a generation number that is never reused, so a completion or an event meant for a closed
//! connection can never reach the new connection in the same slot.

use mio::Token;

/// The listener's token.
pub(crate) const LISTENER: Token = Token(usize::MAX);
/// The waker's token (worker completions and control requests).
pub(crate) const WAKER: Token = Token(usize::MAX - 1);
/// The signal pipe's token.
pub(crate) const SIGNALS: Token = Token(usize::MAX - 2);

const SLOT_BITS: u32 = 24;
const SLOT_MASK: usize = (1 << SLOT_BITS) - 1;

/// A connection's slot and generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConnRef {
    pub slot: usize,
    pub generation: u32,
}

impl ConnRef {
    /// The mio token for this connection. Slots are below 2^24 (the connection limit is
    /// checked against that) and generations wrap at 2^32, so the token never collides with the
    /// constant tokens above.
    pub fn token(self) -> Token {
        Token(((self.generation as usize) << SLOT_BITS) | (self.slot & SLOT_MASK))
    }

    /// The slot and generation of a connection token.
    pub fn from_token(t: Token) -> ConnRef {
        ConnRef {
            slot: t.0 & SLOT_MASK,
            generation: (t.0 >> SLOT_BITS) as u32,
        }
    }
}

/// The largest number of connection slots.
pub(crate) const MAX_SLOTS: usize = SLOT_MASK;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip_and_no_collision_with_constants() {
        for (slot, generation) in [(0, 0), (5, 1), (MAX_SLOTS - 1, u32::MAX)] {
            let r = ConnRef { slot, generation };
            assert_eq!(ConnRef::from_token(r.token()), r);
            assert!(![LISTENER, WAKER, SIGNALS].contains(&r.token()));
        }
        let a = ConnRef {
            slot: 3,
            generation: 7,
        };
        let b = ConnRef {
            slot: 3,
            generation: 8,
        };
        assert_ne!(a.token(), b.token(), "a reused slot must get a new token");
    }
}
