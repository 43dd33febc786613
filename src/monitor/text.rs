//! Small text helpers shared by the monitor: words, clauses, phrase matching.

/// Lower-case words (letters, digits and apostrophes), curly quotes folded.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '’'))
        .filter(|w| !w.is_empty())
        .map(|w| w.replace('’', "'").to_lowercase())
        .collect()
}

/// Clauses: runs of words between punctuation marks and the word "but".
pub fn clauses(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for part in text.split([',', '.', ';', '!', '?', ':', '\n', '—', '-']) {
        let mut clause = Vec::new();
        for w in words(part) {
            if w == "but" {
                if !clause.is_empty() {
                    out.push(std::mem::take(&mut clause));
                }
            } else {
                clause.push(w);
            }
        }
        if !clause.is_empty() {
            out.push(clause);
        }
    }
    out
}

/// Index of the first occurrence of `phrase` (already split into words) in `words`.
pub fn find_phrase(words: &[String], phrase: &[String]) -> Option<usize> {
    if phrase.is_empty() || phrase.len() > words.len() {
        return None;
    }
    (0..=words.len() - phrase.len()).find(|&i| words[i..i + phrase.len()] == *phrase)
}

/// Words that negate what follows them in a clause.
pub fn is_negation(word: &str) -> bool {
    matches!(
        word,
        "not"
            | "no"
            | "never"
            | "don't"
            | "dont"
            | "doesn't"
            | "doesnt"
            | "won't"
            | "wont"
            | "without"
            | "didn't"
            | "didnt"
            | "isn't"
            | "cannot"
            | "nobody"
            | "neither"
            | "nor"
    )
}

/// True when a negation word appears in `clause` before index `at`.
pub fn negated_before(clause: &[String], at: usize) -> bool {
    clause[..at.min(clause.len())]
        .iter()
        .any(|w| is_negation(w))
}

const STOPWORDS: &[&str] = &[
    "a", "an", "the", "i", "i'm", "im", "me", "my", "you", "your", "it", "it's", "is", "are",
    "was", "to", "of", "and", "or", "in", "on", "for", "with", "that", "this", "can", "could",
    "would", "please", "just", "so", "do", "be", "we", "our", "us", "what", "again", "have", "has",
    "there",
];

/// Content words of a text (stopwords removed), for repetition checks.
pub fn content_words(text: &str) -> Vec<String> {
    let mut w: Vec<String> = words(text)
        .into_iter()
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
        .map(|w| crate::monitor::features::stem(&w))
        .collect();
    w.sort();
    w.dedup();
    w
}

/// Jaccard similarity of two sorted, deduplicated word lists.
pub fn jaccard(a: &[String], b: &[String]) -> f32 {
    if a.is_empty() && b.is_empty() {
        return 0.0;
    }
    let inter = a.iter().filter(|w| b.binary_search(w).is_ok()).count();
    let union = a.len() + b.len() - inter;
    inter as f32 / union as f32
}

/// Speech-to-text splits and homophones of the words a request turns on,
/// mended: "any body" → "anybody", "some one" → "someone", "trans fur" →
/// "transfer", "speak two" → "speak to", "is their any" → "is there any".
/// Word by word (case kept where nothing changed); everything else as it was.
pub fn repair_asr_splits(text: &str) -> String {
    // Mends can chain ("their any body" → "there any body" → "there anybody").
    let mut out = mend_once(text);
    for _ in 0..2 {
        let again = mend_once(&out);
        if again == out {
            break;
        }
        out = again;
    }
    out
}

fn mend_once(text: &str) -> String {
    const PAIRS: &[(&str, &str, &str)] = &[
        ("any", "body", "anybody"),
        ("some", "body", "somebody"),
        ("some", "one", "someone"),
        ("trans", "fur", "transfer"),
        ("trans", "fer", "transfer"),
        ("trans", "four", "transfer"),
        ("trance", "fur", "transfer"),
        ("speak", "two", "speak to"),
        ("speak", "too", "speak to"),
        ("talk", "two", "talk to"),
        ("talk", "too", "talk to"),
        ("their", "any", "there any"),
        ("their", "someone", "there someone"),
        ("their", "somebody", "there somebody"),
    ];
    let tokens: Vec<&str> = text.split(' ').collect();
    let bare = |t: &str| {
        t.trim_matches(|c: char| !c.is_alphanumeric())
            .to_lowercase()
    };
    let mut out: Vec<String> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let mended = tokens.get(i + 1).and_then(|next| {
            let (a, b) = (bare(tokens[i]), bare(next));
            // Only when nothing (no comma, no full stop) separates the two.
            let joined = tokens[i].ends_with(|c: char| c.is_alphanumeric());
            PAIRS
                .iter()
                .find(|(x, y, _)| joined && *x == a && *y == b)
                .map(|(_, _, to)| {
                    let tail: String = next
                        .chars()
                        .rev()
                        .take_while(|c| !c.is_alphanumeric())
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    format!("{to}{tail}")
                })
        });
        match mended {
            Some(m) => {
                out.push(m);
                i += 2;
            }
            None => {
                out.push(tokens[i].to_string());
                i += 1;
            }
        }
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clauses_split_on_punctuation_and_but() {
        let c = clauses("No, I want a human! Not a bot but a person.");
        assert_eq!(c.len(), 4);
        assert_eq!(c[3], vec!["a", "person"]);
        assert_eq!(c[1], vec!["i", "want", "a", "human"]);
        assert_eq!(words("I’m here"), vec!["i'm", "here"]);
    }

    #[test]
    fn repetition_is_measured_on_content_words() {
        let a = content_words("Where is my order 8821?");
        let b = content_words("I asked where my order 8821 is!");
        assert!(jaccard(&a, &b) >= 0.6);
        assert!(jaccard(&a, &content_words("Thanks, goodbye")) < 0.2);
    }

    #[test]
    fn speech_to_text_splits_of_request_words_are_mended_and_nothing_else_changes() {
        assert_eq!(
            repair_asr_splits("is their any body i can speak two about it?"),
            "is there anybody i can speak to about it?"
        );
        assert_eq!(
            repair_asr_splits("yeah can you trans fur me to Sales"),
            "yeah can you transfer me to Sales"
        );
        assert_eq!(repair_asr_splits("Some one, please."), "someone, please.");
        // A comma between the words keeps them apart; other text is untouched.
        assert_eq!(
            repair_asr_splits("I said some, one more"),
            "I said some, one more"
        );
        assert_eq!(
            repair_asr_splits("Any one of the plans is  fine"),
            "Any one of the plans is  fine"
        );
    }
}
