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
pub(crate) mod greeting;
pub(crate) mod handoff_headers;
pub mod message;
pub mod relay_plane;
pub mod rtp_leg;
pub mod sdp;
pub mod uas;

pub(crate) use crate::util::random_u64;
