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

/// Why a signed context URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignedUrlError {
    /// The signature does not match the call and expiry (tampered or another key).
    #[error("bad signature")]
    BadSignature,
    /// The URL's time is over.
    #[error("expired")]
    Expired,
}

/// Signs and checks the expiring URLs a desk fetches a call's handoff context
/// from (`X-Warmline-Context-Url`): HMAC-SHA256 over "<call id>\n<expiry>", so
/// the URL carries no API token and is good for one call until its expiry.
pub struct UrlSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner(..)")
    }
}

impl UrlSigner {
    /// A signer with `secret`, or with a random key when it is empty (then
    /// URLs stop working when the process stops, and other nodes cannot check them).
    pub fn new(secret: &str) -> UrlSigner {
        let key = if secret.is_empty() {
            let mut k = vec![0u8; 32];
            for chunk in k.chunks_mut(8) {
                chunk.copy_from_slice(&crate::util::random_u64().to_le_bytes());
            }
            k
        } else {
            secret.as_bytes().to_vec()
        };
        UrlSigner { key }
    }

    /// The hex signature of `call_id` until `expires` (Unix seconds).
    pub fn sign(&self, call_id: &str, expires: u64) -> String {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => return String::new(),
        };
        mac.update(call_id.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The token a browser caller's page shows to read its own call's status
    /// (`GET /v1/webrtc/calls/{id}`): HMAC-SHA256 over "caller-status\n<call id>",
    /// so it is good for that call only and can never pass as a context URL's
    /// signature (whose message has no such prefix and ends in a number).
    pub fn caller_token(&self, call_id: &str) -> String {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => return String::new(),
        };
        mac.update(b"caller-status\n");
        mac.update(call_id.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `token` is [`UrlSigner::caller_token`] of `call_id` (constant time).
    pub fn caller_token_matches(&self, call_id: &str, token: &str) -> bool {
        let expected = self.caller_token(call_id);
        !expected.is_empty() && crate::util::constant_time_eq(expected.as_bytes(), token.as_bytes())
    }

    /// Checks a URL's signature and expiry at `now` (Unix seconds).
    pub fn verify(
        &self,
        call_id: &str,
        expires: u64,
        signature: &str,
        now: u64,
    ) -> Result<(), SignedUrlError> {
        let expected = self.sign(call_id, expires);
        if !crate::util::constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
            return Err(SignedUrlError::BadSignature);
        }
        if now > expires {
            return Err(SignedUrlError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn a_caller_status_token_opens_only_its_own_call() {
        let s = UrlSigner::new("k");
        let token = s.caller_token("call-1");
        assert!(s.caller_token_matches("call-1", &token));
        assert!(!s.caller_token_matches("call-2", &token));
        assert!(!s.caller_token_matches("call-1", ""));
        assert!(!UrlSigner::new("other").caller_token_matches("call-1", &token));
        // Never usable as a context URL's signature, nor the other way round.
        assert!(s.verify("call-1", 0, &token, 0).is_err());
        assert!(!s.caller_token_matches("call-1", &s.sign("call-1", 0)));
    }

    #[test]
    fn a_context_url_is_good_for_its_call_until_it_expires() {
        let s = UrlSigner::new("k");
        let sig = s.sign("call-1", 1000);
        assert_eq!(s.verify("call-1", 1000, &sig, 999), Ok(()));
        assert_eq!(
            s.verify("call-1", 1000, &sig, 1001),
            Err(SignedUrlError::Expired)
        );
        assert_eq!(
            s.verify("call-2", 1000, &sig, 999),
            Err(SignedUrlError::BadSignature)
        );
        assert_eq!(
            s.verify("call-1", 2000, &sig, 999),
            Err(SignedUrlError::BadSignature)
        );
        assert_eq!(
            UrlSigner::new("other").verify("call-1", 1000, &sig, 999),
            Err(SignedUrlError::BadSignature)
        );
        // Two processes without a configured secret do not share a key.
        assert_ne!(
            UrlSigner::new("").sign("c", 1),
            UrlSigner::new("").sign("c", 1)
        );
    }
}
