//! Every parser that reads the network or a file, fed random input and
//! randomly mangled valid input: Media Streams and agent-protocol JSON, SIP
//! messages (datagram and stream framing), SDP offers, RTP, RFC 4733 and RTCP,
//! SIP digest headers, OpenAI Realtime server events, handoff contexts and the
//! configuration. None may panic; each returns a value or a typed error.
//! `PARSER_CASES` (default 8 000 per strategy, 20 strategies ≈ 160 000 cases)
//! sets the depth; the counts are printed.

use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use warmline::legs::media_streams;
use warmline::legs::realtime::RealtimeTranslator;
use warmline::legs::sip::digest::DigestAuth;
use warmline::legs::sip::message::SipMessage;
use warmline::legs::sip::sdp;
use warmline::media::rtp;

const MEDIA: &str = r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ1","media":{"track":"inbound","chunk":"2","timestamp":"40","payload":"/////w=="}}"#;
const START: &str = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],"customParameters":{"a":"b"},"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;
const ESCALATE: &str = r#"{"event":"escalate","streamSid":"MZ1","escalate":{"trigger":"authority_limit","description":"Refund","urgency":"elevated"}}"#;
const INVITE: &str = "INVITE sip:ai@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK1\r\nFrom: <sip:+1555@x>;tag=1\r\nTo: <sip:ai@x>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContact: <sip:a@127.0.0.1:5071>\r\nContent-Type: application/sdp\r\nContent-Length: 129\r\n\r\nv=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 111 101\r\na=rtpmap:111 opus/48000/2\r\n";
const SDP: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 111 8 0 101\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n";
const AUTH: &str = r#"Digest username="trunk", realm="warmline", nonce="6b0705dacfbe34d4ecd9f9ac", uri="sip:ai@x", response="0123456789abcdef0123456789abcdef", algorithm=MD5, qop=auth, nc=00000001, cnonce="abc""#;
const REALTIME: &str = r#"{"type":"response.function_call_arguments.done","call_id":"c1","name":"escalate_to_human","arguments":"{\"trigger\":\"customer_request\",\"description\":\"x\"}"}"#;
const CONTEXT: &str = r#"{"conversationId":"CA1","customer":{"name":"Sarah","verified":true},"intent":{"primary":"refund","resolvedItems":[],"unresolvedItems":["order 8821"]},"sentimentArc":[{"turn":0,"score":-0.4}],"escalation":{"reasonCode":"repeated_failure","urgency":"elevated"}}"#;
const CONSOLE: &str =
    r#"{"event":"wrapup","callId":"call-1","resolved":true,"callerRepeated":false,"notes":"ok"}"#;
const PII_TURN: &str =
    "my card is 4111 1111 1111 1111 and my email is a.b@example.com, SSN 078-05-1120";
const CONFIG: &str = "[sip]\nlisten = \"127.0.0.1:5060\"\nrtp_port_min = 30000\n[routing]\ntime_zone = \"America/New_York\"\n[[routing.agents]]\nid = \"a\"\nname = \"A\"\ntoken = \"t\"\n";

fn cases() -> u32 {
    std::env::var("PARSER_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8_000)
}

/// Random bytes, up to 1.5 KB.
fn random_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..1500)
}

/// A valid sample with up to 8 random edits (overwrite, insert, delete) and
/// maybe a truncation: close enough to valid to reach the deep paths.
fn mangled(sample: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let edits = proptest::collection::vec((0usize..4, any::<usize>(), any::<u8>()), 0..8);
    (edits, proptest::option::of(any::<usize>())).prop_map(move |(edits, cut)| {
        let mut b = sample.as_bytes().to_vec();
        for (kind, at, byte) in edits {
            let at = at % (b.len() + 1);
            match kind {
                0 if at < b.len() => b[at] = byte,
                1 => b.insert(at, byte),
                2 if at < b.len() => {
                    b.remove(at);
                }
                // Digits and structure characters reach numeric and framing code.
                _ if at < b.len() => b[at] = b"0123456789:;=\r\n\"{}[],"[byte as usize % 21],
                _ => {}
            }
        }
        if let Some(cut) = cut {
            b.truncate(cut % (b.len() + 1));
        }
        b
    })
}

/// Runs `check` over `strategy` for [`cases`] cases; returns the count.
fn run<S: Strategy>(name: &str, strategy: S, check: impl Fn(S::Value)) -> u64
where
    S::Value: std::fmt::Debug,
{
    let config = RunnerConfig {
        cases: cases(),
        failure_persistence: None,
        ..RunnerConfig::default()
    };
    let mut runner = TestRunner::new(config);
    runner
        .run(&strategy, |v| {
            check(v);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    u64::from(cases())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn no_parser_panics_on_random_or_mangled_input() {
    let auth = DigestAuth::new("warmline", "trunk", "pw", [3; 16]);
    let media = |b: Vec<u8>| {
        if let Ok(media_streams::StreamMessage::Media { media, .. }) =
            media_streams::parse(&text(&b), 65_536)
        {
            let _ = media_streams::decode_payload(&media);
        }
    };
    let sip = |b: Vec<u8>| {
        let _ = SipMessage::parse(&b);
        let _ = SipMessage::parse_stream(&b);
        if let Ok(m) = SipMessage::parse_unchecked(&b) {
            let _ = m.validate();
            let _ = m.response(400, "Bad Request", None).to_bytes();
        }
    };
    let rtp_all = |b: Vec<u8>| {
        let _ = rtp::RtpPacket::parse(&b);
        let _ = rtp::parse_dtmf(&b);
        let _ = rtp::parse_rtcp_report(&b);
    };
    let realtime = |b: Vec<u8>| {
        let _ = RealtimeTranslator::default().on_server_text(&text(&b));
    };
    let config = |b: Vec<u8>| {
        let _ =
            warmline::config::Config::from_layers(Some(("fuzz", &text(&b))), std::iter::empty());
    };
    let mut counts: Vec<(&str, u64)> = Vec::new();
    counts.push((
        "media streams, random",
        run("media random", random_bytes(), media),
    ));
    counts.push((
        "media streams, mangled media",
        run("media mangled", mangled(MEDIA), media),
    ));
    counts.push((
        "media streams, mangled start",
        run("start mangled", mangled(START), media),
    ));
    counts.push((
        "agent events, mangled escalate",
        run("escalate", mangled(ESCALATE), media),
    ));
    counts.push(("SIP, random", run("sip random", random_bytes(), sip)));
    counts.push((
        "SIP, mangled INVITE",
        run("sip mangled", mangled(INVITE), sip),
    ));
    counts.push((
        "SDP, random",
        run("sdp random", random_bytes(), |b| {
            let _ = sdp::negotiate(&b);
        }),
    ));
    counts.push((
        "SDP, mangled offer",
        run("sdp mangled", mangled(SDP), |b| {
            let _ = sdp::negotiate(&b);
        }),
    ));
    counts.push((
        "RTP/RTCP/RFC 4733, random",
        run("rtp", random_bytes(), rtp_all),
    ));
    counts.push((
        "digest header, random",
        run("digest random", random_bytes(), |b| {
            let _ = auth.verify(Some(&text(&b)), "INVITE", 1_000_000);
        }),
    ));
    counts.push((
        "digest header, mangled",
        run("digest mangled", mangled(AUTH), |b| {
            let _ = auth.verify(Some(&text(&b)), "INVITE", 1_000_000);
        }),
    ));
    counts.push((
        "Realtime events, random",
        run("realtime random", random_bytes(), realtime),
    ));
    counts.push((
        "Realtime events, mangled",
        run("realtime mangled", mangled(REALTIME), realtime),
    ));
    counts.push((
        "handoff context, random",
        run("context random", random_bytes(), |b| {
            let _ = warmline::brief::context::HandoffContext::from_json(&text(&b));
        }),
    ));
    counts.push((
        "handoff context, mangled",
        run("context mangled", mangled(CONTEXT), |b| {
            let _ = warmline::brief::context::HandoffContext::from_json(&text(&b));
        }),
    ));
    counts.push((
        "config, random",
        run("config random", random_bytes(), config),
    ));
    counts.push((
        "config, mangled",
        run("config mangled", mangled(CONFIG), config),
    ));
    counts.push(("RTP, mangled valid packet", run("rtp mangled", mangled("\u{80}\u{0}\u{0}\u{1}\u{0}\u{0}\u{0}\u{a0}\u{12}\u{34}\u{56}\u{78}payload-bytes-here"), rtp_all)));
    let console = |b: Vec<u8>| {
        let _ = serde_json::from_str::<warmline::legs::human::ConsoleMessage>(&text(&b));
    };
    counts.push((
        "console messages, mangled",
        run("console mangled", mangled(CONSOLE), console),
    ));
    let redactor = warmline::util::pii::Redactor::new(&warmline::config::Config::default().privacy)
        .expect("default privacy patterns");
    counts.push((
        "privacy redaction, mangled turn",
        run("pii mangled", mangled(PII_TURN), |b| {
            let _ = redactor.text(&text(&b));
        }),
    ));
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    for (name, n) in &counts {
        println!("{n:>8} cases  {name}");
    }
    println!("{total:>8} cases in all, no panic");
    assert!(total >= 20 * u64::from(cases()));
}
