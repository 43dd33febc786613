//! The Twilio Media Streams wire protocol (bidirectional), plus warmline's
//! documented extension events for AI agents (see docs/agent-protocol.md).
//!
//! Used in both directions: warmline is the *application* towards the provider
//! (Twilio) and plays the *provider* towards the AI agent, so an agent written
//! for Twilio works unchanged. Pure data and parsing: no sockets.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

use crate::domain::{EscalationRequest, ToolUse, Turn};

/// The media format Twilio streams: μ-law, 8 kHz, mono.
pub const TWILIO_ENCODING: &str = "audio/x-mulaw";

/// `start.mediaFormat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaFormat {
    /// `audio/x-mulaw` for Twilio.
    pub encoding: String,
    /// 8000 for Twilio.
    pub sample_rate: u32,
    /// 1 for Twilio.
    pub channels: u32,
}

impl Default for MediaFormat {
    fn default() -> Self {
        MediaFormat {
            encoding: TWILIO_ENCODING.to_string(),
            sample_rate: 8000,
            channels: 1,
        }
    }
}

/// `start` metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct StartMeta {
    /// The provider account.
    #[serde(default)]
    pub account_sid: String,
    /// The stream's id.
    #[serde(default)]
    pub stream_sid: String,
    /// The phone call's id.
    #[serde(default)]
    pub call_sid: String,
    /// Tracks in the stream (`inbound`, `outbound`).
    #[serde(default)]
    pub tracks: Vec<String>,
    /// `<Parameter>` values from the TwiML `<Stream>`.
    #[serde(default)]
    pub custom_parameters: BTreeMap<String, String>,
    /// The audio format.
    pub media_format: MediaFormat,
}

/// `media` body. Inbound from the provider it carries track/chunk/timestamp
/// (all strings); outbound only `payload` is required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaChunk {
    /// `inbound` or `outbound`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<String>,
    /// Chunk counter, a string starting at "1".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<String>,
    /// Milliseconds since the stream started, a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// Base64 of the raw audio bytes.
    pub payload: String,
}

/// `mark` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkBody {
    /// The label chosen by whoever sent the mark.
    pub name: String,
}

/// `dtmf` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DtmfBody {
    /// `inbound_track`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<String>,
    /// One of 0-9, *, #, A-D.
    pub digit: String,
}

/// `stop` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct StopBody {
    /// The provider account.
    #[serde(default)]
    pub account_sid: String,
    /// The phone call's id.
    #[serde(default)]
    pub call_sid: String,
}

/// One Media Streams message, in either direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "event",
    rename_all = "lowercase",
    rename_all_fields = "camelCase"
)]
pub enum StreamMessage {
    /// First message of a stream.
    Connected {
        /// `Call`.
        protocol: String,
        /// `1.0.0`.
        version: String,
    },
    /// Stream metadata; exactly once, before any media.
    Start {
        /// Message counter (a string).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sequence_number: Option<String>,
        /// Metadata.
        start: StartMeta,
        /// The stream's id.
        #[serde(default)]
        stream_sid: String,
    },
    /// Audio.
    Media {
        /// Message counter (a string).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sequence_number: Option<String>,
        /// The stream's id.
        #[serde(default)]
        stream_sid: String,
        /// The audio.
        media: MediaChunk,
    },
    /// A marker in the audio (echoed back once played).
    Mark {
        /// Message counter (a string).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sequence_number: Option<String>,
        /// The stream's id.
        #[serde(default)]
        stream_sid: String,
        /// The label.
        mark: MarkBody,
    },
    /// Drop all buffered outbound audio (barge-in).
    Clear {
        /// The stream's id.
        #[serde(default)]
        stream_sid: String,
    },
    /// A keypad digit.
    Dtmf {
        /// Message counter (a string).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sequence_number: Option<String>,
        /// The stream's id.
        #[serde(default)]
        stream_sid: String,
        /// The digit.
        dtmf: DtmfBody,
    },
    /// The stream ended.
    Stop {
        /// Message counter (a string).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sequence_number: Option<String>,
        /// The stream's id.
        #[serde(default)]
        stream_sid: String,
        /// Who stopped.
        #[serde(default)]
        stop: StopBody,
    },
    /// Extension: a conversation turn.
    Turn {
        /// The stream's id.
        #[serde(default)]
        stream_sid: String,
        /// The turn.
        turn: Turn,
    },
    /// Extension: the agent requests a human.
    Escalate {
        /// The stream's id.
        #[serde(default)]
        stream_sid: String,
        /// Reason and urgency.
        escalate: EscalationRequest,
    },
    /// Extension: the agent used a tool.
    Tool {
        /// The stream's id.
        #[serde(default)]
        stream_sid: String,
        /// What was used.
        tool: ToolUse,
    },
    /// Extension: what the agent knows about the customer (free-form object).
    Customer {
        /// The stream's id.
        #[serde(default)]
        stream_sid: String,
        /// Customer fields (id, name, verification, contact, …).
        customer: serde_json::Map<String, serde_json::Value>,
    },
    /// Extension: the caller's intent as the agent understands it (free-form object).
    Intent {
        /// The stream's id.
        #[serde(default)]
        stream_sid: String,
        /// Intent fields (primary, secondary, resolved, unresolved, …).
        intent: serde_json::Map<String, serde_json::Value>,
    },
    /// Extension (warmline → agent): the caller is back with the AI agent
    /// after a handoff, and how it ended.
    #[serde(rename = "handoff_result")]
    HandoffResult {
        /// Message counter (a string).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sequence_number: Option<String>,
        /// The stream's id.
        #[serde(default)]
        stream_sid: String,
        /// Outcome, the person, their note and the conversation so far.
        #[serde(rename = "handoff_result")]
        handoff_result: crate::domain::HandoffResult,
    },
    /// Extension (warmline → agent): a supervisor's text hint.
    #[serde(rename = "supervisor_hint")]
    SupervisorHint {
        /// Message counter (a string).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sequence_number: Option<String>,
        /// The stream's id.
        #[serde(default)]
        stream_sid: String,
        /// Who and what.
        #[serde(rename = "supervisor_hint")]
        supervisor_hint: crate::domain::SupervisorHint,
    },
    /// Any event this version does not know; see [`ProtocolError::UnknownEvent`].
    #[serde(other)]
    Unknown,
}

/// Why a message was refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// Media Streams carries JSON text frames only (Twilio error 31950).
    #[error("binary WebSocket frame ({0} bytes): Media Streams messages are JSON text frames")]
    BinaryFrame(usize),
    /// The message is larger than the configured cap.
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    Oversized {
        /// Size received.
        len: usize,
        /// Configured cap.
        max: usize,
    },
    /// Not JSON at all.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// JSON, but not a valid message (missing or mistyped field).
    #[error("invalid message: {0}")]
    InvalidMessage(String),
    /// An event name this version does not know (logged and ignored).
    #[error("unknown event {0:?} ignored")]
    UnknownEvent(String),
    /// `media.payload` is not valid base64.
    #[error("media payload is not valid base64: {0}")]
    BadBase64(String),
    /// `start.mediaFormat` is not μ-law 8 kHz mono.
    #[error(
        "unsupported media format {encoding} {sample_rate} Hz {channels} ch (need audio/x-mulaw 8000 Hz mono)"
    )]
    UnsupportedFormat {
        /// Encoding received.
        encoding: String,
        /// Rate received.
        sample_rate: u32,
        /// Channels received.
        channels: u32,
    },
    /// Media arrived before `start`.
    #[error("media before start")]
    MediaBeforeStart,
    /// A second `start` on one stream.
    #[error("a second start on stream {0}")]
    DuplicateStart(String),
    /// A DTMF event whose digit is not a keypad symbol.
    #[error("invalid DTMF digit {0:?}")]
    BadDigit(String),
    /// An event that makes no sense in this direction (e.g. `clear` from a caller).
    #[error("unexpected {0} event from this side")]
    Unexpected(&'static str),
    /// A mark named like one of the gateway's own (`warmline-…`, `whisper-end`).
    #[error("mark name {0:?} is reserved for the gateway")]
    ReservedMark(String),
    /// A mark name longer than [`MAX_MARK_NAME`] bytes.
    #[error("mark name of {0} bytes is over the {MAX_MARK_NAME}-byte limit")]
    MarkNameTooLong(usize),
}

/// The longest mark name taken (Twilio's own names are short labels).
pub const MAX_MARK_NAME: usize = 256;

/// Parses one text frame, enforcing the size cap.
pub fn parse(text: &str, max_bytes: usize) -> Result<StreamMessage, ProtocolError> {
    if text.len() > max_bytes {
        return Err(ProtocolError::Oversized {
            len: text.len(),
            max: max_bytes,
        });
    }
    match serde_json::from_str::<StreamMessage>(text) {
        Ok(StreamMessage::Unknown) => {
            #[derive(Deserialize)]
            struct EventName {
                event: String,
            }
            let name = serde_json::from_str::<EventName>(text)
                .map(|e| e.event)
                .unwrap_or_default();
            Err(ProtocolError::UnknownEvent(name))
        }
        Ok(msg) => Ok(msg),
        Err(e) => Err(match e.classify() {
            serde_json::error::Category::Data => ProtocolError::InvalidMessage(e.to_string()),
            _ => ProtocolError::MalformedJson(e.to_string()),
        }),
    }
}

/// Decodes a base64 media payload.
pub fn decode_payload(media: &MediaChunk) -> Result<Vec<u8>, ProtocolError> {
    decode_base64(&media.payload)
}

/// Decodes base64 audio (a media payload, or a Realtime audio delta).
pub fn decode_base64(payload: &str) -> Result<Vec<u8>, ProtocolError> {
    base64::engine::general_purpose::STANDARD
        .decode(payload.as_bytes())
        .map_err(|e| ProtocolError::BadBase64(e.to_string()))
}

/// Encodes audio bytes as a base64 payload.
pub fn encode_payload(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Checks that a `start` announces the format warmline bridges (μ-law 8 kHz mono).
pub fn check_format(format: &MediaFormat) -> Result<(), ProtocolError> {
    if format.encoding.eq_ignore_ascii_case(TWILIO_ENCODING)
        && format.sample_rate == 8000
        && format.channels == 1
    {
        Ok(())
    } else {
        Err(ProtocolError::UnsupportedFormat {
            encoding: format.encoding.clone(),
            sample_rate: format.sample_rate,
            channels: format.channels,
        })
    }
}

/// Parses a DTMF digit.
pub fn parse_digit(digit: &str) -> Result<char, ProtocolError> {
    let mut chars = digit.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D') => Ok(c),
        _ => Err(ProtocolError::BadDigit(digit.chars().take(16).collect())),
    }
}

/// Writes messages the way the *provider* (Twilio) does: numbered, with
/// string `sequenceNumber`, `chunk` and `timestamp`. warmline uses it towards
/// the AI agent; the caller simulator uses it towards warmline.
#[derive(Debug, Clone)]
pub struct ProviderWriter {
    stream_sid: String,
    sequence: u64,
    chunk: u64,
    media_bytes: u64,
}

impl ProviderWriter {
    /// A writer for one stream.
    pub fn new(stream_sid: impl Into<String>) -> Self {
        ProviderWriter {
            stream_sid: stream_sid.into(),
            sequence: 0,
            chunk: 0,
            media_bytes: 0,
        }
    }

    fn next_sequence(&mut self) -> Option<String> {
        self.sequence += 1;
        Some(self.sequence.to_string())
    }

    /// `connected`.
    pub fn connected(&self) -> String {
        to_json(&StreamMessage::Connected {
            protocol: "Call".into(),
            version: "1.0.0".into(),
        })
    }

    /// `start` with the given metadata (its `streamSid` is this writer's).
    pub fn start(&mut self, mut meta: StartMeta) -> String {
        meta.stream_sid = self.stream_sid.clone();
        let sequence_number = self.next_sequence();
        to_json(&StreamMessage::Start {
            sequence_number,
            start: meta,
            stream_sid: self.stream_sid.clone(),
        })
    }

    /// Inbound `media` (μ-law bytes; timestamp derived from the bytes sent so far).
    pub fn media(&mut self, payload: &[u8]) -> String {
        self.chunk += 1;
        let timestamp = self.media_bytes / 8;
        self.media_bytes += payload.len() as u64;
        let sequence_number = self.next_sequence();
        to_json(&StreamMessage::Media {
            sequence_number,
            stream_sid: self.stream_sid.clone(),
            media: MediaChunk {
                track: Some("inbound".into()),
                chunk: Some(self.chunk.to_string()),
                timestamp: Some(timestamp.to_string()),
                payload: encode_payload(payload),
            },
        })
    }

    /// A `mark` echo.
    pub fn mark(&mut self, name: &str) -> String {
        let sequence_number = self.next_sequence();
        to_json(&StreamMessage::Mark {
            sequence_number,
            stream_sid: self.stream_sid.clone(),
            mark: MarkBody { name: name.into() },
        })
    }

    /// A `dtmf` event.
    pub fn dtmf(&mut self, digit: char) -> String {
        let sequence_number = self.next_sequence();
        to_json(&StreamMessage::Dtmf {
            sequence_number,
            stream_sid: self.stream_sid.clone(),
            dtmf: DtmfBody {
                track: Some("inbound_track".into()),
                digit: digit.to_string(),
            },
        })
    }

    /// A `handoff_result` (extension): the caller is back with the AI agent.
    pub fn handoff_result(&mut self, result: &crate::domain::HandoffResult) -> String {
        let sequence_number = self.next_sequence();
        to_json(&StreamMessage::HandoffResult {
            sequence_number,
            stream_sid: self.stream_sid.clone(),
            handoff_result: result.clone(),
        })
    }

    /// A `supervisor_hint` (extension).
    pub fn supervisor_hint(&mut self, hint: &crate::domain::SupervisorHint) -> String {
        let sequence_number = self.next_sequence();
        to_json(&StreamMessage::SupervisorHint {
            sequence_number,
            stream_sid: self.stream_sid.clone(),
            supervisor_hint: hint.clone(),
        })
    }

    /// `stop`.
    pub fn stop(&mut self, account_sid: &str, call_sid: &str) -> String {
        let sequence_number = self.next_sequence();
        to_json(&StreamMessage::Stop {
            sequence_number,
            stream_sid: self.stream_sid.clone(),
            stop: StopBody {
                account_sid: account_sid.into(),
                call_sid: call_sid.into(),
            },
        })
    }
}

/// Writes messages the way an *application* does towards the provider:
/// `media` {payload}, `mark` {name}, `clear`, each with `streamSid`.
#[derive(Debug, Clone)]
pub struct AppWriter {
    stream_sid: String,
}

impl AppWriter {
    /// A writer for one stream.
    pub fn new(stream_sid: impl Into<String>) -> Self {
        AppWriter {
            stream_sid: stream_sid.into(),
        }
    }

    /// Outbound `media`.
    pub fn media(&self, payload: &[u8]) -> String {
        to_json(&StreamMessage::Media {
            sequence_number: None,
            stream_sid: self.stream_sid.clone(),
            media: MediaChunk {
                track: None,
                chunk: None,
                timestamp: None,
                payload: encode_payload(payload),
            },
        })
    }

    /// `mark`.
    pub fn mark(&self, name: &str) -> String {
        to_json(&StreamMessage::Mark {
            sequence_number: None,
            stream_sid: self.stream_sid.clone(),
            mark: MarkBody { name: name.into() },
        })
    }

    /// `clear`.
    pub fn clear(&self) -> String {
        to_json(&StreamMessage::Clear {
            stream_sid: self.stream_sid.clone(),
        })
    }

    /// Extension `turn`.
    pub fn turn(&self, turn: Turn) -> String {
        to_json(&StreamMessage::Turn {
            stream_sid: self.stream_sid.clone(),
            turn,
        })
    }
}

/// Serialises a message. Our message types contain only strings, numbers and
/// maps with string keys, which always serialise.
pub fn to_json(msg: &StreamMessage) -> String {
    serde_json::to_string(msg).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot serialise a stream message");
        String::from("{}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Role, Trigger, Urgency};

    #[test]
    fn parses_twilio_documented_messages() {
        let start = r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"ACxx","streamSid":"MZxx","callSid":"CAxx","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},"customParameters":{"FirstName":"Jane"}},"streamSid":"MZxx"}"#;
        let StreamMessage::Start {
            start, stream_sid, ..
        } = parse(start, 65536).unwrap()
        else {
            panic!("not a start");
        };
        assert_eq!(stream_sid, "MZxx");
        assert_eq!(start.call_sid, "CAxx");
        assert_eq!(start.custom_parameters["FirstName"], "Jane");
        assert!(check_format(&start.media_format).is_ok());

        let media = r#"{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"1","timestamp":"5","payload":"/38="},"streamSid":"MZxx"}"#;
        let StreamMessage::Media { media, .. } = parse(media, 65536).unwrap() else {
            panic!("not media");
        };
        assert_eq!(decode_payload(&media).unwrap(), vec![0xFF, 0x7F]);
        assert_eq!(media.timestamp.as_deref(), Some("5"));

        let dtmf = r#"{"event":"dtmf","streamSid":"MZxx","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"1"}}"#;
        assert!(matches!(
            parse(dtmf, 65536).unwrap(),
            StreamMessage::Dtmf { .. }
        ));
        let stop = r#"{"event":"stop","sequenceNumber":"5","stop":{"accountSid":"ACxx","callSid":"CAxx"},"streamSid":"MZxx"}"#;
        assert!(matches!(
            parse(stop, 65536).unwrap(),
            StreamMessage::Stop { .. }
        ));
    }

    #[test]
    fn writers_use_string_counters_and_carry_the_stream_sid() {
        let mut p = ProviderWriter::new("MZ1");
        let v: serde_json::Value = serde_json::from_str(&p.media(&[0xFF; 160])).unwrap();
        assert_eq!(v["sequenceNumber"], "1");
        assert_eq!(v["media"]["chunk"], "1");
        assert_eq!(v["media"]["timestamp"], "0");
        assert_eq!(v["streamSid"], "MZ1");
        let v: serde_json::Value = serde_json::from_str(&p.media(&[0xFF; 160])).unwrap();
        assert_eq!(v["media"]["timestamp"], "20");
        let a = AppWriter::new("MZ1");
        assert_eq!(a.clear(), r#"{"event":"clear","streamSid":"MZ1"}"#);
        let v: serde_json::Value = serde_json::from_str(&a.media(&[1, 2])).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"event":"media","streamSid":"MZ1","media":{"payload":"AQI="}})
        );
        assert_eq!(
            a.mark("x"),
            r#"{"event":"mark","streamSid":"MZ1","mark":{"name":"x"}}"#
        );
    }

    #[test]
    fn bad_input_gets_a_typed_error() {
        assert!(matches!(
            parse("{not json", 100),
            Err(ProtocolError::MalformedJson(_))
        ));
        assert!(matches!(
            parse(r#"{"event":"media","media":{}}"#, 100),
            Err(ProtocolError::InvalidMessage(_))
        ));
        assert_eq!(
            parse(r#"{"event":"dance","x":1}"#, 100),
            Err(ProtocolError::UnknownEvent("dance".into()))
        );
        assert!(matches!(
            parse(&"x".repeat(101), 100),
            Err(ProtocolError::Oversized { len: 101, max: 100 })
        ));
        let bad = MediaChunk {
            track: None,
            chunk: None,
            timestamp: None,
            payload: "!!!".into(),
        };
        assert!(matches!(
            decode_payload(&bad),
            Err(ProtocolError::BadBase64(_))
        ));
        let alaw = MediaFormat {
            encoding: "audio/x-alaw".into(),
            sample_rate: 8000,
            channels: 1,
        };
        assert!(matches!(
            check_format(&alaw),
            Err(ProtocolError::UnsupportedFormat { .. })
        ));
        assert_eq!(parse_digit("5"), Ok('5'));
        assert_eq!(parse_digit("#"), Ok('#'));
        assert!(parse_digit("55").is_err());
        assert!(parse_digit("x").is_err());
    }

    #[test]
    fn wire_names_match_the_serialised_form() {
        let json = |v: serde_json::Value| v.as_str().unwrap_or_default().to_string();
        for r in [Role::User, Role::Agent] {
            assert_eq!(r.as_str(), json(serde_json::to_value(r).unwrap()));
        }
        for t in [
            Trigger::AuthorityLimit,
            Trigger::CustomerRequest,
            Trigger::Complexity,
            Trigger::Policy,
            Trigger::RepeatedFailure,
        ] {
            assert_eq!(t.as_str(), json(serde_json::to_value(t).unwrap()));
        }
        for u in [Urgency::Standard, Urgency::Elevated, Urgency::Critical] {
            assert_eq!(u.as_str(), json(serde_json::to_value(u).unwrap()));
        }
    }

    #[test]
    fn extension_events_parse() {
        let turn = r#"{"event":"turn","streamSid":"MZ","turn":{"role":"agent","content":"Hi","confidence":0.4}}"#;
        let StreamMessage::Turn { turn, .. } = parse(turn, 1000).unwrap() else {
            panic!()
        };
        assert_eq!(turn.role, Role::Agent);
        assert_eq!(turn.confidence, Some(0.4));
        let esc = r#"{"event":"escalate","escalate":{"trigger":"authority_limit","description":"refund over limit","urgency":"elevated"}}"#;
        let StreamMessage::Escalate { escalate, .. } = parse(esc, 1000).unwrap() else {
            panic!()
        };
        assert_eq!(escalate.trigger, Trigger::AuthorityLimit);
        assert_eq!(escalate.urgency, Urgency::Elevated);
        let bad = r#"{"event":"escalate","escalate":{"trigger":"bored"}}"#;
        assert!(matches!(
            parse(bad, 1000),
            Err(ProtocolError::InvalidMessage(_))
        ));
        let cust = r#"{"event":"customer","customer":{"name":"Sarah Chen","verified":true}}"#;
        assert!(matches!(
            parse(cust, 1000).unwrap(),
            StreamMessage::Customer { .. }
        ));
    }
}
