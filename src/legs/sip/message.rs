//! SIP messages (RFC 3261 §7), sans-IO: parse a datagram or stream frame into a
//! [`SipMessage`], build responses and in-dialog requests, serialise.
//!
//! Only what a gateway's user agent needs is interpreted (start line, headers
//! by name with compact forms folded, the body by Content-Length); every header
//! is kept in order so a response copies Via/From/To/Call-ID/CSeq verbatim.

use thiserror::Error;

/// Largest SIP message accepted (UDP datagrams are far smaller in practice).
pub const MAX_MESSAGE: usize = 16 * 1024;

/// A message that cannot be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SipError {
    /// Not UTF-8 in the head, or no blank line ending the head.
    #[error("not a SIP message: {0}")]
    Malformed(String),
    /// A required header is missing.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// A header is present but unreadable.
    #[error("bad {0} header: {1}")]
    BadHeader(&'static str, String),
    /// Larger than [`MAX_MESSAGE`].
    #[error("message of {0} bytes is over the {MAX_MESSAGE}-byte limit")]
    Oversized(usize),
    /// A stream holds less than one full message yet.
    #[error("incomplete message")]
    Incomplete,
}

/// Request line or status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    /// `METHOD uri SIP/2.0`.
    Request {
        /// INVITE, ACK, BYE, …
        method: String,
        /// Request-URI.
        uri: String,
    },
    /// `SIP/2.0 code reason`.
    Response {
        /// Status code.
        code: u16,
        /// Reason phrase.
        reason: String,
    },
}

/// One SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipMessage {
    /// Request or status line.
    pub start: StartLine,
    /// Headers in order, names in their canonical long form.
    pub headers: Vec<(String, String)>,
    /// Body (SDP), empty when none.
    pub body: Vec<u8>,
}

/// Compact forms (RFC 3261 §7.3.3 and common extensions) → long names.
fn long_name(name: &str) -> &str {
    match name.to_ascii_lowercase().as_str() {
        "v" | "via" => "Via",
        "f" | "from" => "From",
        "t" | "to" => "To",
        "i" | "call-id" => "Call-ID",
        "m" | "contact" => "Contact",
        "l" | "content-length" => "Content-Length",
        "c" | "content-type" => "Content-Type",
        "k" | "supported" => "Supported",
        "cseq" => "CSeq",
        "max-forwards" => "Max-Forwards",
        "record-route" => "Record-Route",
        "route" => "Route",
        "allow" => "Allow",
        "user-agent" => "User-Agent",
        _ => name,
    }
}

impl SipMessage {
    /// Parses one message from a datagram (the body is what follows the head,
    /// cut to Content-Length when present).
    pub fn parse(bytes: &[u8]) -> Result<SipMessage, SipError> {
        let (msg, _) = Self::parse_prefix(bytes, false)?;
        Ok(msg)
    }

    /// Parses the first message of a byte stream (TCP): Content-Length is
    /// required; returns the message and the bytes it took.
    pub fn parse_stream(bytes: &[u8]) -> Result<(SipMessage, usize), SipError> {
        Self::parse_prefix(bytes, true)
    }

    fn parse_prefix(bytes: &[u8], stream: bool) -> Result<(SipMessage, usize), SipError> {
        // Keep-alive CRLFs between messages are allowed (RFC 5626 §4.4.1).
        let skip = bytes
            .iter()
            .take_while(|b| **b == b'\r' || **b == b'\n')
            .count();
        let bytes = &bytes[skip..];
        let Some(head_end) = find(bytes, b"\r\n\r\n") else {
            if stream && bytes.len() <= MAX_MESSAGE {
                return Err(SipError::Incomplete);
            }
            if bytes.len() > MAX_MESSAGE {
                return Err(SipError::Oversized(bytes.len()));
            }
            return Err(SipError::Malformed(
                "no blank line after the headers".into(),
            ));
        };
        let head = std::str::from_utf8(&bytes[..head_end])
            .map_err(|_| SipError::Malformed("headers are not UTF-8".into()))?;
        let mut lines = unfold(head).into_iter();
        let first = lines
            .next()
            .ok_or_else(|| SipError::Malformed("empty message".into()))?;
        let start = parse_start(&first)?;
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line.split_once(':').ok_or_else(|| {
                SipError::Malformed(format!("header line without a colon: {line:?}"))
            })?;
            let name = name.trim();
            if name.is_empty() || name.contains(' ') {
                return Err(SipError::Malformed(format!("bad header name {name:?}")));
            }
            headers.push((long_name(name).to_string(), value.trim().to_string()));
        }
        let body_start = head_end + 4;
        let declared = headers
            .iter()
            .find(|(n, _)| n == "Content-Length")
            .map(|(_, v)| {
                v.parse::<usize>()
                    .map_err(|_| SipError::BadHeader("Content-Length", v.clone()))
            })
            .transpose()?;
        let available = bytes.len() - body_start;
        let body_len = match (declared, stream) {
            (Some(n), _) if n > MAX_MESSAGE => return Err(SipError::Oversized(n)),
            (Some(n), true) if n > available => return Err(SipError::Incomplete),
            (Some(n), false) if n > available => {
                return Err(SipError::BadHeader(
                    "Content-Length",
                    format!("{n} declared, {available} present"),
                ));
            }
            (Some(n), _) => n,
            (None, true) => return Err(SipError::MissingHeader("Content-Length")),
            (None, false) => available,
        };
        if body_start + body_len > MAX_MESSAGE {
            return Err(SipError::Oversized(body_start + body_len));
        }
        let msg = SipMessage {
            start,
            headers,
            body: bytes[body_start..body_start + body_len].to_vec(),
        };
        msg.validate()?;
        Ok((msg, skip + body_start + body_len))
    }

    /// Parses a datagram without checking the mandatory headers, so that a
    /// request missing one can still be answered `400` (it has a Via).
    pub fn parse_unchecked(bytes: &[u8]) -> Result<SipMessage, SipError> {
        match Self::parse(bytes) {
            Ok(m) => Ok(m),
            Err(SipError::MissingHeader(_)) | Err(SipError::BadHeader("CSeq", _)) => {
                Self::parse_head(bytes)
            }
            Err(e) => Err(e),
        }
    }

    /// The start line and headers only (the body left empty, the mandatory
    /// headers not checked): enough to answer a request that cannot be taken
    /// whole, such as an oversized one (`513`). The headers themselves must end
    /// within [`MAX_MESSAGE`] bytes.
    pub fn parse_head(bytes: &[u8]) -> Result<SipMessage, SipError> {
        let window = &bytes[..bytes.len().min(MAX_MESSAGE)];
        let head_end = find(window, b"\r\n\r\n").unwrap_or(window.len());
        let head = std::str::from_utf8(&window[..head_end])
            .map_err(|_| SipError::Malformed("headers are not UTF-8".into()))?;
        let mut lines = unfold(head).into_iter();
        let start = parse_start(&lines.next().unwrap_or_default())?;
        let headers = lines
            .filter_map(|l| {
                l.split_once(':')
                    .map(|(n, v)| (long_name(n.trim()).to_string(), v.trim().to_string()))
            })
            .collect();
        Ok(SipMessage {
            start,
            headers,
            body: Vec::new(),
        })
    }

    /// Checks the headers every message must have (RFC 3261 §8.1.1).
    pub fn validate(&self) -> Result<(), SipError> {
        for required in ["Via", "From", "To", "Call-ID", "CSeq"] {
            if self.header(required).is_none() {
                return Err(SipError::MissingHeader(required));
            }
        }
        self.cseq().map(drop)
    }

    /// The first value of a header (by long name, case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The request method, or for a response the method of its CSeq.
    pub fn method(&self) -> &str {
        match &self.start {
            StartLine::Request { method, .. } => method,
            StartLine::Response { .. } => self
                .header("CSeq")
                .and_then(|c| c.split_whitespace().nth(1))
                .unwrap_or(""),
        }
    }

    /// Status code of a response.
    pub fn code(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// Call-ID.
    pub fn call_id(&self) -> &str {
        self.header("Call-ID").unwrap_or("")
    }

    /// CSeq number and method.
    pub fn cseq(&self) -> Result<(u32, String), SipError> {
        let v = self.header("CSeq").ok_or(SipError::MissingHeader("CSeq"))?;
        let mut parts = v.split_whitespace();
        let n = parts
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| SipError::BadHeader("CSeq", v.to_string()))?;
        let m = parts
            .next()
            .ok_or_else(|| SipError::BadHeader("CSeq", v.to_string()))?;
        Ok((n, m.to_string()))
    }

    /// The branch parameter of the top Via (the transaction id).
    pub fn branch(&self) -> Option<&str> {
        param(self.header("Via")?, "branch")
    }

    /// The tag parameter of From or To.
    pub fn tag(&self, header: &str) -> Option<&str> {
        param(self.header(header)?, "tag")
    }

    /// Builds a response to this request: Via, From, To, Call-ID and CSeq are
    /// copied; `to_tag` is added to To when it has none.
    pub fn response(&self, code: u16, reason: &str, to_tag: Option<&str>) -> SipMessage {
        let mut headers = Vec::new();
        for (n, v) in &self.headers {
            match n.as_str() {
                "Via" | "From" | "Call-ID" | "CSeq" | "Record-Route" => {
                    headers.push((n.clone(), v.clone()))
                }
                "To" => {
                    let v = match to_tag {
                        Some(tag) if param(v, "tag").is_none() => format!("{v};tag={tag}"),
                        _ => v.clone(),
                    };
                    headers.push((n.clone(), v));
                }
                _ => {}
            }
        }
        SipMessage {
            start: StartLine::Response {
                code,
                reason: reason.to_string(),
            },
            headers,
            body: Vec::new(),
        }
    }

    /// Appends a header.
    pub fn with(mut self, name: &str, value: impl Into<String>) -> SipMessage {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Sets the body and its Content-Type.
    pub fn with_body(mut self, content_type: &str, body: Vec<u8>) -> SipMessage {
        self.headers
            .retain(|(n, _)| n != "Content-Type" && n != "Content-Length");
        self.headers
            .push(("Content-Type".into(), content_type.to_string()));
        self.body = body;
        self
    }

    /// Serialises with a correct Content-Length.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(512);
        match &self.start {
            StartLine::Request { method, uri } => {
                out.push_str(&format!("{method} {uri} SIP/2.0\r\n"))
            }
            StartLine::Response { code, reason } => {
                out.push_str(&format!("SIP/2.0 {code} {reason}\r\n"))
            }
        }
        for (n, v) in &self.headers {
            if n != "Content-Length" {
                out.push_str(&format!("{n}: {v}\r\n"));
            }
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n", self.body.len()));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// A new request with the headers every request carries (RFC 3261 §8.1.1);
/// `branch` names the transaction.
#[allow(clippy::too_many_arguments)]
pub fn request(
    method: &str,
    uri: &str,
    transport: &str,
    local: std::net::SocketAddr,
    branch: &str,
    from: &str,
    to: &str,
    call_id: &str,
    cseq: u32,
) -> SipMessage {
    SipMessage {
        start: StartLine::Request {
            method: method.to_string(),
            uri: uri.to_string(),
        },
        headers: vec![
            (
                "Via".into(),
                format!("SIP/2.0/{transport} {local};branch=z9hG4bK{branch};rport"),
            ),
            ("Max-Forwards".into(), "70".into()),
            ("From".into(), from.to_string()),
            ("To".into(), to.to_string()),
            ("Call-ID".into(), call_id.to_string()),
            ("CSeq".into(), format!("{cseq} {method}")),
        ],
        body: Vec::new(),
    }
}

/// A `;name=value` parameter of a header value (outside the `<…>` URI).
pub fn param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    let after_uri = match value.find('>') {
        Some(i) => &value[i + 1..],
        None => value,
    };
    after_uri.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// The URI inside a name-addr (`"Bob" <sip:bob@host>;tag=x` → `sip:bob@host`).
pub fn uri_of(value: &str) -> &str {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value.split(';').next().unwrap_or(value).trim(),
    }
}

/// The user part of a SIP URI (`sip:+1555@host` → `+1555`).
pub fn user_of(uri: &str) -> &str {
    let rest = uri
        .strip_prefix("sips:")
        .or_else(|| uri.strip_prefix("sip:"))
        .unwrap_or(uri);
    rest.split('@').next().unwrap_or("")
}

/// The `host:port` of a SIP URI, default port 5060.
pub fn host_port_of(uri: &str) -> Option<std::net::SocketAddr> {
    let rest = uri
        .strip_prefix("sips:")
        .or_else(|| uri.strip_prefix("sip:"))
        .unwrap_or(uri);
    let host = rest.rsplit('@').next()?;
    let host = host.split([';', '?', '>']).next()?;
    let with_port = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:5060")
    };
    std::net::ToSocketAddrs::to_socket_addrs(&with_port)
        .ok()?
        .next()
}

fn parse_start(line: &str) -> Result<StartLine, SipError> {
    let mut parts = line.splitn(3, ' ');
    let (a, b, c) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    if a == "SIP/2.0" {
        let code: u16 = b
            .parse()
            .ok()
            .filter(|c| (100..700).contains(c))
            .ok_or_else(|| SipError::Malformed(format!("bad status line {line:?}")))?;
        return Ok(StartLine::Response {
            code,
            reason: c.to_string(),
        });
    }
    if c != "SIP/2.0" || a.is_empty() || !a.bytes().all(|b| b.is_ascii_uppercase()) || b.is_empty()
    {
        return Err(SipError::Malformed(format!("bad request line {line:?}")));
    }
    Ok(StartLine::Request {
        method: a.to_string(),
        uri: b.to_string(),
    })
}

/// Lines of the head with continuation lines (leading whitespace) folded.
fn unfold(head: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t'])
            && let Some(last) = out.last_mut()
        {
            last.push(' ');
            last.push_str(line.trim());
        } else {
            out.push(line.to_string());
        }
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:ai@127.0.0.1:5060 SIP/2.0\r\n\
v: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-1;rport\r\n\
From: \"Sarah\" <sip:+15550100@127.0.0.1:5071>;tag=abc\r\n\
To: <sip:ai@127.0.0.1:5060>\r\n\
Call-ID: 1-2@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:sarah@127.0.0.1:5071>\r\n\
Subject: a folded\r\n  header\r\n\
Content-Type: application/sdp\r\n\
l: 4\r\n\r\nv=0\r\nignored";

    #[test]
    fn parses_a_request_with_compact_and_folded_headers() {
        let m = SipMessage::parse(INVITE.as_bytes()).unwrap();
        assert_eq!(m.method(), "INVITE");
        assert_eq!(m.call_id(), "1-2@127.0.0.1");
        assert_eq!(m.branch(), Some("z9hG4bK-1"));
        assert_eq!(m.tag("From"), Some("abc"));
        assert_eq!(m.tag("To"), None);
        assert_eq!(m.header("subject"), Some("a folded header"));
        assert_eq!(m.body, b"v=0\r");
        assert_eq!(m.cseq().unwrap(), (1, "INVITE".into()));
        assert_eq!(user_of(uri_of(m.header("From").unwrap())), "+15550100");
    }

    #[test]
    fn a_response_copies_the_transaction_headers_and_round_trips() {
        let m = SipMessage::parse(INVITE.as_bytes()).unwrap();
        let r = m
            .response(200, "OK", Some("gw1"))
            .with_body("application/sdp", b"v=0\r\n".to_vec());
        let back = SipMessage::parse(&r.to_bytes()).unwrap();
        assert_eq!(back.code(), Some(200));
        assert_eq!(back.method(), "INVITE");
        assert_eq!(back.tag("To"), Some("gw1"));
        assert_eq!(back.branch(), Some("z9hG4bK-1"));
        assert_eq!(back.body, b"v=0\r\n");
        assert_eq!(back.header("Content-Length"), Some("5"));
    }

    #[test]
    fn broken_messages_are_clear_errors() {
        let cases: [(&[u8], &str); 6] = [
            (b"", "no blank line"),
            (b"HELLO\r\n\r\n", "bad request line"),
            (b"INVITE sip:a SIP/2.0\r\nVia x\r\n\r\n", "without a colon"),
            (b"INVITE sip:a SIP/2.0\r\nVia: x\r\n\r\n", "missing From"),
            (b"SIP/2.0 999 Huh\r\n\r\n", "bad status line"),
            (
                b"BYE sip:a SIP/2.0\r\nVia: x\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: x BYE\r\n\r\n",
                "bad CSeq",
            ),
        ];
        for (bytes, want) in cases {
            let e = SipMessage::parse(bytes).unwrap_err().to_string();
            assert!(e.contains(want), "{e:?} should say {want:?}");
        }
    }

    #[test]
    fn a_stream_yields_whole_messages_only() {
        let bytes = INVITE.as_bytes();
        let cut = bytes.len() - 10;
        assert_eq!(
            SipMessage::parse_stream(&bytes[..cut - 3]),
            Err(SipError::Incomplete)
        );
        let mut two = b"\r\n\r\n".to_vec();
        two.extend_from_slice(&bytes[..bytes.len() - 7]); // body "v=0\r" ends the first
        two.extend_from_slice(&bytes[..bytes.len() - 7]);
        let (_, used) = SipMessage::parse_stream(&two).unwrap();
        let (m2, _) = SipMessage::parse_stream(&two[used..]).unwrap();
        assert_eq!(m2.call_id(), "1-2@127.0.0.1");
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = SipMessage::parse(&bytes);
            let _ = SipMessage::parse_stream(&bytes);
        }

        #[test]
        fn never_panics_on_mangled_invites(cut in 0usize..400, byte in proptest::num::u8::ANY, at in 0usize..400) {
            let mut b = INVITE.as_bytes().to_vec();
            if at < b.len() { b[at] = byte; }
            b.truncate(cut.max(1));
            let _ = SipMessage::parse(&b);
            let _ = SipMessage::parse_stream(&b);
        }
    }
}
