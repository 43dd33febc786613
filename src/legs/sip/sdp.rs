//! SDP offer/answer for one audio stream (RFC 3264, RFC 4566), sans-IO.
//!
//! Supported: PCMU (0), PCMA (8), Opus 48 kHz (RFC 7587, dynamic type) and
//! telephone-event (RFC 4733), ptime 20. The answer picks the first codec in
//! the offer's order that we support (the caller's preference).

use std::net::{IpAddr, SocketAddr};
use thiserror::Error;

/// Audio codecs a SIP leg can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// G.711 μ-law, 8 kHz.
    Pcmu,
    /// G.711 A-law, 8 kHz.
    Pcma,
    /// Opus, 48 kHz clock (RFC 7587).
    Opus,
}

impl Codec {
    /// RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => 8000,
            Codec::Opus => 48_000,
        }
    }

    /// The rtpmap encoding name.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU/8000",
            Codec::Pcma => "PCMA/8000",
            Codec::Opus => "opus/48000/2",
        }
    }
}

/// What was agreed for the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The codec.
    pub codec: Codec,
    /// Its payload type.
    pub payload_type: u8,
    /// telephone-event payload type, if both sides have it.
    pub dtmf_payload_type: Option<u8>,
    /// Where the far end wants RTP (its `c=` and `m=` port).
    pub remote: SocketAddr,
    /// The far end asked for hold (`sendonly` or `inactive`).
    pub on_hold: bool,
}

/// An SDP that cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SdpError {
    /// Not text, or no usable `c=`/`m=audio` line.
    #[error("unreadable SDP: {0}")]
    Malformed(String),
    /// Readable, but a stream warmline will not send to: port 0 (declined),
    /// multicast or broadcast, an address type other than `IN IP4`/`IN IP6`
    /// (answer 488).
    #[error("unacceptable SDP: {0}")]
    Unacceptable(String),
    /// No codec in common (answer 488).
    #[error("no supported codec offered (we take PCMU, PCMA, opus/48000/2); offered: {0}")]
    NoCommonCodec(String),
}

struct Offer {
    addr: IpAddr,
    port: u16,
    payload_types: Vec<u8>,
    rtpmaps: Vec<(u8, String)>,
    direction: String,
}

fn parse(sdp: &[u8]) -> Result<Offer, SdpError> {
    let text = std::str::from_utf8(sdp).map_err(|_| SdpError::Malformed("not UTF-8".into()))?;
    let mut session_addr = None;
    let mut media_addr = None;
    let mut audio: Option<(u16, Vec<u8>)> = None;
    let mut in_audio = false;
    let mut rtpmaps = Vec::new();
    let mut direction = String::from("sendrecv");
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=") {
            let parts: Vec<&str> = m.split_whitespace().collect();
            in_audio = parts.first() == Some(&"audio") && audio.is_none();
            if in_audio {
                let port = parts
                    .get(1)
                    .and_then(|p| p.split('/').next())
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| SdpError::Malformed(format!("bad m= line {line:?}")))?;
                let pts = parts
                    .iter()
                    .skip(3)
                    .filter_map(|p| p.parse().ok())
                    .collect();
                audio = Some((port, pts));
            }
        } else if let Some(c) = line.strip_prefix("c=") {
            let addr = connection_address(c)?;
            if audio.is_none() {
                session_addr = Some(addr);
            } else if in_audio {
                media_addr = Some(addr);
            }
        } else if let Some(a) = line.strip_prefix("a=")
            && (in_audio || audio.is_none())
        {
            if let Some(map) = a.strip_prefix("rtpmap:") {
                let mut it = map.splitn(2, ' ');
                if let (Some(pt), Some(name)) = (it.next().and_then(|p| p.parse().ok()), it.next())
                {
                    rtpmaps.push((pt, name.trim().to_ascii_lowercase()));
                }
            } else if matches!(a, "sendrecv" | "sendonly" | "recvonly" | "inactive") {
                direction = a.to_string();
            }
        }
    }
    let (port, payload_types) =
        audio.ok_or_else(|| SdpError::Malformed("no m=audio line".into()))?;
    if port == 0 {
        return Err(SdpError::Unacceptable(
            "the audio stream is declined (port 0)".into(),
        ));
    }
    let addr = media_addr
        .or(session_addr)
        .ok_or_else(|| SdpError::Malformed("no c= line".into()))?;
    Ok(Offer {
        addr,
        port,
        payload_types,
        rtpmaps,
        direction,
    })
}

/// The address of a `c=` line (`IN IP4 192.0.2.1`), refused when it is not one
/// warmline may send media to: another network or address type, multicast or
/// broadcast. `0.0.0.0` stays (the old way to say hold).
fn connection_address(c: &str) -> Result<IpAddr, SdpError> {
    let parts: Vec<&str> = c.split_whitespace().collect();
    let [net, family, addr, ..] = parts[..] else {
        return Err(SdpError::Malformed(format!("bad c= line {c:?}")));
    };
    if net != "IN" || !matches!(family, "IP4" | "IP6") {
        return Err(SdpError::Unacceptable(format!(
            "address type {net} {family} (only IN IP4 and IN IP6)"
        )));
    }
    let addr: IpAddr = addr
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| SdpError::Malformed(format!("bad c= address {addr:?}")))?;
    if addr.is_ipv4() != (family == "IP4") {
        return Err(SdpError::Malformed(format!(
            "c= says {family} but the address is {addr}"
        )));
    }
    let broadcast = matches!(addr, IpAddr::V4(v4) if v4.is_broadcast());
    if addr.is_multicast() || broadcast {
        return Err(SdpError::Unacceptable(format!(
            "multicast or broadcast address {addr}"
        )));
    }
    Ok(addr)
}

fn codec_of(offer: &Offer, pt: u8) -> Option<Codec> {
    let name = offer
        .rtpmaps
        .iter()
        .find(|(p, _)| *p == pt)
        .map(|(_, n)| n.as_str());
    match (pt, name) {
        (_, Some(n)) if n.starts_with("pcmu/8000") => Some(Codec::Pcmu),
        (_, Some(n)) if n.starts_with("pcma/8000") => Some(Codec::Pcma),
        (_, Some(n)) if n.starts_with("opus/48000") => Some(Codec::Opus),
        (0, None) => Some(Codec::Pcmu),
        (8, None) => Some(Codec::Pcma),
        _ => None,
    }
}

/// Reads an offer (or an answer to our offer) and picks the stream's codec.
pub fn negotiate(sdp: &[u8]) -> Result<Negotiated, SdpError> {
    let offer = parse(sdp)?;
    let chosen = offer
        .payload_types
        .iter()
        .find_map(|&pt| codec_of(&offer, pt).map(|c| (c, pt)));
    let Some((codec, payload_type)) = chosen else {
        let names: Vec<String> = offer
            .payload_types
            .iter()
            .map(|pt| {
                offer
                    .rtpmaps
                    .iter()
                    .find(|(p, _)| p == pt)
                    .map(|(_, n)| n.clone())
                    .unwrap_or_else(|| pt.to_string())
            })
            .collect();
        return Err(SdpError::NoCommonCodec(names.join(", ")));
    };
    let dtmf_payload_type = offer
        .rtpmaps
        .iter()
        .find(|(pt, n)| n.starts_with("telephone-event/8000") && offer.payload_types.contains(pt))
        .map(|(pt, _)| *pt);
    Ok(Negotiated {
        codec,
        payload_type,
        dtmf_payload_type,
        remote: SocketAddr::new(offer.addr, offer.port),
        on_hold: matches!(offer.direction.as_str(), "sendonly" | "inactive")
            || offer.addr.is_unspecified(),
    })
}

/// Our SDP: an answer carrying `negotiated`'s codec, or (with `None`) an offer
/// of PCMU, PCMA and telephone-event.
pub fn describe(local: SocketAddr, session_id: u64, negotiated: Option<&Negotiated>) -> Vec<u8> {
    let ip = local.ip();
    let family = if ip.is_ipv6() { "IP6" } else { "IP4" };
    let mut lines = vec![
        "v=0".to_string(),
        format!("o=warmline {session_id} {session_id} IN {family} {ip}"),
        "s=warmline".into(),
        format!("c=IN {family} {ip}"),
        "t=0 0".into(),
    ];
    match negotiated {
        Some(n) => {
            let mut pts = vec![n.payload_type.to_string()];
            if let Some(d) = n.dtmf_payload_type {
                pts.push(d.to_string());
            }
            lines.push(format!(
                "m=audio {} RTP/AVP {}",
                local.port(),
                pts.join(" ")
            ));
            lines.push(format!("a=rtpmap:{} {}", n.payload_type, n.codec.name()));
            if n.codec == Codec::Opus {
                lines.push(format!("a=fmtp:{} useinbandfec=1", n.payload_type));
            }
            if let Some(d) = n.dtmf_payload_type {
                lines.push(format!("a=rtpmap:{d} telephone-event/8000"));
                lines.push(format!("a=fmtp:{d} 0-16"));
            }
            lines.push("a=ptime:20".into());
            lines.push(
                if n.on_hold {
                    "a=recvonly"
                } else {
                    "a=sendrecv"
                }
                .into(),
            );
        }
        None => {
            lines.push(format!("m=audio {} RTP/AVP 0 8 101", local.port()));
            lines.push("a=rtpmap:0 PCMU/8000".into());
            lines.push("a=rtpmap:8 PCMA/8000".into());
            lines.push("a=rtpmap:101 telephone-event/8000".into());
            lines.push("a=fmtp:101 0-16".into());
            lines.push("a=ptime:20".into());
            lines.push("a=sendrecv".into());
        }
    }
    let mut out = lines.join("\r\n");
    out.push_str("\r\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIPP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n\
c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n";

    #[test]
    fn takes_the_callers_first_supported_codec() {
        let n = negotiate(SIPP.as_bytes()).unwrap();
        assert_eq!(n.codec, Codec::Pcmu);
        assert_eq!(n.dtmf_payload_type, Some(101));
        assert_eq!(n.remote, "127.0.0.1:6000".parse().unwrap());
        assert!(!n.on_hold);
        let opus_first = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 111 18 8\r\n\
a=rtpmap:111 opus/48000/2\r\na=rtpmap:18 G729/8000\r\na=sendonly\r\n";
        let n = negotiate(opus_first.as_bytes()).unwrap();
        assert_eq!((n.codec, n.payload_type), (Codec::Opus, 111));
        assert!(n.on_hold, "sendonly is hold");
        assert_eq!(n.dtmf_payload_type, None);
    }

    #[test]
    fn refuses_offers_it_cannot_serve() {
        let g729 =
            "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
        assert_eq!(
            negotiate(g729.as_bytes()),
            Err(SdpError::NoCommonCodec("g729/8000".into()))
        );
        assert!(matches!(negotiate(b"v=0\r\n"), Err(SdpError::Malformed(_))));
        assert!(matches!(
            negotiate(b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n"),
            Err(SdpError::Malformed(_))
        ));
        assert!(matches!(
            negotiate(&[0xff, 0xfe]),
            Err(SdpError::Malformed(_))
        ));
    }

    #[test]
    fn streams_warmline_must_not_send_to_are_refused_as_unacceptable() {
        let offer = |c: &str, port: u16| {
            format!("v=0\r\nc={c}\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
        };
        let unacceptable =
            |sdp: String| matches!(negotiate(sdp.as_bytes()), Err(SdpError::Unacceptable(_)));
        assert!(
            unacceptable(offer("IN IP4 10.0.0.1", 0)),
            "port 0 declines the stream"
        );
        assert!(
            unacceptable(offer("IN IP4 239.1.2.3/127", 4000)),
            "multicast"
        );
        assert!(
            unacceptable(offer("IN IP6 ff02::1", 4000)),
            "IPv6 multicast"
        );
        assert!(
            unacceptable(offer("IN IP4 255.255.255.255", 4000)),
            "broadcast"
        );
        assert!(
            unacceptable(offer("ATM NSAP 47.0091.8100.0000", 4000)),
            "another network type"
        );
        assert!(
            matches!(
                negotiate(offer("IN IP4 ::1", 4000).as_bytes()),
                Err(SdpError::Malformed(_))
            ),
            "family and address disagree"
        );
        let hold = negotiate(offer("IN IP4 0.0.0.0", 4000).as_bytes()).unwrap();
        assert!(hold.on_hold, "0.0.0.0 is still the old hold");
    }

    #[test]
    fn our_answer_and_offer_read_back() {
        let n = negotiate(SIPP.as_bytes()).unwrap();
        let local: SocketAddr = "127.0.0.1:20000".parse().unwrap();
        let answer = describe(local, 1, Some(&n));
        let back = negotiate(&answer).unwrap();
        assert_eq!(
            (back.codec, back.remote, back.dtmf_payload_type),
            (Codec::Pcmu, local, Some(101))
        );
        let offer = describe(local, 2, None);
        assert_eq!(negotiate(&offer).unwrap().codec, Codec::Pcmu);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "(v=0|c=IN IP4 [0-9.]{1,15}|m=audio [0-9]{1,6} RTP/AVP( [0-9]{1,3}){0,4}|a=rtpmap:[0-9]{1,3} [a-zA-Z0-9/]{0,12}|a=sendonly|.{0,20})(\r\n(v=0|c=IN IP4 [0-9.]{1,15}|m=audio [0-9]{1,6} RTP/AVP( [0-9]{1,3}){0,4}|a=rtpmap:[0-9]{1,3} [a-zA-Z0-9/]{0,12}|.{0,20})){0,8}") {
            let _ = negotiate(text.as_bytes());
        }
    }
}
