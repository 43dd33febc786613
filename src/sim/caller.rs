//! A simulated phone caller that behaves like Twilio's side of a bidirectional
//! Media Streams connection: `connected`, `start`, real-time 20 ms `media`,
//! mark echoes, `clear` handling and `stop`. It records what it hears.

use crate::legs::media_streams::{self, ProviderWriter, StartMeta, StreamMessage};
use crate::media::g711;
use crate::media::wav::TimedTrack;
use futures_util::{SinkExt, StreamExt};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio_tungstenite::tungstenite::Message;

/// How the simulated call ends after its audio and tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerEnd {
    /// Send `stop` and close the socket (a normal hang-up).
    Stop,
    /// Drop the TCP connection without a word (network loss).
    Drop,
}

/// What the caller does.
#[derive(Debug, Clone)]
pub struct CallerOptions {
    /// The gateway's Media Streams URL.
    pub url: String,
    /// What the caller says, μ-law 8 kHz (sent in real time, 160 bytes per 20 ms).
    pub audio: Vec<u8>,
    /// Provider call id.
    pub call_sid: String,
    /// Provider stream id.
    pub stream_sid: String,
    /// `<Parameter>` values.
    pub custom_parameters: BTreeMap<String, String>,
    /// Digits to press, at times from the start of the audio.
    pub dtmf: Vec<(Duration, char)>,
    /// How long to stay on the line after the audio.
    pub tail: Duration,
    /// How to end.
    pub end: CallerEnd,
}

impl CallerOptions {
    /// A caller with the given audio, fresh ids and a short tail.
    pub fn new(url: impl Into<String>, audio: Vec<u8>, n: u64) -> Self {
        CallerOptions {
            url: url.into(),
            audio,
            call_sid: format!("CA{n:032x}"),
            stream_sid: format!("MZ{n:032x}"),
            custom_parameters: BTreeMap::new(),
            dtmf: Vec::new(),
            tail: Duration::from_millis(500),
            end: CallerEnd::Stop,
        }
    }
}

/// What the caller experienced.
#[derive(Debug, Clone, Default)]
pub struct CallerReport {
    /// What it heard, μ-law, placed at arrival time (gaps are μ-law silence).
    pub heard: Vec<u8>,
    /// Every audio byte received, back to back (no gaps).
    pub received_audio: Vec<u8>,
    /// `media` messages received.
    pub media_messages: usize,
    /// Marks received (and echoed).
    pub marks: Vec<String>,
    /// `clear` messages received.
    pub clears: usize,
    /// The gateway closed the socket before the caller hung up.
    pub closed_by_gateway: bool,
    /// Close code the gateway sent, if any.
    pub close_code: Option<u16>,
}

/// The caller could not run.
#[derive(Debug, Error)]
pub enum CallerError {
    /// No WebSocket connection.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The URL.
        url: String,
        /// Why.
        source: tokio_tungstenite::tungstenite::Error,
    },
    /// The socket failed while sending.
    #[error("caller socket failed: {0}")]
    Socket(#[from] tokio_tungstenite::tungstenite::Error),
}

/// Places one call and returns what happened.
pub async fn run(options: CallerOptions) -> Result<CallerReport, CallerError> {
    let (ws, _) = tokio_tungstenite::connect_async_with_config(
        options.url.as_str(),
        Some(crate::legs::ws_config()),
        true,
    )
    .await
    .map_err(|source| CallerError::Connect {
        url: options.url.clone(),
        source,
    })?;
    let (mut sink, mut stream) = ws.split();
    let mut writer = ProviderWriter::new(options.stream_sid.clone());
    sink.send(Message::Text(writer.connected().into())).await?;
    let start = StartMeta {
        account_sid: "ACsimulated".into(),
        stream_sid: options.stream_sid.clone(),
        call_sid: options.call_sid.clone(),
        tracks: vec!["inbound".into()],
        custom_parameters: options.custom_parameters.clone(),
        media_format: media_streams::MediaFormat::default(),
    };
    sink.send(Message::Text(writer.start(start).into())).await?;

    let mut report = CallerReport::default();
    let mut track = TimedTrack::new(8000);
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    let mut chunks = options.audio.chunks(160);
    let mut dtmf = options.dtmf.clone();
    dtmf.sort_by_key(|(at, _)| *at);
    let mut dtmf = dtmf.into_iter().peekable();
    let mut tail_until: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if let Some((at, digit)) = dtmf.peek().copied()
                    && started.elapsed() >= at
                {
                    dtmf.next();
                    sink.send(Message::Text(writer.dtmf(digit).into())).await?;
                }
                match chunks.next() {
                    Some(chunk) => sink.send(Message::Text(writer.media(chunk).into())).await?,
                    None => {
                        let until = *tail_until.get_or_insert_with(|| tokio::time::Instant::now() + options.tail);
                        if tokio::time::Instant::now() >= until {
                            break;
                        }
                    }
                }
            }
            msg = stream.next() => {
                match msg {
                    Some(Ok(Message::Text(text))) => {
                        match media_streams::parse(&text, 1 << 20) {
                            Ok(StreamMessage::Media { media, .. }) => {
                                if let Ok(bytes) = media_streams::decode_payload(&media) {
                                    let gap = track.gap_before(started.elapsed(), bytes.len());
                                    report.heard.extend(std::iter::repeat_n(g711::ULAW_SILENCE, gap));
                                    report.heard.extend_from_slice(&bytes);
                                    report.received_audio.extend_from_slice(&bytes);
                                    report.media_messages += 1;
                                }
                            }
                            Ok(StreamMessage::Mark { mark, .. }) => {
                                // Played as soon as received: the gateway paces in real time.
                                sink.send(Message::Text(writer.mark(&mark.name).into())).await?;
                                report.marks.push(mark.name);
                            }
                            Ok(StreamMessage::Clear { .. }) => report.clears += 1,
                            _ => {}
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        report.closed_by_gateway = true;
                        report.close_code = frame.map(|f| u16::from(f.code));
                        return Ok(report);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        report.closed_by_gateway = true;
                        return Ok(report);
                    }
                }
            }
        }
    }
    match options.end {
        CallerEnd::Stop => {
            sink.send(Message::Text(
                writer.stop("ACsimulated", &options.call_sid).into(),
            ))
            .await?;
            let _ = sink.close().await;
        }
        CallerEnd::Drop => {
            drop(sink);
            drop(stream);
        }
    }
    Ok(report)
}
