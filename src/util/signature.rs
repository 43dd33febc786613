//! Signed requests warmline sends (the screen-pop webhook, Realtime tool
//! calls): `x-warmline-signature: sha256=HMAC-SHA256(secret, "<timestamp>.<body>")`
//! with the timestamp in `x-warmline-timestamp`, so a receiver can check both
//! origin and freshness.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header carrying `sha256=<hex>` of HMAC-SHA256(secret, "<timestamp>.<body>").
pub const SIGNATURE_HEADER: &str = "x-warmline-signature";
/// Header carrying the Unix timestamp that was signed (replay protection).
pub const TIMESTAMP_HEADER: &str = "x-warmline-timestamp";

/// The signature of `body` sent at `timestamp`.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
