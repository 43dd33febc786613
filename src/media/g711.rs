//! ITU-T G.711 μ-law and A-law companding (the classic reference algorithm).
//!
//! μ-law is the North American/Japanese telephony codec and the format of Twilio
//! Media Streams (`audio/x-mulaw`, 8 kHz); A-law is the European one.

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32635;

/// The μ-law code of digital silence (a positive zero).
pub const ULAW_SILENCE: u8 = 0xFF;
/// The A-law code of digital silence (the smallest positive step).
pub const ALAW_SILENCE: u8 = 0xD5;

/// Encodes one linear 16-bit sample to μ-law.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let mut pcm = i32::from(sample);
    let sign = if pcm < 0 {
        pcm = -pcm;
        0x80
    } else {
        0
    };
    pcm = pcm.min(ULAW_CLIP) + ULAW_BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && pcm & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (pcm >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// Decodes one μ-law code to a linear 16-bit sample.
pub fn ulaw_to_linear(code: u8) -> i16 {
    let code = !code;
    let exponent = i32::from((code >> 4) & 0x07);
    let mantissa = i32::from(code & 0x0F);
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    (if code & 0x80 != 0 {
        -magnitude
    } else {
        magnitude
    }) as i16
}

const ALAW_SEGMENT_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];

/// Encodes one linear 16-bit sample to A-law.
pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut pcm = i32::from(sample) >> 3;
    let mask: u8 = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    let Some(segment) = ALAW_SEGMENT_END.iter().position(|&end| pcm <= end) else {
        return 0x7F ^ mask;
    };
    let shift = if segment < 2 { 1 } else { segment };
    let code = ((segment as i32) << 4) | ((pcm >> shift) & 0x0F);
    (code as u8) ^ mask
}

/// Decodes one A-law code to a linear 16-bit sample.
pub fn alaw_to_linear(code: u8) -> i16 {
    let code = code ^ 0x55;
    let mut magnitude = i32::from(code & 0x0F) << 4;
    let segment = (code & 0x70) >> 4;
    match segment {
        0 => magnitude += 8,
        1 => magnitude += 0x108,
        _ => {
            magnitude += 0x108;
            magnitude <<= segment - 1;
        }
    }
    (if code & 0x80 != 0 {
        magnitude
    } else {
        -magnitude
    }) as i16
}

/// Decodes a μ-law payload into `out` (cleared first).
pub fn decode_ulaw(payload: &[u8], out: &mut Vec<i16>) {
    out.clear();
    out.extend(payload.iter().map(|&b| ulaw_to_linear(b)));
}

/// Encodes samples as μ-law into `out` (cleared first).
pub fn encode_ulaw(samples: &[i16], out: &mut Vec<u8>) {
    out.clear();
    out.extend(samples.iter().map(|&s| linear_to_ulaw(s)));
}

/// Two μ-law frames summed (saturating); the longer one's tail is kept as is,
/// and a sample over silence keeps its code.
pub fn mix_ulaw(a: &[u8], b: &[u8]) -> Vec<u8> {
    let (long, short) = if a.len() >= b.len() { (a, b) } else { (b, a) };
    long.iter()
        .enumerate()
        .map(|(i, &x)| match short.get(i) {
            // Silence on either side keeps the other's code exactly.
            Some(&y) if ulaw_to_linear(x) == 0 => y,
            Some(&y) if ulaw_to_linear(y) == 0 => x,
            Some(&y) => linear_to_ulaw(ulaw_to_linear(x).saturating_add(ulaw_to_linear(y))),
            None => x,
        })
        .collect()
}

/// Decodes an A-law payload into `out` (cleared first).
pub fn decode_alaw(payload: &[u8], out: &mut Vec<i16>) {
    out.clear();
    out.extend(payload.iter().map(|&b| alaw_to_linear(b)));
}

/// Encodes samples as A-law into `out` (cleared first).
pub fn encode_alaw(samples: &[i16], out: &mut Vec<u8>) {
    out.clear();
    out.extend(samples.iter().map(|&s| linear_to_alaw(s)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_matches_the_g711_table_end_points() {
        // G.711 Table 2a: code 0x80 (after inversion 0x7F) is the largest positive value.
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0xFE), 8);
        assert_eq!(ulaw_to_linear(0xEF), 132);
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
    }

    #[test]
    fn alaw_matches_the_g711_table_end_points() {
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
    }

    #[test]
    fn every_code_survives_a_decode_encode_round_trip() {
        for code in 0u8..=255 {
            if code == 0x7F {
                continue; // negative zero re-encodes as positive zero
            }
            assert_eq!(
                linear_to_ulaw(ulaw_to_linear(code)),
                code,
                "μ-law {code:#04x}"
            );
            assert_eq!(
                linear_to_alaw(alaw_to_linear(code)),
                code,
                "A-law {code:#04x}"
            );
        }
    }

    #[test]
    fn companding_is_monotonic_and_error_is_bounded() {
        let mut last_u = i16::MIN;
        let mut last_a = i16::MIN;
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let u = ulaw_to_linear(linear_to_ulaw(s));
            let a = alaw_to_linear(linear_to_alaw(s));
            assert!(u >= last_u && a >= last_a, "not monotonic at {s}");
            last_u = u;
            last_a = a;
            // Quantisation error stays within half a step of the largest segment (plus clipping).
            let tol = 1100;
            assert!(
                (i32::from(u) - i32::from(s)).abs() <= tol,
                "μ-law error at {s}"
            );
            assert!(
                (i32::from(a) - i32::from(s)).abs() <= tol,
                "A-law error at {s}"
            );
        }
    }
}
