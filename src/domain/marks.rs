//! The gateway's own marks in a leg's audio. An AI agent's marks share the
//! wire (`mark` events) but never these names: the bridge refuses an agent mark
//! that [`GatewayMark::is_reserved`] matches, so an echo can only be the gateway's.

/// A mark the gateway places after its own audio and acts on when echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GatewayMark {
    /// After the last prompt: the call ends when the caller's provider echoes it.
    End,
    /// After the disclosure prompt (why, context travels, the wait).
    Disclosure,
    /// After the callback prompt.
    Callback,
    /// After the whisper in the human agent's audio: the caller follows it.
    WhisperEnd,
}

impl GatewayMark {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayMark::End => "warmline-end",
            GatewayMark::Disclosure => "warmline-disclosure",
            GatewayMark::Callback => "warmline-callback",
            GatewayMark::WhisperEnd => "whisper-end",
        }
    }

    /// The gateway mark named `name`, if it is one.
    pub fn from_wire(name: &str) -> Option<GatewayMark> {
        [
            GatewayMark::End,
            GatewayMark::Disclosure,
            GatewayMark::Callback,
            GatewayMark::WhisperEnd,
        ]
        .into_iter()
        .find(|m| m.as_str() == name)
    }

    /// Whether `name` is in the gateway's namespace (`warmline-…` or a gateway
    /// mark): an AI agent may not send it.
    pub fn is_reserved(name: &str) -> bool {
        name.starts_with("warmline-") || GatewayMark::from_wire(name).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gateway_mark_reads_back_and_is_reserved() {
        for m in [
            GatewayMark::End,
            GatewayMark::Disclosure,
            GatewayMark::Callback,
            GatewayMark::WhisperEnd,
        ] {
            assert_eq!(GatewayMark::from_wire(m.as_str()), Some(m));
            assert!(GatewayMark::is_reserved(m.as_str()));
        }
        assert!(GatewayMark::is_reserved("warmline-anything"));
        assert!(!GatewayMark::is_reserved("greeting-done"));
        assert_eq!(GatewayMark::from_wire("whisper-end-2"), None);
    }
}
