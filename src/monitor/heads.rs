//! The per-turn classifier heads: one logistic regression per [`Label`] over the
//! hashed features of [`crate::monitor::features`]. Trained by `warmline policy
//! train` on the labelled corpus in the repo, stored as a small binary file
//! (assets/policy/heads.bin, weights quantised to i8), loaded at start.
//!
//! Sans-IO: bytes in, heads out; text in, scores out.

use crate::monitor::features::{FeatureVec, TurnContext, featurize};
use serde::Serialize;

/// What a turn does, as the heads label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    // Caller turns.
    /// Asks for a person, in any words.
    AsksPerson,
    /// Accepts the assistant's offer of a person.
    AcceptsOffer,
    /// Declines the assistant's offer of a person.
    DeclinesOffer,
    /// Threatens legal action.
    LegalThreat,
    /// Reports fraud or an emergency.
    FraudEmergency,
    /// Asks to cancel a service or close an account (not only asks about it).
    CancelRequest,
    /// Asks to file a formal complaint.
    ComplaintRequest,
    /// Asks for investment, medical or legal advice.
    RegulatedAdvice,
    /// Disputes what the assistant or a tool said.
    Contradicts,
    /// Is clearly annoyed or angry.
    Frustrated,
    /// Says they are repeating themselves.
    RepeatYourself,
    // Agent turns.
    /// Hedges ("I'm not sure").
    Hedge,
    /// Did not understand the caller.
    NotUnderstood,
    /// Says the task is beyond what it can do.
    Cannot,
    /// Says its records conflict.
    RecordsConflict,
    /// Offers to connect the caller with a person.
    OffersPerson,
    /// Repeats itself.
    Repeats,
}

/// Who says a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    /// The caller.
    Caller,
    /// The AI agent.
    Agent,
}

impl Label {
    /// Every label, caller labels first.
    pub const ALL: [Label; 17] = [
        Label::AsksPerson,
        Label::AcceptsOffer,
        Label::DeclinesOffer,
        Label::LegalThreat,
        Label::FraudEmergency,
        Label::CancelRequest,
        Label::ComplaintRequest,
        Label::RegulatedAdvice,
        Label::Contradicts,
        Label::Frustrated,
        Label::RepeatYourself,
        Label::Hedge,
        Label::NotUnderstood,
        Label::Cannot,
        Label::RecordsConflict,
        Label::OffersPerson,
        Label::Repeats,
    ];

    /// The corpus name (`asks_person`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Label::AsksPerson => "asks_person",
            Label::AcceptsOffer => "accepts_offer",
            Label::DeclinesOffer => "declines_offer",
            Label::LegalThreat => "legal_threat",
            Label::FraudEmergency => "fraud_emergency",
            Label::CancelRequest => "cancel_request",
            Label::ComplaintRequest => "complaint_request",
            Label::RegulatedAdvice => "regulated_advice",
            Label::Contradicts => "contradicts",
            Label::Frustrated => "frustrated",
            Label::RepeatYourself => "repeat_yourself",
            Label::Hedge => "hedge",
            Label::NotUnderstood => "not_understood",
            Label::Cannot => "cannot",
            Label::RecordsConflict => "records_conflict",
            Label::OffersPerson => "offers_person",
            Label::Repeats => "repeats",
        }
    }

    /// The label a corpus name stands for.
    pub fn parse(name: &str) -> Option<Label> {
        Label::ALL.into_iter().find(|l| l.as_str() == name)
    }

    /// Whose turns the label applies to.
    pub fn speaker(self) -> Speaker {
        match self {
            Label::Hedge
            | Label::NotUnderstood
            | Label::Cannot
            | Label::RecordsConflict
            | Label::OffersPerson
            | Label::Repeats => Speaker::Agent,
            _ => Speaker::Caller,
        }
    }
}

/// A label the heads gave a turn, with its probability.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LabelScore {
    /// The label.
    pub label: Label,
    /// Its probability, 0..1.
    pub score: f32,
}

/// Every head's probability for one turn.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TurnScores {
    scores: Vec<(Label, f32, f32)>,
}

impl TurnScores {
    /// Scores from yes/no verdicts (1 or 0, threshold 0.5): the phrase rules' form.
    pub fn from_flags(flags: &[(Label, bool)]) -> TurnScores {
        TurnScores {
            scores: flags
                .iter()
                .map(|(l, on)| (*l, if *on { 1.0 } else { 0.0 }, 0.5))
                .collect(),
        }
    }

    /// The probability of `label` (0 when its head does not apply).
    pub fn score(&self, label: Label) -> f32 {
        self.scores
            .iter()
            .find(|(l, _, _)| *l == label)
            .map_or(0.0, |(_, s, _)| *s)
    }

    /// Whether `label` is at or above its head's threshold.
    pub fn has(&self, label: Label) -> bool {
        self.scores.iter().any(|(l, s, t)| *l == label && *s >= *t)
    }

    /// The labels at or above their thresholds, strongest first.
    pub fn present(&self) -> Vec<LabelScore> {
        let mut v: Vec<LabelScore> = self
            .scores
            .iter()
            .filter(|(_, s, t)| s >= t)
            .map(|(label, score, _)| LabelScore {
                label: *label,
                score: *score,
            })
            .collect();
        v.sort_by(|a, b| b.score.total_cmp(&a.score));
        v
    }

    /// Labels whose score is within `margin` of their threshold (unsure).
    pub fn unsure(&self, margin: f32) -> Vec<Label> {
        self.scores
            .iter()
            .filter(|(_, s, t)| (s - t).abs() < margin)
            .map(|(l, _, _)| *l)
            .collect()
    }

    /// Sets a label's score (a judge's verdict overrides the head's).
    pub fn set(&mut self, label: Label, score: f32) {
        if let Some(e) = self.scores.iter_mut().find(|(l, _, _)| *l == label) {
            e.1 = score;
        }
    }
}

/// Why a heads file could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HeadsError {
    /// Not a heads file.
    #[error("not a warmline heads file (bad magic)")]
    BadMagic,
    /// Cut short.
    #[error("heads file truncated at byte {0}")]
    Truncated(usize),
    /// A field out of range.
    #[error("heads file invalid: {0}")]
    Invalid(String),
    /// A file system error.
    #[error("heads file {path}: {error}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        error: String,
    },
}

const MAGIC: &[u8; 8] = b"WLHEADS1";
/// Words in one span of a run-on sentence.
const SPAN_WORDS: usize = 24;

/// Sentences of one turn scored on their own, at most.
const MAX_SENTENCES: usize = 8;
/// Buckets the features are hashed into, by default.
pub const DEFAULT_DIM: u32 = 1 << 16;

#[derive(Debug, Clone)]
struct Head {
    label: Label,
    bias: f32,
    scale: f32,
    threshold: f32,
    weights: Vec<i8>,
}

/// The trained heads.
#[derive(Debug, Clone)]
pub struct Heads {
    dim: u32,
    heads: Vec<Head>,
    /// What the file says about its training (free-form JSON text).
    pub meta: String,
    /// The sentence encoder, asked about turns these heads are unsure of.
    encoder: Option<std::sync::Arc<crate::monitor::encoder::EncoderReader>>,
    /// Why the encoder was wanted but could not be loaded.
    encoder_missing: Option<String>,
}

/// The logistic function (a head's score from its sum).
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HeadsError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(HeadsError::Truncated(self.at))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, HeadsError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn f32(&mut self) -> Result<f32, HeadsError> {
        let v = f32::from_bits(self.u32()?);
        if v.is_finite() {
            Ok(v)
        } else {
            Err(HeadsError::Invalid(format!(
                "non-finite number at {}",
                self.at
            )))
        }
    }
}

impl Heads {
    /// The heads bundled with this build (trained on the repo's corpus).
    pub fn bundled() -> Result<Heads, HeadsError> {
        Heads::from_bytes(include_bytes!("../../assets/policy/heads.bin"))
    }

    /// Reads heads from a file.
    pub fn load(path: &std::path::Path) -> Result<Heads, HeadsError> {
        let bytes = std::fs::read(path).map_err(|e| HeadsError::Io {
            path: path.display().to_string(),
            error: e.to_string(),
        })?;
        Heads::from_bytes(&bytes)
    }

    /// Parses the binary format: magic, dim, head count, meta JSON, then per head
    /// its label name, bias, scale, threshold and `dim` i8 weights.
    pub fn from_bytes(bytes: &[u8]) -> Result<Heads, HeadsError> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(8).map_err(|_| HeadsError::BadMagic)? != MAGIC {
            return Err(HeadsError::BadMagic);
        }
        let dim = r.u32()?;
        if !(16..=1 << 22).contains(&dim) {
            return Err(HeadsError::Invalid(format!("dim {dim}")));
        }
        let count = r.u32()? as usize;
        if count > Label::ALL.len() {
            return Err(HeadsError::Invalid(format!("{count} heads")));
        }
        let meta_len = r.u32()? as usize;
        let meta = String::from_utf8_lossy(r.take(meta_len)?).into_owned();
        let mut heads = Vec::with_capacity(count);
        for _ in 0..count {
            let n = r.take(1)?[0] as usize;
            let name = String::from_utf8_lossy(r.take(n)?).into_owned();
            let label = Label::parse(&name)
                .ok_or_else(|| HeadsError::Invalid(format!("unknown label {name:?}")))?;
            let bias = r.f32()?;
            let scale = r.f32()?;
            let threshold = r.f32()?;
            if !(0.0..=1.0).contains(&threshold) {
                return Err(HeadsError::Invalid(format!("threshold {threshold}")));
            }
            let weights = r.take(dim as usize)?.iter().map(|&b| b as i8).collect();
            heads.push(Head {
                label,
                bias,
                scale,
                threshold,
                weights,
            });
        }
        if r.at != bytes.len() {
            return Err(HeadsError::Invalid(format!(
                "{} trailing bytes",
                bytes.len() - r.at
            )));
        }
        Ok(Heads {
            dim,
            heads,
            meta,
            encoder: None,
            encoder_missing: None,
        })
    }

    /// The binary form [`Heads::from_bytes`] reads.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.dim.to_le_bytes());
        out.extend_from_slice(&(self.heads.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.meta.len() as u32).to_le_bytes());
        out.extend_from_slice(self.meta.as_bytes());
        for h in &self.heads {
            let name = h.label.as_str();
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
            for v in [h.bias, h.scale, h.threshold] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend(h.weights.iter().map(|&w| w as u8));
        }
        out
    }

    /// Buckets the features hash into.
    pub fn dim(&self) -> u32 {
        self.dim
    }

    /// The labels these heads score.
    pub fn labels(&self) -> Vec<Label> {
        self.heads.iter().map(|h| h.label).collect()
    }

    /// Scores a turn said by `speaker` in `ctx`.
    ///
    /// A turn does what any of its sentences does: a long turn is scored whole
    /// and sentence by sentence, and each label keeps its highest score, so a
    /// threat at the end of a long story is not diluted by the story.
    /// A turn longer than the heads read is also read from its end, so a
    /// request that closes a long story counts as much as one that opens it.
    pub fn score(&self, speaker: Speaker, text: &str, ctx: TurnContext) -> TurnScores {
        let mut best = self.score_subword(speaker, text, ctx);
        if let Some(reader) = &self.encoder
            && let Err(e) = reader.refine(speaker, text, ctx, &mut best)
        {
            tracing::warn!(error = %e, "the sentence encoder could not read a turn; subword heads only");
        }
        best
    }

    /// The subword heads' scores alone (no encoder).
    pub fn score_subword(&self, speaker: Speaker, text: &str, ctx: TurnContext) -> TurnScores {
        let (head, cut) = crate::monitor::features::bounded(text);
        let mut best = self.score_window(speaker, head, ctx);
        if cut {
            let end = self.score_window(speaker, crate::monitor::features::tail(text), ctx);
            for (entry, other) in best.scores.iter_mut().zip(end.scores) {
                entry.1 = entry.1.max(other.1);
            }
        }
        best
    }

    /// These heads with the sentence encoder asked about the turns they are unsure of.
    pub fn with_encoder(
        mut self,
        reader: std::sync::Arc<crate::monitor::encoder::EncoderReader>,
    ) -> Heads {
        self.encoder = Some(reader);
        self
    }

    /// These heads without an encoder, remembering why (for /healthz and logs).
    pub fn without_encoder(mut self, why: String) -> Heads {
        self.encoder = None;
        self.encoder_missing = Some(why);
        self
    }

    /// Why the encoder wanted for these heads could not be loaded.
    pub fn encoder_missing(&self) -> Option<&str> {
        self.encoder_missing.as_deref()
    }

    /// The encoder these heads consult, if any.
    pub fn encoder(&self) -> Option<&crate::monitor::encoder::EncoderReader> {
        self.encoder.as_deref()
    }

    fn score_window(&self, speaker: Speaker, text: &str, ctx: TurnContext) -> TurnScores {
        let mut best = self.score_features(speaker, &featurize(text, ctx, self.dim));
        let sentences: Vec<&str> = text
            .split_inclusive(['.', '!', '?', ';', '\n'])
            .map(str::trim)
            .filter(|s| s.chars().any(char::is_alphanumeric))
            .take(MAX_SENTENCES)
            .collect();
        let mut parts: Vec<String> = Vec::new();
        for s in &sentences {
            if sentences.len() > 1 {
                parts.push(s.to_string());
            }
            // A run-on sentence ("…and honestly, I'd just like to speak to
            // somebody who works there") is also read in overlapping spans.
            let words: Vec<&str> = s.split_whitespace().collect();
            if words.len() > SPAN_WORDS + SPAN_WORDS / 2 {
                let mut at = 0;
                while at < words.len() {
                    let end = (at + SPAN_WORDS).min(words.len());
                    parts.push(words[at..end].join(" "));
                    if end == words.len() {
                        break;
                    }
                    at += SPAN_WORDS / 2;
                }
            }
        }
        for part in parts {
            let scored = self.score_features(speaker, &featurize(&part, ctx, self.dim));
            for (entry, other) in best.scores.iter_mut().zip(scored.scores) {
                entry.1 = entry.1.max(other.1);
            }
        }
        best
    }

    fn score_features(&self, speaker: Speaker, f: &FeatureVec) -> TurnScores {
        let scores = self
            .heads
            .iter()
            .filter(|h| h.label.speaker() == speaker)
            .map(|h| {
                let sum: i32 = f
                    .buckets
                    .iter()
                    .map(|&b| h.weights[b as usize] as i32)
                    .sum();
                let z = h.bias + sum as f32 * h.scale * f.value;
                (h.label, sigmoid(z), h.threshold)
            })
            .collect();
        TurnScores { scores }
    }

    /// Overrides a head's threshold.
    pub fn set_threshold(&mut self, label: Label, threshold: f32) {
        if let Some(h) = self.heads.iter_mut().find(|h| h.label == label) {
            h.threshold = threshold.clamp(0.0, 1.0);
        }
    }
}

/// One labelled turn to learn from.
#[derive(Debug, Clone)]
pub struct Example {
    /// Who said it.
    pub speaker: Speaker,
    /// What was said.
    pub text: String,
    /// The context it was said in.
    pub ctx: TurnContext,
    /// Its labels.
    pub labels: Vec<Label>,
}

/// Training settings.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Feature buckets.
    pub dim: u32,
    /// Passes over the data.
    pub epochs: usize,
    /// AdaGrad step.
    pub rate: f32,
    /// L2 penalty per step.
    pub l2: f32,
    /// Shuffle seed (training is deterministic for a seed).
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            dim: DEFAULT_DIM,
            epochs: 30,
            rate: 0.2,
            l2: 6e-3,
            seed: 7,
        }
    }
}

/// Trains one head per label on `examples` (AdaGrad logistic regression, positive
/// examples weighted up to balance rare labels). Thresholds start at 0.5.
pub fn train(examples: &[Example], opts: &TrainOptions, meta: String) -> Heads {
    let feats: Vec<FeatureVec> = examples
        .iter()
        .map(|e| featurize(&e.text, e.ctx, opts.dim))
        .collect();
    let mut heads = Vec::new();
    for label in Label::ALL {
        let idx: Vec<usize> = (0..examples.len())
            .filter(|&i| examples[i].speaker == label.speaker())
            .collect();
        let positives = idx
            .iter()
            .filter(|&&i| examples[i].labels.contains(&label))
            .count();
        if positives == 0 {
            continue;
        }
        let negatives = idx.len() - positives;
        let pos_weight = (negatives as f32 / positives as f32).clamp(1.0, 8.0);
        let mut w = vec![0f32; opts.dim as usize];
        let mut g2 = vec![1e-6f32; opts.dim as usize];
        let (mut bias, mut bias_g2) = (0f32, 1e-6f32);
        let mut order = idx.clone();
        let mut rng = opts.seed ^ (label as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for _ in 0..opts.epochs {
            // Fisher–Yates with xorshift: deterministic for a seed.
            for i in (1..order.len()).rev() {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                order.swap(i, (rng % (i as u64 + 1)) as usize);
            }
            for &i in &order {
                let f = &feats[i];
                let y = if examples[i].labels.contains(&label) {
                    1.0
                } else {
                    0.0
                };
                let z = bias + f.buckets.iter().map(|&b| w[b as usize]).sum::<f32>() * f.value;
                let weight = if y > 0.5 { pos_weight } else { 1.0 };
                let g = (sigmoid(z) - y) * weight;
                for &b in &f.buckets {
                    let b = b as usize;
                    let grad = g * f.value + opts.l2 * w[b];
                    g2[b] += grad * grad;
                    w[b] -= opts.rate * grad / g2[b].sqrt();
                }
                bias_g2 += g * g;
                bias -= opts.rate * g / bias_g2.sqrt();
            }
        }
        let max = w.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        let scale = max / 127.0;
        let weights = w
            .iter()
            .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8)
            .collect();
        heads.push(Head {
            label,
            bias,
            scale,
            threshold: 0.5,
            weights,
        });
    }
    Heads {
        dim: opts.dim,
        heads,
        meta,
        encoder: None,
        encoder_missing: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(speaker: Speaker, text: &str, labels: &[Label]) -> Example {
        Example {
            speaker,
            text: text.into(),
            ctx: TurnContext::default(),
            labels: labels.to_vec(),
        }
    }

    #[test]
    fn trained_heads_round_trip_through_their_file_format() {
        let data = vec![
            ex(
                Speaker::Caller,
                "can I talk to a person",
                &[Label::AsksPerson],
            ),
            ex(Speaker::Caller, "where is my order", &[]),
            ex(Speaker::Agent, "I'm not sure", &[Label::Hedge]),
            ex(Speaker::Agent, "It shipped today", &[]),
        ];
        let opts = TrainOptions {
            dim: 1 << 10,
            epochs: 20,
            ..TrainOptions::default()
        };
        let heads = train(&data, &opts, "{}".into());
        let again = Heads::from_bytes(&heads.to_bytes()).unwrap();
        let a = heads.score(Speaker::Caller, "talk to a person", TurnContext::default());
        let b = again.score(Speaker::Caller, "talk to a person", TurnContext::default());
        assert_eq!(a, b);
        assert!(a.has(Label::AsksPerson));
        assert!(
            !again
                .score(Speaker::Caller, "where is my order", TurnContext::default())
                .has(Label::AsksPerson)
        );
        // A caller turn is never scored by an agent head.
        assert_eq!(a.score(Label::Hedge), 0.0);
    }

    #[test]
    fn broken_heads_files_are_refused_with_a_reason() {
        assert_eq!(Heads::from_bytes(b"").err(), Some(HeadsError::BadMagic));
        assert_eq!(
            Heads::from_bytes(b"NOTHEADSxxxx").err(),
            Some(HeadsError::BadMagic)
        );
        let heads = train(
            &[ex(Speaker::Caller, "agent", &[Label::AsksPerson])],
            &TrainOptions {
                dim: 64,
                epochs: 1,
                ..TrainOptions::default()
            },
            String::new(),
        );
        let bytes = heads.to_bytes();
        for cut in [9, 20, bytes.len() - 1] {
            assert!(Heads::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            Heads::from_bytes(&long),
            Err(HeadsError::Invalid(_))
        ));
    }

    #[test]
    fn a_request_at_the_end_of_a_long_rambling_turn_is_read() {
        let h = Heads::bundled().expect("assets/policy/heads.bin");
        let story = "so the engineer came round on the Tuesday, or it might have been the \
            Wednesday, and he looked at the meter and said it was fine, and then the bill \
            came and it was double what it normally is, and my neighbour says hers went up too, \
            and I rang last week and waited forty minutes, and the week before that as well";
        let ask =
            "and honestly I would just rather speak to somebody who actually works there about it";
        for (text, why) in [
            // Past what the heads read at once (600 bytes): read from the end as well.
            (
                format!("{story}, {story}, {story} {ask}."),
                "after the read limit",
            ),
            // Inside one run-on sentence: read in spans.
            (format!("{story} {ask}."), "in a run-on sentence"),
        ] {
            let scores = h.score(Speaker::Caller, &text, TurnContext::default());
            assert!(
                scores.has(Label::AsksPerson),
                "{why}: {:?}",
                scores.score(Label::AsksPerson)
            );
        }
        let plain = format!("{story}.");
        let scores = h.score(Speaker::Caller, &plain, TurnContext::default());
        assert!(
            !scores.has(Label::AsksPerson),
            "the story alone asks for nobody"
        );
    }

    #[test]
    fn the_bundled_heads_load() {
        let h = Heads::bundled().expect("assets/policy/heads.bin");
        assert_eq!(h.labels().len(), Label::ALL.len());
    }
}
