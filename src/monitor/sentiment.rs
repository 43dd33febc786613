//! Caller sentiment per turn (VADER compound score in [-1, 1]) and the call's arc.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use vader_sentimental::SentimentIntensityAnalyzer;

/// Longest text scored; longer turns are scored on their first part.
pub const MAX_SCORED_CHARS: usize = 2000;

/// VADER's conventional label bands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SentimentLabel {
    /// compound ≤ −0.05
    Negative,
    /// between
    Neutral,
    /// compound ≥ 0.05
    Positive,
}

impl SentimentLabel {
    /// The label of a compound score.
    pub fn of(score: f32) -> Self {
        if score <= -0.05 {
            SentimentLabel::Negative
        } else if score >= 0.05 {
            SentimentLabel::Positive
        } else {
            SentimentLabel::Neutral
        }
    }

    /// How a person would say it ("frustrated", "calm", "happy").
    pub fn spoken(score: f32) -> &'static str {
        match score {
            s if s <= -0.6 => "very upset",
            s if s <= -0.3 => "frustrated",
            s if s < -0.05 => "slightly unhappy",
            s if s < 0.3 => "calm",
            _ => "positive",
        }
    }
}

/// Scores text with the VADER lexicon and rules (negation, boosters, caps, punctuation, emoji).
pub struct SentimentScorer {
    analyzer: SentimentIntensityAnalyzer<'static>,
}

impl std::fmt::Debug for SentimentScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SentimentScorer(VADER)")
    }
}

impl Default for SentimentScorer {
    fn default() -> Self {
        SentimentScorer {
            analyzer: SentimentIntensityAnalyzer::new(),
        }
    }
}

impl SentimentScorer {
    /// Builds the VADER lexicons now. They are parsed on first use (1–4 ms,
    /// and every call waiting on the same lazy initialisation waits with it),
    /// which would otherwise land on the first scored turn of the first calls
    /// and in their escalation decision latency.
    pub fn warm_up() {
        let _ = SentimentScorer::default().score("Thanks, that is great: not bad at all!");
    }

    /// The compound score of `text` in [-1, 1]; 0 for empty text. Never panics:
    /// a fault inside the lexicon code scores as neutral and is logged.
    pub fn score(&self, text: &str) -> f32 {
        let text: String = text.chars().take(MAX_SCORED_CHARS).collect();
        if text.trim().is_empty() {
            return 0.0;
        }
        let analyzer = &self.analyzer;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            analyzer.polarity_scores(&text).compound
        })) {
            Ok(c) if c.is_finite() => c.clamp(-1.0, 1.0) as f32,
            _ => {
                tracing::warn!(
                    chars = text.len(),
                    "sentiment scoring failed; treated as neutral"
                );
                0.0
            }
        }
    }
}

/// One point of the sentiment arc.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ArcPoint {
    /// Index of the turn in the transcript.
    pub turn_index: usize,
    /// Time since the call started.
    pub at: Duration,
    /// Compound score.
    pub score: f32,
    /// Band.
    pub label: SentimentLabel,
}

/// The caller's sentiment over the call.
#[derive(Debug, Clone, Default)]
pub struct SentimentArc {
    points: Vec<ArcPoint>,
}

impl SentimentArc {
    /// Adds a point.
    pub fn push(&mut self, turn_index: usize, at: Duration, score: f32) {
        self.points.push(ArcPoint {
            turn_index,
            at,
            score,
            label: SentimentLabel::of(score),
        });
    }

    /// All points.
    pub fn points(&self) -> &[ArcPoint] {
        &self.points
    }

    /// The latest score.
    pub fn latest(&self) -> Option<f32> {
        self.points.last().map(|p| p.score)
    }

    /// Mean of the last `n` scores, if there are at least `n`.
    pub fn trend(&self, n: usize) -> Option<f32> {
        if n == 0 || self.points.len() < n {
            return None;
        }
        let tail = &self.points[self.points.len() - n..];
        Some(tail.iter().map(|p| p.score).sum::<f32>() / n as f32)
    }

    /// The last `n` points (fewer if the arc is shorter).
    pub fn last(&self, n: usize) -> &[ArcPoint] {
        &self.points[self.points.len().saturating_sub(n)..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frustration_scores_negative_and_thanks_positive() {
        let s = SentimentScorer::default();
        assert!(
            s.score("I'm so frustrated, this is the third time I've called and nothing works.")
                < -0.4
        );
        assert!(s.score("Thank you so much, that's great!") > 0.6);
        assert!(s.score("It's order eight eight two one.").abs() < 0.1);
        assert!(s.score("I am NOT happy") < s.score("I am happy"));
        assert_eq!(s.score(""), 0.0);
        assert_eq!(SentimentLabel::of(-0.5), SentimentLabel::Negative);
    }

    #[test]
    fn odd_text_never_panics() {
        let s = SentimentScorer::default();
        for text in [
            "😡😡😡",
            "!!!",
            "但是我很生气",
            "no",
            "kind of",
            "never so",
            &"x ".repeat(10_000),
        ] {
            let v = s.score(text);
            assert!((-1.0..=1.0).contains(&v), "{text:?} → {v}");
        }
    }

    #[test]
    fn the_trend_is_the_mean_of_the_last_turns() {
        let mut arc = SentimentArc::default();
        for (i, v) in [0.2, -0.6, -0.8].into_iter().enumerate() {
            arc.push(i, Duration::from_secs(i as u64), v);
        }
        assert_eq!(arc.trend(4), None);
        assert!((arc.trend(2).unwrap() + 0.7).abs() < 1e-6);
        assert_eq!(arc.latest(), Some(-0.8));
    }
}
