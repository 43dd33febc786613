//! The whisper brief: 10–15 seconds of speech for the human agent only.
//!
//! Composition is sans-IO ([`compose`]): clauses from the [`HandoffContext`] by
//! priority — who and whether verified, what they want (with the key id), what
//! was tried, why it was escalated and how urgently, how the caller feels, the
//! next step, other intents — then fillers for thin contexts (the caller's own
//! words, open items, the summary, key facts again). [`render_fitted`] renders
//! with a TTS engine and *measures* the audio, dropping or adding clauses (and,
//! last, nudging the speaking rate) until it lasts 10.0–15.0 s.

use crate::brief::context::{HandoffContext, VerificationStatus, clip};
use crate::brief::speech_text::spoken;
use crate::brief::tts::{FallbackTts, Speech, Tts, TtsError};
use crate::domain::Urgency;
use crate::monitor::sentiment::SentimentLabel;
use std::collections::HashMap;
use std::time::Instant;
use thiserror::Error;

/// Fitting parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WhisperWindow {
    /// Shortest acceptable whisper, seconds.
    pub min_seconds: f64,
    /// Longest acceptable whisper, seconds.
    pub max_seconds: f64,
    /// Normal speaking rate, words per minute.
    pub words_per_minute: u32,
    /// Slowest rate used to reach the minimum.
    pub min_words_per_minute: u32,
    /// Fastest rate used to stay under the maximum.
    pub max_words_per_minute: u32,
}

impl WhisperWindow {
    /// The window `[whisper]` and `[tts]` configure.
    pub fn from_config(config: &crate::config::Config) -> Self {
        WhisperWindow {
            min_seconds: config.whisper.min_seconds,
            max_seconds: config.whisper.max_seconds,
            words_per_minute: config.tts.words_per_minute,
            ..Default::default()
        }
    }
}

impl Default for WhisperWindow {
    fn default() -> Self {
        WhisperWindow {
            min_seconds: 10.0,
            max_seconds: 15.0,
            words_per_minute: 175,
            min_words_per_minute: 150,
            max_words_per_minute: 210,
        }
    }
}

/// What a clause is for; the order is the priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClauseKind {
    /// 1. Name and verification.
    Who,
    /// 2. Primary intent with the key identifier.
    Intent,
    /// 3. What was tried and how it went.
    Tried,
    /// 4. Escalation reason code and urgency.
    Reason,
    /// 4b. The reason in the monitor's or agent's words.
    ReasonDetail,
    /// 5. Caller sentiment.
    Mood,
    /// 6. Suggested next action.
    NextAction,
    /// 7. Secondary intents.
    Secondary,
    /// Filler for thin contexts.
    Filler,
}

impl ClauseKind {
    /// Clauses that are never dropped: the agent must hear who, what and why.
    pub fn essential(self) -> bool {
        matches!(
            self,
            ClauseKind::Who | ClauseKind::Intent | ClauseKind::Reason
        )
    }
}

/// One sentence of the whisper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// Its role.
    pub kind: ClauseKind,
    /// The sentence (display form; numbers are normalised when spoken).
    pub text: String,
}

fn humanize(s: &str) -> String {
    s.replace(['_', '-'], " ").trim().to_string()
}

fn key_identifier(ctx: &HandoffContext) -> Option<String> {
    let sources = ctx
        .intent
        .unresolved_items
        .iter()
        .map(String::as_str)
        .chain(std::iter::once(ctx.intent.primary.as_str()))
        .chain(ctx.caller_turns());
    for text in sources {
        let words: Vec<&str> = text.split_whitespace().collect();
        for pair in words.windows(2) {
            let noun = pair[0].to_lowercase();
            let id: String = pair[1]
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if [
                "order", "account", "invoice", "ticket", "booking", "claim", "case",
            ]
            .contains(&noun.as_str())
                && id.chars().any(|c| c.is_ascii_digit())
            {
                return Some(format!("{noun} {id}"));
            }
        }
    }
    None
}

/// The whisper's clauses, essential ones first by priority, then fillers.
pub fn compose(ctx: &HandoffContext) -> (Vec<Clause>, Vec<Clause>) {
    let mut main = Vec::new();
    let name = clip(ctx.customer.name.trim(), 60);
    let verified = match ctx.customer.verification_status {
        VerificationStatus::Verified => "already verified",
        VerificationStatus::Partial => "partly verified",
        VerificationStatus::Unverified => "not yet verified",
    };
    let who = if name.is_empty() {
        format!("Incoming caller, {verified}.")
    } else {
        format!("Incoming from {name}, {verified}.")
    };
    main.push(Clause {
        kind: ClauseKind::Who,
        text: who,
    });

    let id = key_identifier(ctx);
    let intent = if !ctx.intent.primary.trim().is_empty() {
        let p = humanize(&ctx.intent.primary);
        match id {
            Some(id) if !p.to_lowercase().contains(&id.to_lowercase()) => {
                format!("Calling about {p}, {id}.")
            }
            _ => format!("Calling about {p}."),
        }
    } else if let Some(first) = ctx.caller_turns().find(|t| !t.trim().is_empty()) {
        format!(
            "Calling about: {}",
            clip(first.trim(), 90).trim_end_matches('.').to_string() + "."
        )
    } else {
        "The reason for the call is not known yet.".to_string()
    };
    main.push(Clause {
        kind: ClauseKind::Intent,
        text: intent,
    });

    let tools: Vec<String> = ctx
        .tools_used
        .iter()
        .take(3)
        .map(|t| {
            // The record's own flag; contexts from before it carry `result.ok`.
            let ok = t.ok && t.result.get("ok").and_then(|v| v.as_bool()) != Some(false);
            format!(
                "{}{}",
                humanize(&t.tool),
                if ok { "" } else { ", which failed" }
            )
        })
        .collect();
    if !tools.is_empty() {
        main.push(Clause {
            kind: ClauseKind::Tried,
            text: format!("The assistant tried {}.", tools.join("; ")),
        });
    } else if !ctx.attempted_resolutions.is_empty() {
        main.push(Clause {
            kind: ClauseKind::Tried,
            text: format!(
                "The assistant tried {} time{} without success.",
                ctx.attempted_resolutions.len(),
                if ctx.attempted_resolutions.len() == 1 {
                    ""
                } else {
                    "s"
                }
            ),
        });
    }

    match &ctx.escalation_reason {
        Some(r) => {
            let urgency = match r.urgency {
                Urgency::Critical => ", urgent",
                Urgency::Elevated => ", elevated priority",
                Urgency::Standard => "",
            };
            let trigger = humanize(r.trigger.as_str());
            main.push(Clause {
                kind: ClauseKind::Reason,
                text: format!("Escalated for {trigger}{urgency}."),
            });
            let why = clip(r.description.trim(), 140);
            if !why.is_empty() {
                main.push(Clause {
                    kind: ClauseKind::ReasonDetail,
                    text: why.trim_end_matches('.').to_string() + ".",
                });
            }
        }
        None => main.push(Clause {
            kind: ClauseKind::Reason,
            text: "Transferred to you by the assistant.".to_string(),
        }),
    }

    if let Some(score) = ctx.latest_sentiment() {
        // A falling arc is said even when the last turn alone sounds calm.
        let first = ctx.sentiment_arc.first().map_or(score, |p| p.score);
        let falling = ctx.sentiment_arc.len() >= 2 && score < first - 0.2;
        let spoken = SentimentLabel::spoken(score);
        let text = match (falling, score <= -0.05) {
            // Short: it has to fit the window beside the essentials.
            (true, true) if score <= -0.6 => format!("The caller sounds {spoken}."),
            (true, true) => format!("The caller sounds {spoken}, and getting worse."),
            (true, false) => "The caller is getting more upset.".to_string(),
            _ => format!("The caller sounds {spoken}."),
        };
        let mood = Clause {
            kind: ClauseKind::Mood,
            text,
        };
        // An upset caller is worth more of the window than the reason's detail:
        // the mood is tried first (it is still spoken after the reason).
        match main.iter().position(|c| c.kind == ClauseKind::ReasonDetail) {
            Some(at) if falling || score <= -0.05 => main.insert(at, mood),
            _ => main.push(mood),
        }
    }
    if !ctx.suggested_next_action.trim().is_empty() {
        main.push(Clause {
            kind: ClauseKind::NextAction,
            text: format!("Next step: {}", clip(ctx.suggested_next_action.trim(), 160)),
        });
    }
    if let Some(sec) = ctx.intent.secondary.as_ref().filter(|s| !s.is_empty()) {
        let items: Vec<String> = sec.iter().take(3).map(|s| humanize(s)).collect();
        main.push(Clause {
            kind: ClauseKind::Secondary,
            text: format!("Also mentioned: {}.", items.join(", ")),
        });
    }

    let mut fillers = Vec::new();
    for turn in ctx
        .caller_turns()
        .filter(|t| t.split_whitespace().count() >= 3)
        .take(3)
    {
        fillers.push(Clause {
            kind: ClauseKind::Filler,
            text: format!(
                "In their words: {}",
                clip(turn.trim(), 120).trim_end_matches('.').to_string() + "."
            ),
        });
    }
    if !ctx.intent.unresolved_items.is_empty() {
        fillers.push(Clause {
            kind: ClauseKind::Filler,
            text: format!(
                "Still open: {}.",
                clip(&ctx.intent.unresolved_items.join(", "), 120)
            ),
        });
    }
    if !ctx.intent.resolved_items.is_empty() {
        fillers.push(Clause {
            kind: ClauseKind::Filler,
            text: format!(
                "Already done: {}.",
                clip(&ctx.intent.resolved_items.join(", "), 120)
            ),
        });
    }
    let again = if name.is_empty() {
        "Once more: the caller is waiting on hold for you.".to_string()
    } else {
        format!("Once more, that is {name}.")
    };
    fillers.push(Clause {
        kind: ClauseKind::Filler,
        text: again,
    });
    fillers.push(Clause {
        kind: ClauseKind::Filler,
        text: "The full transcript and context are on your screen.".into(),
    });
    fillers.push(Clause {
        kind: ClauseKind::Filler,
        text: "The caller will not need to repeat themselves.".into(),
    });
    fillers.push(Clause {
        kind: ClauseKind::Filler,
        text: "You will be connected as soon as this message ends.".into(),
    });
    (main, fillers)
}

/// A rendered whisper.
#[derive(Debug, Clone)]
pub struct Whisper {
    /// What it says (display form).
    pub text: String,
    /// What was sent to the TTS (numbers as words).
    pub spoken: String,
    /// The audio at the engine's rate.
    pub speech: Speech,
    /// The speaking rate that fitted.
    pub words_per_minute: u32,
    /// Renders it took to fit.
    pub renders: usize,
    /// The engine that produced it.
    pub engine: &'static str,
    /// The primary engine's failure, when the fallback was used.
    pub tts_failure: Option<String>,
    /// Wall time of all renders, ms.
    pub render_ms: f64,
}

impl Whisper {
    /// Duration in seconds.
    pub fn seconds(&self) -> f64 {
        self.speech.seconds()
    }

    /// The audio at `rate` Hz (e.g. 8000 for a μ-law agent leg).
    pub fn samples_at(&self, rate: u32) -> Result<Vec<i16>, crate::media::resample::ResampleError> {
        crate::media::resample::resample_clip(&self.speech.samples, self.speech.rate, rate)
    }
}

/// The whisper could not be made.
#[derive(Debug, Error)]
pub enum WhisperError {
    /// Every engine failed.
    #[error("no TTS engine could speak the whisper: {0}")]
    Tts(#[from] TtsError),
    /// No arrangement of clauses fitted the window.
    #[error("could not fit the whisper into {min}–{max} s (last try {got:.2} s)")]
    NoFit {
        /// Window minimum.
        min: f64,
        /// Window maximum.
        max: f64,
        /// Duration of the last render.
        got: f64,
    },
}

/// The pause after a sentence in running speech at 175 wpm (espeak-ng en-us,
/// measured on its own output: 0.32 s after a sentence alone, 0.30 s on
/// average between the sentences of the test corpus's whispers).
const SENTENCE_PAUSE_S: f64 = 0.30;

/// Most clause renders one whisper may take (a sentence each; a fit takes 5–15).
const MAX_RENDERS: usize = 160;

/// Renders each clause once per speaking rate and measures a clause set as
/// the sum of its clauses' audio.
///
/// Rendered alone, a sentence comes back from the engine without the pause
/// that follows it in running speech, so clauses are joined with that pause
/// ([`SENTENCE_PAUSE_S`] at 175 wpm, scaled with the rate), which makes the
/// joined audio as long as the sentence run rendered at once (within 0.25 s
/// on the test corpus, tested). Each clause is rendered once per
/// rate, not once per candidate set: trying the optional clauses in turn costs
/// one render of each instead of one render of the whole growing whisper per
/// try (4.3 whole renders a whisper over the test corpus before).
struct Fitter<'a, 'e> {
    tts: &'a FallbackTts<'e>,
    rate: u32,
    renders: usize,
    /// Clause audio by (spoken text, rate), from the engine named alongside.
    rendered: HashMap<(String, u32), Speech>,
    engine: &'static str,
}

impl Fitter<'_, '_> {
    /// Renders what `clauses` needs that is not rendered yet; returns the
    /// length of the whole set in seconds.
    async fn measure(&mut self, clauses: &[Clause]) -> Result<f64, TtsError> {
        let seconds = self.length_of(clauses).await?;
        if self.tts.engine_used() == self.engine {
            return Ok(seconds);
        }
        // The engine changed under us (the primary failed mid-way): one whisper
        // is never split across voices, so measure again with the fallback only.
        self.engine = self.tts.engine_used();
        self.rendered.clear();
        self.length_of(clauses).await
    }

    /// The sentences' audio and the pauses between them, in seconds.
    async fn length_of(&mut self, clauses: &[Clause]) -> Result<f64, TtsError> {
        let mut seconds = self.pause_seconds() * clauses.len().saturating_sub(1) as f64;
        for clause in clauses {
            seconds += self.clause(clause).await?.seconds();
        }
        Ok(seconds)
    }

    async fn clause(&mut self, clause: &Clause) -> Result<&Speech, TtsError> {
        let key = (spoken(clause.text.trim()), self.rate);
        if !self.rendered.contains_key(&key) {
            let speech = self.tts.speak(&key.0, self.rate).await?;
            self.renders += 1;
            self.rendered.insert(key.clone(), speech);
        }
        self.rendered.get(&key).ok_or(TtsError::Synthesis {
            engine: self.engine,
            reason: "clause audio missing".into(),
        })
    }

    /// The pause between two sentences at this rate.
    fn pause_seconds(&self) -> f64 {
        SENTENCE_PAUSE_S * 175.0 / f64::from(self.rate.max(1))
    }

    /// The whisper for `clauses` (all measured): display text, spoken text, audio.
    fn assemble(&self, clauses: &[Clause]) -> Result<(String, String, Speech), TtsError> {
        let mut said = Vec::with_capacity(clauses.len());
        let mut audio = Speech {
            samples: Vec::new(),
            rate: 0,
        };
        for clause in clauses {
            let key = (spoken(clause.text.trim()), self.rate);
            let Some(speech) = self.rendered.get(&key) else {
                return Err(TtsError::Synthesis {
                    engine: self.engine,
                    reason: "clause audio missing".into(),
                });
            };
            if audio.rate == 0 {
                audio.rate = speech.rate;
            } else {
                let gap = (self.pause_seconds() * f64::from(audio.rate)).round() as usize;
                audio.samples.resize(audio.samples.len() + gap, 0);
            }
            if speech.rate == audio.rate {
                audio.samples.extend_from_slice(&speech.samples);
            } else {
                let same =
                    crate::media::resample::resample_clip(&speech.samples, speech.rate, audio.rate)
                        .map_err(|e| TtsError::BadAudio {
                            engine: self.engine,
                            reason: e.to_string(),
                        })?;
                audio.samples.extend_from_slice(&same);
            }
            said.push(key.0);
        }
        Ok((join(clauses), said.join(" "), audio))
    }
}

/// Composes and renders the whisper, measuring the audio until it fits the window.
///
/// Greedy by priority: the essential clauses (who, what, why) first, then each
/// further clause in priority order if the measured audio still fits, then
/// fillers until the minimum is reached. Only if the essentials alone are too
/// long does it speed up (to `max_words_per_minute`) and then shorten them; only
/// if every filler is used and it is still short does it slow down.
pub async fn render_fitted(
    ctx: &HandoffContext,
    primary: &dyn Tts,
    fallback: Option<&dyn Tts>,
    window: WhisperWindow,
) -> Result<Whisper, WhisperError> {
    let started = Instant::now();
    let tts = FallbackTts::new(primary, fallback);
    let mut fit = Fitter {
        tts: &tts,
        rate: window.words_per_minute,
        renders: 0,
        rendered: HashMap::new(),
        engine: tts.engine_used(),
    };
    let (main, fillers) = compose(ctx);
    let (mut selected, optional): (Vec<Clause>, Vec<Clause>) =
        main.into_iter().partition(|c| c.kind.essential());
    let mut best = fit.measure(&selected).await?;

    // The essentials alone are too long: speak faster, then shorten the longest.
    while best > window.max_seconds && fit.renders < MAX_RENDERS {
        if fit.rate < window.max_words_per_minute {
            fit.rate = (fit.rate + 15).min(window.max_words_per_minute);
        } else if let Some(longest) = selected.iter_mut().max_by_key(|c| c.text.chars().count()) {
            let n = longest.text.chars().count();
            longest.text = clip(&longest.text, n * 3 / 4);
        }
        best = fit.measure(&selected).await?;
    }

    // Add what else matters, in priority order, while it fits.
    for clause in optional.into_iter().chain(fillers) {
        if fit.renders >= MAX_RENDERS {
            break;
        }
        let is_filler = clause.kind == ClauseKind::Filler;
        if is_filler && best >= window.min_seconds {
            break;
        }
        let mut candidate = selected.clone();
        let at = candidate
            .iter()
            .position(|c| c.kind > clause.kind)
            .unwrap_or(candidate.len());
        candidate.insert(at, clause);
        let measured = fit.measure(&candidate).await?;
        if measured <= window.max_seconds {
            selected = candidate;
            best = measured;
        }
    }

    // Everything said and still short: slow down.
    while best < window.min_seconds
        && fit.rate > window.min_words_per_minute
        && fit.renders < MAX_RENDERS
    {
        fit.rate = (fit.rate - 10).max(window.min_words_per_minute);
        best = fit.measure(&selected).await?;
    }

    let (text, said, speech) = fit.assemble(&selected)?;
    let d = speech.seconds();
    if d < window.min_seconds || d > window.max_seconds {
        return Err(WhisperError::NoFit {
            min: window.min_seconds,
            max: window.max_seconds,
            got: d,
        });
    }
    Ok(Whisper {
        text,
        spoken: said,
        speech,
        words_per_minute: fit.rate,
        renders: fit.renders,
        engine: tts.engine_used(),
        tts_failure: tts.failure().map(|e| e.to_string()),
        render_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}

fn join(clauses: &[Clause]) -> String {
    clauses
        .iter()
        .map(|c| c.text.trim())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rich() -> HandoffContext {
        HandoffContext::from_json(
            r#"{"customer":{"name":"Sarah Chen","verificationStatus":"verified"},
                "intent":{"primary":"billing_dispute","unresolvedItems":["refund of $45 for order 8821"],"secondary":["address change"]},
                "toolsUsed":[{"tool":"refund_request","result":{"ok":false}}],
                "sentimentArc":[{"at":"x","score":-0.5}],
                "escalationReason":{"trigger":"authority_limit","description":"Refund above the assistant's limit","urgency":"elevated"},
                "suggestedNextAction":"Review and approve the refund."}"#,
        )
        .unwrap()
    }

    #[test]
    fn clauses_follow_the_priority_order_with_the_key_identifier() {
        let (main, fillers) = compose(&rich());
        let kinds: Vec<ClauseKind> = main.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            vec![
                ClauseKind::Who,
                ClauseKind::Intent,
                ClauseKind::Tried,
                ClauseKind::Reason,
                // The caller is upset (-0.5): the mood goes before the reason's detail.
                ClauseKind::Mood,
                ClauseKind::ReasonDetail,
                ClauseKind::NextAction,
                ClauseKind::Secondary
            ]
        );
        assert_eq!(main[0].text, "Incoming from Sarah Chen, already verified.");
        assert_eq!(main[1].text, "Calling about billing dispute, order 8821.");
        assert_eq!(
            main[2].text,
            "The assistant tried refund request, which failed."
        );
        assert_eq!(
            main[3].text,
            "Escalated for authority limit, elevated priority."
        );
        assert_eq!(main[5].text, "Refund above the assistant's limit.");
        assert!(fillers.iter().all(|c| c.kind == ClauseKind::Filler));
        assert_eq!(
            spoken(&main[1].text),
            "Calling about billing dispute, order eighty-eight twenty-one."
        );
    }

    #[test]
    fn the_mood_is_said_when_the_arc_is_negative_or_falling() {
        let mood = |arc: &str| {
            let ctx = HandoffContext::from_json(&format!(
                r#"{{"customer":{{"name":"Sam"}},"sentimentArc":{arc}}}"#
            ))
            .unwrap();
            compose(&ctx)
                .0
                .into_iter()
                .find(|c| c.kind == ClauseKind::Mood)
                .map(|c| c.text)
        };
        let p = |s: f32| format!(r#"{{"at":"x","score":{s}}}"#);
        assert_eq!(
            mood(&format!("[{},{}]", p(0.2), p(-0.4))).as_deref(),
            Some("The caller sounds frustrated, and getting worse.")
        );
        assert_eq!(
            mood(&format!("[{},{}]", p(0.8), p(0.4))).as_deref(),
            Some("The caller is getting more upset.")
        );
        assert_eq!(
            mood(&format!("[{}]", p(-0.7))).as_deref(),
            Some("The caller sounds very upset.")
        );
        assert_eq!(
            mood(&format!("[{}]", p(0.1))).as_deref(),
            Some("The caller sounds calm.")
        );
    }

    #[test]
    fn an_empty_context_still_composes_who_what_and_why() {
        let (main, fillers) = compose(&HandoffContext::default());
        assert_eq!(main.len(), 3);
        assert!(fillers.len() >= 4);
    }
}
