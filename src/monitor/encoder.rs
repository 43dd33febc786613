//! The sentence encoder: all-MiniLM-L6-v2 run in-process by candle, and the
//! small logistic heads trained on its sentence embeddings.
//!
//! The encoder reads a turn's meaning (paraphrase: "anyone I can talk to" and
//! "put me through to somebody who works there" land close together); the hashed
//! subword heads ([`crate::monitor::heads`]) read its letters (typos, ASR slips).
//! The monitor blends the two ([`Blend`]). The model files are a download made
//! at set-up (`scripts/setup.sh`, never committed); without them the monitor
//! runs on the subword heads alone and says so at start.
//!
//! Cost (docs/PERFORMANCE.md): ~9–12 ms of CPU per ordinary turn, so the
//! monitor asks the encoder only about turns whose subword scores are near a
//! deciding threshold; everything here is synchronous and runs off the audio
//! path (the call's insight task).

use std::path::{Path, PathBuf};

use crate::monitor::features::TurnContext;
use crate::monitor::heads::{Label, Speaker, sigmoid};

/// The embedding width of all-MiniLM-L6-v2.
pub const DIM: usize = 384;
/// Tokens read per turn (the model was trained on 128-token inputs; longer
/// turns are cut, which bounds the time a 100 KB turn can take).
pub const MAX_TOKENS: usize = 128;

/// Why the encoder or its heads could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    /// A model file is missing or unreadable.
    #[error("encoder model file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The model or tokenizer failed on a turn or at load.
    #[error("encoder: {0}")]
    Model(String),
    /// The heads file is not one this build can read.
    #[error("encoder heads: {0}")]
    Heads(String),
    /// This build has no encoder (built without the `encoder` cargo feature).
    #[error("this build has no sentence encoder (build with `--features encoder`)")]
    NotBuilt,
}

/// The model, built with the `encoder` cargo feature (candle).
#[cfg(feature = "encoder")]
mod model {
    use super::*;

    impl From<candle_core::Error> for EncoderError {
        fn from(e: candle_core::Error) -> Self {
            EncoderError::Model(e.to_string())
        }
    }

    /// all-MiniLM-L6-v2: tokenizer and BERT weights, mean-pooled and normalised.
    pub struct Encoder {
        model: candle_transformers::models::bert::BertModel,
        tokenizer: tokenizers::Tokenizer,
        device: candle_core::Device,
    }

    impl std::fmt::Debug for Encoder {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Encoder(all-MiniLM-L6-v2)")
        }
    }

    /// The files an encoder directory holds.
    const FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

    impl Encoder {
        /// Loads the model from `dir` (config.json, tokenizer.json, model.safetensors).
        pub fn load(dir: &Path) -> Result<Encoder, EncoderError> {
            for f in FILES {
                let p = dir.join(f);
                if !p.is_file() {
                    return Err(EncoderError::File {
                        path: p,
                        reason: "not found (run scripts/setup.sh)".into(),
                    });
                }
            }
            let file_err = |path: PathBuf| move |e: String| EncoderError::File { path, reason: e };
            let config_path = dir.join("config.json");
            let config_text = std::fs::read_to_string(&config_path)
                .map_err(|e| file_err(config_path.clone())(e.to_string()))?;
            let config: candle_transformers::models::bert::Config =
                serde_json::from_str(&config_text)
                    .map_err(|e| file_err(config_path)(e.to_string()))?;
            let tok_path = dir.join("tokenizer.json");
            let mut tokenizer = tokenizers::Tokenizer::from_file(&tok_path)
                .map_err(|e| file_err(tok_path.clone())(e.to_string()))?;
            // The file pads every input to 128 tokens: 3–4× the work for a short turn.
            tokenizer.with_padding(None);
            tokenizer
                .with_truncation(Some(tokenizers::TruncationParams {
                    max_length: MAX_TOKENS,
                    ..Default::default()
                }))
                .map_err(|e| EncoderError::Model(e.to_string()))?;
            let device = candle_core::Device::Cpu;
            let weights = dir.join("model.safetensors");
            // The one unsafe call outside the FFI wrappers.
            // SAFETY: the weights file is memory-mapped read-only; it is a download
            // in the build cache that nothing rewrites while the gateway runs.
            #[allow(unsafe_code)]
            let vb = unsafe {
                candle_nn::VarBuilder::from_mmaped_safetensors(
                    &[&weights],
                    candle_transformers::models::bert::DTYPE,
                    &device,
                )
            }
            .map_err(|e| file_err(weights.clone())(e.to_string()))?;
            let model = candle_transformers::models::bert::BertModel::load(vb, &config)
                .map_err(|e| file_err(weights)(e.to_string()))?;
            Ok(Encoder {
                model,
                tokenizer,
                device,
            })
        }

        /// The unit-length sentence embedding of `text` (mean over its tokens).
        pub fn embed(&self, text: &str) -> Result<Vec<f32>, EncoderError> {
            Ok(self.embed_batch(&[text])?.pop().unwrap_or_default())
        }

        /// Embeddings of several texts at once (padded to the longest; faster for
        /// training than one at a time).
        pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EncoderError> {
            use candle_core::Tensor;
            if texts.is_empty() {
                return Ok(Vec::new());
            }
            // A very long turn is cut before tokenising: the tokenizer's own work
            // grows with the text even though only 128 tokens are kept.
            let cut: Vec<&str> = texts.iter().map(|t| prefix_chars(t, 4096)).collect();
            let encodings = self
                .tokenizer
                .encode_batch(cut, true)
                .map_err(|e| EncoderError::Model(e.to_string()))?;
            let len = encodings
                .iter()
                .map(|e| e.get_ids().len())
                .max()
                .unwrap_or(0)
                .max(1);
            let n = encodings.len();
            let mut ids = vec![0u32; n * len];
            let mut mask = vec![0u32; n * len];
            for (i, e) in encodings.iter().enumerate() {
                for (j, id) in e.get_ids().iter().enumerate().take(len) {
                    ids[i * len + j] = *id;
                    mask[i * len + j] = 1;
                }
            }
            let ids = Tensor::from_vec(ids, (n, len), &self.device)?;
            let mask = Tensor::from_vec(mask, (n, len), &self.device)?;
            let types = ids.zeros_like()?;
            let out = self.model.forward(&ids, &types, Some(&mask))?;
            // Mean over the real tokens, then unit length.
            let maskf = mask.to_dtype(candle_core::DType::F32)?.unsqueeze(2)?;
            let summed = out.broadcast_mul(&maskf)?.sum(1)?;
            let counts = maskf.sum(1)?.clamp(1.0, f64::MAX)?;
            let mean = summed.broadcast_div(&counts)?;
            let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-9, f64::MAX)?;
            let unit = mean.broadcast_div(&norm)?;
            Ok(unit.to_vec2::<f32>()?)
        }
    }

    fn prefix_chars(s: &str, n: usize) -> &str {
        match s.char_indices().nth(n) {
            Some((i, _)) => &s[..i],
            None => s,
        }
    }

    /// Trains one logistic head per label (full-batch AdaGrad with L2, positives
    /// weighted up to balance rare labels; deterministic). The arithmetic runs as
    /// candle tensor operations: all of one speaker's labels at once.
    pub fn train(
        examples: &[EmbeddedExample],
        epochs: usize,
        l2: f32,
    ) -> Result<EncoderHeads, EncoderError> {
        use candle_core::{DType, Device, Tensor};
        let dev = Device::Cpu;
        let mut heads = Vec::new();
        for speaker in [Speaker::Caller, Speaker::Agent] {
            let ex: Vec<&EmbeddedExample> = examples
                .iter()
                .filter(|e| e.speaker == speaker && e.emb.len() == DIM)
                .collect();
            let labels: Vec<Label> = Label::ALL
                .into_iter()
                .filter(|l| l.speaker() == speaker)
                .filter(|l| {
                    let pos = ex.iter().filter(|e| e.labels.contains(l)).count();
                    pos > 0 && pos < ex.len()
                })
                .collect();
            if labels.is_empty() {
                continue;
            }
            let (n, k) = (ex.len(), labels.len());
            // X: n × (DIM + 2): the embedding, the after-offer flag, a constant 1.
            let mut xs = Vec::with_capacity(n * (DIM + 2));
            let mut ys = Vec::with_capacity(n * k);
            for e in &ex {
                xs.extend_from_slice(&e.emb);
                xs.push(if e.ctx.after_offer { 1.0 } else { 0.0 });
                xs.push(1.0);
                ys.extend(
                    labels
                        .iter()
                        .map(|l| f32::from(u8::from(e.labels.contains(l)))),
                );
            }
            let x = Tensor::from_vec(xs, (n, DIM + 2), &dev)?;
            let y = Tensor::from_vec(ys, (n, k), &dev)?;
            // Positives count as much as negatives in total, at most 4× each.
            let pos = y.sum(0)?.to_vec1::<f32>()?;
            let pos_w: Vec<f32> = pos
                .iter()
                .map(|p| ((n as f32 - p) / p.max(1.0)).clamp(1.0, 4.0))
                .collect();
            let pos_w = Tensor::from_vec(pos_w, (1, k), &dev)?;
            // Sample weight: pos_w where y = 1, else 1.
            let sw = (y.broadcast_mul(&(pos_w - 1.0)?)? + 1.0)?;
            let total = sw.sum(0)?; // per label
            let mut w = Tensor::zeros((DIM + 2, k), DType::F32, &dev)?;
            let mut g2 = (Tensor::ones((DIM + 2, k), DType::F32, &dev)? * 1e-8)?;
            // No L2 on the offer flag and bias rows.
            let mut l2_mask = vec![l2; DIM + 2];
            l2_mask[DIM] = 0.0;
            l2_mask[DIM + 1] = 0.0;
            let l2_mask = Tensor::from_vec(l2_mask, (DIM + 2, 1), &dev)?;
            let xt = x.t()?.contiguous()?;
            let rate = 0.5f64;
            for _ in 0..epochs {
                let p = candle_nn::ops::sigmoid(&x.matmul(&w)?)?;
                let g = ((p - &y)? * &sw)?;
                let grad = xt
                    .matmul(&g)?
                    .broadcast_div(&total)?
                    .add(&w.broadcast_mul(&l2_mask)?)?;
                g2 = (g2 + grad.sqr()?)?;
                w = (w - (grad / g2.sqrt()?)?.affine(rate, 0.0)?)?;
            }
            let w = w.t()?.to_vec2::<f32>()?;
            for (label, row) in labels.iter().zip(w) {
                heads.push(EncoderHead {
                    label: *label,
                    bias: row[DIM + 1],
                    after_offer: row[DIM],
                    weights: row[..DIM].to_vec(),
                });
            }
        }
        Ok(EncoderHeads {
            heads,
            blend: 0.5,
            margin: 0.3,
        })
    }
}
#[cfg(feature = "encoder")]
pub use model::{Encoder, train};

/// Without the `encoder` cargo feature there is no model: loading says so.
#[cfg(not(feature = "encoder"))]
mod model {
    use super::*;

    /// The sentence encoder (not in this build).
    #[derive(Debug)]
    pub struct Encoder {
        never: std::convert::Infallible,
    }

    impl Encoder {
        /// Always an error: this build has no encoder.
        pub fn load(_dir: &Path) -> Result<Encoder, EncoderError> {
            Err(EncoderError::NotBuilt)
        }

        /// Unreachable: no `Encoder` can exist in this build.
        pub fn embed_batch(&self, _texts: &[&str]) -> Result<Vec<Vec<f32>>, EncoderError> {
            match self.never {}
        }

        /// Unreachable: no `Encoder` can exist in this build.
        pub fn embed(&self, _text: &str) -> Result<Vec<f32>, EncoderError> {
            match self.never {}
        }
    }

    /// Always an error: this build has no encoder.
    pub fn train(
        _examples: &[EmbeddedExample],
        _epochs: usize,
        _l2: f32,
    ) -> Result<EncoderHeads, EncoderError> {
        Err(EncoderError::NotBuilt)
    }
}
#[cfg(not(feature = "encoder"))]
pub use model::{Encoder, train};

impl Encoder {
    /// Where the model is looked for when `monitor.encoder` is empty:
    /// `$WARMLINE_ENCODER_DIR`, else the build cache's copy made by
    /// `scripts/setup.sh`.
    pub fn default_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("WARMLINE_ENCODER_DIR") {
            return PathBuf::from(d);
        }
        let cache = std::env::var_os("WARMLINE_CACHE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/cache/warmline"));
        cache.join("models").join("all-minilm-l6-v2")
    }
}

/// One label's logistic head over an embedding (and the after-offer flag).
#[derive(Debug, Clone, PartialEq)]
struct EncoderHead {
    label: Label,
    bias: f32,
    after_offer: f32,
    weights: Vec<f32>,
}

/// The heads trained on sentence embeddings (`assets/policy/encoder_heads.bin`).
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderHeads {
    heads: Vec<EncoderHead>,
    /// The weight the encoder's probability gets when blended with the subword
    /// head's (0 = subword heads only, 1 = encoder only); set on the dev split.
    pub blend: f32,
    /// The margin chosen with `blend` on the dev split (see [`EncoderReader::margin`]).
    pub margin: f32,
}

const MAGIC: &[u8; 8] = b"WLENC001";

impl EncoderHeads {
    /// The heads bundled with this build.
    pub fn bundled() -> Result<EncoderHeads, EncoderError> {
        EncoderHeads::from_bytes(include_bytes!("../../assets/policy/encoder_heads.bin"))
    }

    /// Reads a heads file's bytes.
    pub fn from_bytes(b: &[u8]) -> Result<EncoderHeads, EncoderError> {
        let bad = |why: &str| EncoderError::Heads(why.to_string());
        let rest = b
            .strip_prefix(MAGIC)
            .ok_or_else(|| bad("not an encoder heads file"))?;
        let mut floats = rest
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        if rest.len() % 4 != 0 {
            return Err(bad("truncated"));
        }
        let mut next = || floats.next().ok_or_else(|| bad("truncated"));
        let blend = next()?;
        let margin = next()?;
        let count = next()? as usize;
        if count > Label::ALL.len()
            || !(0.0..=1.0).contains(&blend)
            || !(0.0..=1.0).contains(&margin)
        {
            return Err(bad("bad header"));
        }
        let mut heads = Vec::with_capacity(count);
        for _ in 0..count {
            let idx = next()? as usize;
            let label = *Label::ALL.get(idx).ok_or_else(|| bad("unknown label"))?;
            let bias = next()?;
            let after_offer = next()?;
            let mut weights = Vec::with_capacity(DIM);
            for _ in 0..DIM {
                weights.push(next()?);
            }
            if !weights.iter().all(|w| w.is_finite()) || !bias.is_finite() {
                return Err(bad("weights are not finite"));
            }
            heads.push(EncoderHead {
                label,
                bias,
                after_offer,
                weights,
            });
        }
        Ok(EncoderHeads {
            heads,
            blend,
            margin,
        })
    }

    /// The file form of these heads.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        let mut put = |x: f32| out.extend_from_slice(&x.to_le_bytes());
        put(self.blend);
        put(self.margin);
        put(self.heads.len() as f32);
        for h in &self.heads {
            let idx = Label::ALL.iter().position(|l| *l == h.label).unwrap_or(0);
            put(idx as f32);
            put(h.bias);
            put(h.after_offer);
            for w in &h.weights {
                put(*w);
            }
        }
        out
    }

    /// No heads (the file bundled before any training).
    pub fn is_empty(&self) -> bool {
        self.heads.is_empty()
    }

    /// Each of `speaker`'s labels with the encoder's probability for `emb`.
    pub fn score(&self, speaker: Speaker, emb: &[f32], ctx: TurnContext) -> Vec<(Label, f32)> {
        self.heads
            .iter()
            .filter(|h| h.label.speaker() == speaker)
            .map(|h| {
                let z = h.bias
                    + if ctx.after_offer { h.after_offer } else { 0.0 }
                    + h.weights.iter().zip(emb).map(|(w, x)| w * x).sum::<f32>();
                (h.label, sigmoid(z))
            })
            .collect()
    }
}

/// One embedded, labelled turn to train on.
pub struct EmbeddedExample {
    /// Who said it.
    pub speaker: Speaker,
    /// Its embedding.
    pub emb: Vec<f32>,
    /// Its context.
    pub ctx: TurnContext,
    /// Its labels.
    pub labels: Vec<Label>,
}

/// The encoder with its heads, as the monitor uses them: a turn whose subword
/// scores are all far from their thresholds is left alone; for one that is
/// near a threshold on some label, the encoder reads the turn (whole, and each
/// sentence of a longer one) and its probability is blended into that label's.
#[derive(Debug)]
pub struct EncoderReader {
    /// The model.
    pub encoder: std::sync::Arc<Encoder>,
    /// Its heads.
    pub heads: EncoderHeads,
    /// How near a threshold a subword score must be for the encoder to be asked
    /// (1 = every turn).
    pub margin: f32,
    /// Turns the encoder has read (for /metrics).
    pub reads: std::sync::atomic::AtomicU64,
}

/// Sentences of a turn the encoder also reads on their own.
const MAX_SENTENCES: usize = 6;

impl EncoderReader {
    /// Loads the model from `dir` with the bundled heads.
    pub fn load(dir: &Path, margin: f32) -> Result<EncoderReader, EncoderError> {
        Ok(EncoderReader::from_parts(
            std::sync::Arc::new(Encoder::load(dir)?),
            EncoderHeads::bundled()?,
            margin,
        ))
    }

    /// A reader over a loaded model and heads.
    pub fn from_parts(
        encoder: std::sync::Arc<Encoder>,
        heads: EncoderHeads,
        margin: f32,
    ) -> EncoderReader {
        EncoderReader {
            encoder,
            heads,
            margin,
            reads: Default::default(),
        }
    }

    /// Blends the encoder's reading into `scores` for the labels the subword
    /// heads are unsure about. Returns whether the encoder was asked.
    pub fn refine(
        &self,
        speaker: Speaker,
        text: &str,
        ctx: TurnContext,
        scores: &mut crate::monitor::heads::TurnScores,
    ) -> Result<bool, EncoderError> {
        let unsure = scores.unsure(self.margin);
        if unsure.is_empty() || !text.chars().any(char::is_alphanumeric) {
            return Ok(false);
        }
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut parts: Vec<&str> = vec![text];
        let sentences: Vec<&str> = text
            .split_inclusive(['.', '!', '?', ';', '\n'])
            .map(str::trim)
            .filter(|s| s.chars().any(char::is_alphanumeric))
            .collect();
        if sentences.len() > 1 {
            // The last sentences first: a request usually closes a long turn.
            parts.extend(sentences.iter().rev().take(MAX_SENTENCES));
        }
        let embs = self.encoder.embed_batch(&parts)?;
        let mut best: Vec<(Label, f32)> = Vec::new();
        for emb in &embs {
            for (label, p) in self.heads.score(speaker, emb, ctx) {
                match best.iter_mut().find(|(l, _)| *l == label) {
                    Some(e) => e.1 = e.1.max(p),
                    None => best.push((label, p)),
                }
            }
        }
        let w = self.heads.blend;
        for label in unsure {
            if let Some((_, p)) = best.iter().find(|(l, _)| *l == label) {
                let s = scores.score(label);
                scores.set(label, (1.0 - w) * s + w * p);
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_encoder_heads_round_trip_through_their_file_format() {
        let heads = EncoderHeads::bundled().expect("bundled encoder heads load");
        assert!(!heads.is_empty());
        assert!(heads.heads.iter().all(|h| h.weights.len() == DIM));
        assert_eq!(
            EncoderHeads::from_bytes(&heads.to_bytes()).ok(),
            Some(heads)
        );
    }

    #[test]
    fn broken_encoder_heads_files_are_refused_with_a_reason() {
        let good = EncoderHeads::bundled().expect("bundled").to_bytes();
        for (bytes, why) in [
            (b"not a heads file".to_vec(), "not an encoder heads file"),
            (good[..good.len() - 3].to_vec(), "truncated"),
            (good[..good.len() - 4].to_vec(), "truncated"),
        ] {
            match EncoderHeads::from_bytes(&bytes) {
                Err(EncoderError::Heads(reason)) => assert_eq!(reason, why),
                other => panic!("expected {why:?}, got {other:?}"),
            }
        }
        let mut nan = good.clone();
        let at = MAGIC.len() + 4 * 8;
        nan[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(EncoderHeads::from_bytes(&nan).is_err());
    }

    #[cfg(not(feature = "encoder"))]
    #[test]
    fn a_build_without_the_encoder_says_so_when_asked_for_one() {
        let err = Encoder::load(&Encoder::default_dir()).expect_err("no encoder in this build");
        assert!(matches!(err, EncoderError::NotBuilt), "{err}");
        let config = crate::monitor::PolicyConfig {
            encoder: String::new(),
            ..Default::default()
        };
        let c = crate::monitor::TurnClassifier::from_config(&config);
        assert!(
            c.describe()
                .contains("no sentence encoder (this build has no sentence encoder"),
            "{}",
            c.describe()
        );
        assert_eq!(c.mode(), "classifier");
    }

    #[cfg(feature = "encoder")]
    fn model() -> Encoder {
        let dir = Encoder::default_dir();
        Encoder::load(&dir).unwrap_or_else(|e| panic!("{e}: run scripts/fetch-encoder.sh"))
    }

    #[cfg(feature = "encoder")]
    #[test]
    fn paraphrases_of_a_request_for_a_person_land_closer_than_unrelated_turns() {
        let m = model();
        let cos = |a: &str, b: &str| {
            let (x, y) = (m.embed(a).expect("embed"), m.embed(b).expect("embed"));
            x.iter().zip(&y).map(|(p, q)| p * q).sum::<f32>()
        };
        let ask = "Can I talk to a real person please?";
        assert!(
            cos(ask, "I want to speak to someone")
                > cos(ask, "what time do you open tomorrow") + 0.2
        );
    }

    #[cfg(feature = "encoder")]
    #[test]
    fn hostile_turns_are_embedded_without_panicking() {
        let m = model();
        let huge = "word ".repeat(20_000);
        for text in [
            "",
            "😡😡😡",
            "\u{0}\u{7}\u{1b}[2J",
            "日本語のテキスト",
            huge.as_str(),
        ] {
            let e = m.embed(text).expect("embedded");
            assert_eq!(e.len(), DIM);
            assert!(e.iter().all(|x| x.is_finite()));
        }
    }
}
