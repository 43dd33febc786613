//! Turn text → sparse hashed features for the per-turn classifier heads
//! ([`crate::monitor::heads`]). Sans-IO and allocation-light.
//!
//! What the features are for, class by class:
//! - **typos and ASR slips**: character 3- and 4-grams of every word, and each
//!   word's consonant skeleton ("hooman" and "human" are both `hmn`, "persn" and
//!   "person" both `prsn`);
//! - **inflection**: words are stemmed ("clicking" → `click`);
//! - **negation by scope, not by window**: contractions are expanded and the
//!   few words after a negation (up to a clause boundary or a new subject) carry
//!   a `!` mark, so "isn't sorted" is negated while "…I'm getting my lawyer
//!   involved" later in the sentence is not;
//! - **conversation context**: a caller turn right after the assistant offered a
//!   person gets its words again in an `o:` namespace, so "yes please" means
//!   something there and nothing elsewhere.

/// Longest text looked at, in bytes (cut at a character boundary): the heads are
/// linear, a turn's first few hundred characters carry what it does, and the time
/// per turn stays bounded whatever a peer sends.
pub const MAX_TEXT_BYTES: usize = 600;
/// Most words looked at.
pub const MAX_WORDS: usize = 100;

/// Words after a negation that it covers, at most.
const NEGATION_REACH: usize = 3;

/// The hashed features of one turn: bucket indices (may repeat) and the weight
/// every feature carries (1/√n, so long turns do not saturate the heads).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureVec {
    /// Bucket of each feature, in `0..dim`.
    pub buckets: Vec<u32>,
    /// The value of each feature.
    pub value: f32,
}

/// Text cut to the limits above, with a flag saying whether anything was cut.
pub(crate) fn bounded(text: &str) -> (&str, bool) {
    if text.len() <= MAX_TEXT_BYTES {
        return (text, false);
    }
    let mut end = MAX_TEXT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], true)
}

/// The last [`MAX_TEXT_BYTES`] of a text too long to read whole, starting at a
/// word (what a long turn ends with: "…so I'd just like to speak to somebody").
pub(crate) fn tail(text: &str) -> &str {
    if text.len() <= MAX_TEXT_BYTES {
        return text;
    }
    let mut start = text.len() - MAX_TEXT_BYTES;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let rest = &text[start..];
    match rest.find(char::is_whitespace) {
        Some(i) if i < 40 => rest[i..].trim_start(),
        _ => rest,
    }
}

/// One normalised token: its stem, its surface form, and whether a negation covers it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) stem: String,
    pub(crate) surface: String,
    pub(crate) negated: bool,
}

fn is_negator(w: &str) -> bool {
    matches!(
        w,
        "not" | "no" | "never" | "nobody" | "nothing" | "without" | "nor" | "neither" | "none"
    )
}

/// Words that open a new scope: a negation stops before them.
fn is_scope_stop(w: &str) -> bool {
    matches!(
        w,
        "but"
            | "and"
            | "if"
            | "so"
            | "because"
            | "then"
            | "i"
            | "you"
            | "we"
            | "they"
            | "he"
            | "she"
            | "just"
            | "please"
            | "unless"
            | "or"
            | "when"
            | "until"
    )
}

/// Expands a lower-case word's contraction into one or two words.
fn expand(word: &str, out: &mut Vec<String>) {
    let w = word.trim_matches('\'');
    if w.is_empty() {
        return;
    }
    let fixed: Option<&[&str]> = match w {
        "can't" | "cant" | "cannot" => Some(&["can", "not"]),
        "won't" => Some(&["will", "not"]),
        "dont" => Some(&["do", "not"]),
        "doesnt" => Some(&["does", "not"]),
        "didnt" => Some(&["did", "not"]),
        "isnt" => Some(&["is", "not"]),
        "arent" => Some(&["are", "not"]),
        "wasnt" => Some(&["was", "not"]),
        "havent" => Some(&["have", "not"]),
        "im" | "i'm" => Some(&["i", "am"]),
        "ive" => Some(&["i", "have"]),
        _ => None,
    };
    if let Some(parts) = fixed {
        out.extend(parts.iter().map(|s| s.to_string()));
        return;
    }
    if let Some(base) = w.strip_suffix("n't") {
        out.push(base.to_string());
        out.push("not".into());
        return;
    }
    for (suffix, full) in [
        ("'ll", "will"),
        ("'re", "are"),
        ("'ve", "have"),
        ("'d", "would"),
        ("'m", "am"),
        ("'s", ""),
    ] {
        if let Some(base) = w.strip_suffix(suffix)
            && !base.is_empty()
        {
            out.push(base.to_string());
            if !full.is_empty() {
                out.push(full.to_string());
            }
            return;
        }
    }
    out.push(w.replace('\'', ""));
}

/// A light suffix-stripping stemmer: enough that "clicking", "clicked" and
/// "clicks" meet at `click`, without a dictionary.
pub(crate) fn stem(word: &str) -> String {
    let n = word.chars().count();
    if n <= 3 || !word.is_ascii() {
        return word.to_string();
    }
    for (suffix, keep_min, replace) in [
        ("ational", 3, "ate"),
        ("ations", 3, "ate"),
        ("ation", 3, "ate"),
        ("ingly", 3, ""),
        ("edly", 3, ""),
        ("ings", 3, ""),
        ("ies", 2, "y"),
        ("ing", 3, ""),
        ("ied", 2, "y"),
        ("ed", 3, ""),
        ("ly", 3, ""),
        ("es", 3, ""),
        ("s", 3, ""),
    ] {
        if let Some(base) = word.strip_suffix(suffix)
            && base.len() >= keep_min
            && !(suffix == "s" && (base.ends_with('s') || base.ends_with('u')))
        {
            let mut b = base.to_string();
            // "stopped" → "stopp" → "stop"
            let bytes = b.as_bytes();
            if replace.is_empty()
                && bytes.len() >= 2
                && bytes[bytes.len() - 1] == bytes[bytes.len() - 2]
                && !matches!(bytes[bytes.len() - 1], b'l' | b's' | b'z')
            {
                b.pop();
            }
            b.push_str(replace);
            return b;
        }
    }
    word.to_string()
}

/// The consonant skeleton of a word: first letter kept, later vowels dropped,
/// doubled letters folded ("hooman" → `hmn`, "reprisentative" → `rprsnttv`).
pub(crate) fn skeleton(word: &str) -> String {
    let mut out = String::new();
    let mut last = '\0';
    for (i, c) in word.chars().enumerate() {
        if !c.is_ascii_alphabetic() {
            continue;
        }
        if i > 0 && matches!(c, 'a' | 'e' | 'i' | 'o' | 'u' | 'y' | 'h' | 'w') {
            continue;
        }
        if c != last {
            out.push(c);
        }
        last = c;
    }
    out
}

/// Splits a turn into tokens with clause-bounded negation scope.
pub(crate) fn tokens(text: &str) -> Vec<Token> {
    let (text, _) = bounded(text);
    let mut out: Vec<Token> = Vec::new();
    for clause in text.split(['.', ',', ';', '!', '?', ':', '\n', '—', '–', '(', ')']) {
        let mut words: Vec<String> = Vec::new();
        for raw in clause.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '’')) {
            if raw.is_empty() {
                continue;
            }
            let lower = raw.replace('’', "'").to_lowercase();
            expand(&lower, &mut words);
        }
        let mut reach = 0usize;
        for w in words {
            if out.len() >= MAX_WORDS {
                return out;
            }
            let negator = is_negator(&w);
            if is_scope_stop(&w) {
                reach = 0;
            }
            let negated = reach > 0 && !negator;
            if negated {
                reach -= 1;
            }
            if negator {
                reach = NEGATION_REACH;
            }
            out.push(Token {
                stem: stem(&w),
                surface: w,
                negated,
            });
        }
    }
    out
}

/// FNV-1a over a namespace byte and the feature's text.
fn hash(namespace: u8, parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    eat(namespace);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            eat(0x1f);
        }
        for b in p.bytes() {
            eat(b);
        }
    }
    h
}

/// The context a turn is read in.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TurnContext {
    /// The assistant's last turn offered to connect the caller with a person.
    pub after_offer: bool,
}

/// The features of a turn, hashed into `dim` buckets.
pub fn featurize(text: &str, ctx: TurnContext, dim: u32) -> FeatureVec {
    let toks = tokens(text);
    let dim = dim.max(1) as u64;
    let mut buckets: Vec<u32> = Vec::with_capacity(toks.len() * 14 + 8);
    let mut push = |h: u64| buckets.push((h % dim) as u32);
    let neg = |t: &Token| if t.negated { "!" } else { "" };
    push(hash(b'B', &["bias"]));
    let len_bucket = match toks.len() {
        0 => "0",
        1 => "1",
        2 => "2",
        3 | 4 => "3-4",
        5..=8 => "5-8",
        _ => "9+",
    };
    push(hash(b'L', &[len_bucket]));
    if text.trim_end().ends_with('?') {
        push(hash(b'Q', &["?"]));
    }
    if ctx.after_offer {
        push(hash(b'O', &["after_offer"]));
        push(hash(b'O', &["len", len_bucket]));
    }
    for (i, t) in toks.iter().enumerate() {
        push(hash(b'W', &[neg(t), &t.stem]));
        if ctx.after_offer {
            push(hash(b'O', &[neg(t), &t.stem]));
        }
        let sk = skeleton(&t.surface);
        if sk.len() >= 3 {
            push(hash(b'K', &[neg(t), &sk]));
        }
        if let Some(next) = toks.get(i + 1) {
            push(hash(b'G', &[neg(t), &t.stem, neg(next), &next.stem]));
        }
        if i == 0 {
            push(hash(b'F', &[&t.stem]));
        }
        let chars: Vec<char> = std::iter::once('<')
            .chain(t.surface.chars())
            .chain(std::iter::once('>'))
            .collect();
        if chars.len() >= 5 {
            for n in [3usize, 4] {
                for w in chars.windows(n) {
                    let s: String = w.iter().collect();
                    push(hash(b'C', &[neg(t), &s]));
                }
            }
        }
    }
    let value = 1.0 / (buckets.len().max(1) as f32).sqrt();
    FeatureVec { buckets, value }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negated(text: &str) -> Vec<String> {
        tokens(text)
            .into_iter()
            .filter(|t| t.negated)
            .map(|t| t.surface)
            .collect()
    }

    #[test]
    fn negation_covers_the_words_after_it_not_the_whole_clause() {
        assert_eq!(
            negated("If this isn't sorted today I'm getting my lawyer involved"),
            vec!["sorted", "today"]
        );
        assert_eq!(
            negated("this isn't working get me a human"),
            vec!["working", "get", "me"]
        );
        assert_eq!(
            negated("I don't need a human, thanks"),
            vec!["need", "a", "human"]
        );
        assert!(negated("No, I want a human.").is_empty());
    }

    #[test]
    fn typos_and_inflections_meet_their_word() {
        assert_eq!(skeleton("hooman"), skeleton("human"));
        assert_eq!(skeleton("persn"), skeleton("person"));
        assert_eq!(skeleton("reprisentative"), skeleton("representative"));
        assert_eq!(stem("clicking"), stem("click"));
        assert_eq!(stem("clicked"), "click");
        assert_eq!(stem("stopped"), "stop");
    }

    #[test]
    fn hostile_text_is_bounded() {
        let long = "agent ".repeat(20_000);
        let f = featurize(&long, TurnContext::default(), 1 << 16);
        assert!(f.buckets.len() < 2_000, "{}", f.buckets.len());
        for text in [
            "",
            "😡😡😡",
            "\u{0}\u{7}\u{1b}[2J",
            "¿Dónde está mi pedido?",
            "日本語のテキスト",
        ] {
            let f = featurize(text, TurnContext::default(), 1 << 16);
            assert!(f.buckets.iter().all(|&b| b < 1 << 16));
            assert!(f.value.is_finite());
        }
        // A cut in the middle of a multi-byte character is moved back to its start.
        let s = "é".repeat(MAX_TEXT_BYTES);
        assert!(bounded(&s).1);
    }
}
