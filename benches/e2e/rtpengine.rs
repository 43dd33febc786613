//! A minimal rtpengine ng-protocol client (UDP, `<cookie> <bencoded dict>`):
//! enough to set up, and tear down, one relayed call between two RTP peers.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;

/// A bencoded value.
#[derive(Debug, Clone)]
pub enum Bencode {
    /// Byte string.
    Str(Vec<u8>),
    /// Integer.
    Int(i64),
    /// List.
    List(Vec<Bencode>),
    /// Dictionary (encoded with sorted keys).
    Dict(Vec<(String, Bencode)>),
}

impl Bencode {
    /// A string value.
    pub fn s(v: &str) -> Bencode {
        Bencode::Str(v.as_bytes().to_vec())
    }

    /// Appends the encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Bencode::Str(b) => {
                out.extend(format!("{}:", b.len()).as_bytes());
                out.extend(b);
            }
            Bencode::Int(i) => out.extend(format!("i{i}e").as_bytes()),
            Bencode::List(items) => {
                out.push(b'l');
                items.iter().for_each(|i| i.encode(out));
                out.push(b'e');
            }
            Bencode::Dict(entries) => {
                let mut sorted: Vec<&(String, Bencode)> = entries.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                out.push(b'd');
                for (k, v) in sorted {
                    Bencode::s(k).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Decodes one value from the front of `b`; returns it and the rest.
    pub fn decode(b: &[u8]) -> Option<(Bencode, &[u8])> {
        match *b.first()? {
            b'i' => {
                let end = b.iter().position(|&c| c == b'e')?;
                let n = std::str::from_utf8(&b[1..end]).ok()?.parse().ok()?;
                Some((Bencode::Int(n), &b[end + 1..]))
            }
            b'l' => {
                let mut rest = &b[1..];
                let mut items = Vec::new();
                while *rest.first()? != b'e' {
                    let (v, r) = Bencode::decode(rest)?;
                    items.push(v);
                    rest = r;
                }
                Some((Bencode::List(items), &rest[1..]))
            }
            b'd' => {
                let mut rest = &b[1..];
                let mut entries = Vec::new();
                while *rest.first()? != b'e' {
                    let (Bencode::Str(k), r) = Bencode::decode(rest)? else {
                        return None;
                    };
                    let (v, r) = Bencode::decode(r)?;
                    entries.push((String::from_utf8_lossy(&k).into_owned(), v));
                    rest = r;
                }
                Some((Bencode::Dict(entries), &rest[1..]))
            }
            b'0'..=b'9' => {
                let colon = b.iter().position(|&c| c == b':')?;
                let len: usize = std::str::from_utf8(&b[..colon]).ok()?.parse().ok()?;
                let body = b.get(colon + 1..colon + 1 + len)?;
                Some((Bencode::Str(body.to_vec()), &b[colon + 1 + len..]))
            }
            _ => None,
        }
    }

    /// A dictionary entry's string value.
    pub fn get_str(&self, key: &str) -> Option<String> {
        let Bencode::Dict(entries) = self else {
            return None;
        };
        entries
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| match v {
                Bencode::Str(s) => Some(String::from_utf8_lossy(s).into_owned()),
                _ => None,
            })
    }
}

/// Sends one ng command and waits for its answer.
pub async fn command(ng: SocketAddr, dict: Vec<(String, Bencode)>) -> Result<Bencode, String> {
    let sock = UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let cookie = format!("{:08x}", rand_cookie());
    let mut msg = format!("{cookie} ").into_bytes();
    Bencode::Dict(dict).encode(&mut msg);
    sock.send_to(&msg, ng).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 65_536];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
        .await
        .map_err(|_| "rtpengine did not answer".to_string())?
        .map_err(|e| e.to_string())?;
    let reply = &buf[..n];
    let space = reply
        .iter()
        .position(|&c| c == b' ')
        .ok_or("reply without a cookie")?;
    let (value, _) = Bencode::decode(&reply[space + 1..]).ok_or("unreadable bencode reply")?;
    match value.get_str("result").as_deref() {
        Some("ok") | Some("pong") => Ok(value),
        other => Err(format!(
            "rtpengine refused: {other:?} {:?}",
            value.get_str("error-reason")
        )),
    }
}

/// True when rtpengine answers a ping.
pub async fn ping(ng: SocketAddr) -> bool {
    command(ng, vec![("command".into(), Bencode::s("ping"))])
        .await
        .is_ok()
}

/// The addresses each side sends to, once the call is set up.
#[derive(Debug, Clone, Copy)]
pub struct RelayedCall {
    /// Where side A (the offerer) sends.
    pub a_sends_to: SocketAddr,
    /// Where side B (the answerer) sends.
    pub b_sends_to: SocketAddr,
}

/// Offer (A's SDP, with `codec` flags) then answer (B's SDP).
pub async fn setup(
    ng: SocketAddr,
    call_id: &str,
    a_sdp: &str,
    b_sdp: &str,
    codec: Option<Bencode>,
) -> Result<RelayedCall, String> {
    let mut offer = vec![
        ("command".into(), Bencode::s("offer")),
        ("call-id".into(), Bencode::s(call_id)),
        ("from-tag".into(), Bencode::s("a")),
        ("sdp".into(), Bencode::s(a_sdp)),
    ];
    if let Some(c) = codec {
        offer.push(("codec".into(), c));
    }
    let offered = command(ng, offer).await?;
    let b_sends_to = sdp_audio(&offered.get_str("sdp").ok_or("offer reply without sdp")?)?;
    let answered = command(
        ng,
        vec![
            ("command".into(), Bencode::s("answer")),
            ("call-id".into(), Bencode::s(call_id)),
            ("from-tag".into(), Bencode::s("a")),
            ("to-tag".into(), Bencode::s("b")),
            ("sdp".into(), Bencode::s(b_sdp)),
        ],
    )
    .await?;
    let a_sends_to = sdp_audio(&answered.get_str("sdp").ok_or("answer reply without sdp")?)?;
    Ok(RelayedCall {
        a_sends_to,
        b_sends_to,
    })
}

/// Deletes a call.
pub async fn delete(ng: SocketAddr, call_id: &str) {
    let _ = command(
        ng,
        vec![
            ("command".into(), Bencode::s("delete")),
            ("call-id".into(), Bencode::s(call_id)),
            ("from-tag".into(), Bencode::s("a")),
        ],
    )
    .await;
}

/// The audio address of an SDP (c= and m=audio).
fn sdp_audio(sdp: &str) -> Result<SocketAddr, String> {
    let ip = sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("c=IN IP4 "))
        .ok_or("SDP without c=")?;
    let port = sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("m=audio "))
        .and_then(|r| r.split_whitespace().next())
        .ok_or("SDP without m=audio")?;
    format!("{}:{port}", ip.trim())
        .parse()
        .map_err(|e| format!("bad SDP address: {e}"))
}

fn rand_cookie() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish() as u32
}
