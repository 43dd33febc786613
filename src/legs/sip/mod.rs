//! SIP legs: a user agent on UDP (and TCP) that takes calls from trunks (UAS)
//! and rings human agents' SIP phones (UAC), with RTP media through the same
//! call session and routing matrix as the Media Streams legs.
//!
//! The SIP codec is hand-rolled and small (see docs/ARCHITECTURE.md for why no
//! stack crate): [`message`] parses and builds messages, [`sdp`] does offer/answer,
//! [`rtp_leg`] runs one leg's RTP socket through the sans-IO jitter buffer.

pub mod agent_phone;
pub mod codec;
pub mod digest;
pub mod endpoint;
pub mod message;
pub mod rtp_leg;
pub mod sdp;
pub mod uas;

/// A fresh pseudo-random value (tags, branches, SSRCs): std's per-instance
/// random hash keys over the clock. Unique enough for SIP and RTP (RFC 3261
/// §19.3 and RFC 3550 ask for uniqueness, not secrecy).
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}
