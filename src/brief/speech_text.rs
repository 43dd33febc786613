//! Text normalisation for speech: amounts and identifiers read the way a person
//! would say them ("$45" → "forty-five dollars", "8821" → "eighty-eight twenty-one").

const ONES: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [&str; 10] = [
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

/// English words for `n` (below a trillion).
pub fn number_words(n: u64) -> String {
    fn below_thousand(n: u64) -> String {
        let (h, rest) = (n / 100, n % 100);
        let mut parts = Vec::new();
        if h > 0 {
            parts.push(format!("{} hundred", ONES[h as usize]));
        }
        if rest > 0 || h == 0 {
            parts.push(if rest < 20 {
                ONES[rest as usize].to_string()
            } else if rest % 10 == 0 {
                TENS[(rest / 10) as usize].to_string()
            } else {
                format!(
                    "{}-{}",
                    TENS[(rest / 10) as usize],
                    ONES[(rest % 10) as usize]
                )
            });
        }
        parts.join(" ")
    }
    if n < 1000 {
        return below_thousand(n);
    }
    let mut parts = Vec::new();
    let mut rest = n;
    for (scale, name) in [
        (1_000_000_000, "billion"),
        (1_000_000, "million"),
        (1_000, "thousand"),
    ] {
        if rest >= scale {
            parts.push(format!("{} {name}", below_thousand(rest / scale)));
            rest %= scale;
        }
    }
    if rest > 0 {
        parts.push(below_thousand(rest));
    }
    parts.join(" ")
}

/// How an identifier of digits is read: four digits in pairs, longer ones digit by digit.
pub fn identifier_words(digits: &str) -> String {
    let d: Vec<u64> = digits
        .chars()
        .filter_map(|c| c.to_digit(10).map(u64::from))
        .collect();
    if d.len() == 4 {
        let (a, b) = (d[0] * 10 + d[1], d[2] * 10 + d[3]);
        let first = number_words(a);
        return match b {
            0 => format!("{first} hundred"),
            1..=9 => format!("{first} oh {}", ONES[b as usize]),
            _ => format!("{first} {}", number_words(b)),
        };
    }
    d.iter()
        .map(|&x| ONES[x as usize])
        .collect::<Vec<_>>()
        .join(" ")
}

fn amount_words(whole: u64, cents: Option<u64>) -> String {
    let mut out = format!(
        "{} dollar{}",
        number_words(whole),
        if whole == 1 { "" } else { "s" }
    );
    if let Some(c) = cents.filter(|&c| c > 0) {
        out.push_str(&format!(
            " and {} cent{}",
            number_words(c),
            if c == 1 { "" } else { "s" }
        ));
    }
    out
}

/// Rewrites amounts and long digit runs as words; leaves short numbers to the TTS.
pub fn spoken(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + 32);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '$' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
            let mut j = i + 1;
            let mut whole = String::new();
            while j < chars.len()
                && (chars[j].is_ascii_digit()
                    || (chars[j] == ',' && chars.get(j + 1).is_some_and(|d| d.is_ascii_digit())))
            {
                if chars[j] != ',' {
                    whole.push(chars[j]);
                }
                j += 1;
            }
            let mut cents = None;
            if chars.get(j) == Some(&'.') && chars.get(j + 1).is_some_and(|d| d.is_ascii_digit()) {
                let mut k = j + 1;
                let mut c = String::new();
                while k < chars.len() && chars[k].is_ascii_digit() && c.len() < 2 {
                    c.push(chars[k]);
                    k += 1;
                }
                if c.len() == 1 {
                    c.push('0');
                }
                cents = c.parse().ok();
                j = k;
            }
            match whole.parse::<u64>() {
                Ok(w) if w < 1_000_000_000_000 => out.push_str(&amount_words(w, cents)),
                _ => out.push_str(&whole),
            }
            i = j;
            continue;
        }
        if c.is_ascii_digit() {
            let mut j = i;
            while j < chars.len() && chars[j].is_ascii_digit() {
                j += 1;
            }
            let run: String = chars[i..j].iter().collect();
            if run.len() >= 4 {
                out.push_str(&identifier_words(&run));
            } else {
                out.push_str(&run);
            }
            i = j;
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_ids_and_amounts_are_spoken_naturally() {
        assert_eq!(number_words(45), "forty-five");
        assert_eq!(number_words(1_250), "one thousand two hundred fifty");
        assert_eq!(identifier_words("8821"), "eighty-eight twenty-one");
        assert_eq!(identifier_words("1900"), "nineteen hundred");
        assert_eq!(identifier_words("2005"), "twenty oh five");
        assert_eq!(identifier_words("104273"), "one zero four two seven three");
        assert_eq!(
            spoken("Refund of $45 on order 8821."),
            "Refund of forty-five dollars on order eighty-eight twenty-one."
        );
        assert_eq!(
            spoken("$1,200.5 due"),
            "one thousand two hundred dollars and fifty cents due"
        );
        assert_eq!(spoken("$1.01"), "one dollar and one cent");
        assert_eq!(spoken("call 3 times"), "call 3 times");
        assert_eq!(spoken("$"), "$");
        assert_eq!(spoken("$99999999999999999999"), "99999999999999999999");
        assert_eq!(spoken("北京 8821 ü"), "北京 eighty-eight twenty-one ü");
    }
}
