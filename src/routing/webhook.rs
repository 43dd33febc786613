//! The screen-pop webhook: at queue join the handoff context is POSTed to a
//! configured URL (a CRM, a wallboard), signed with HMAC-SHA256 so the receiver
//! can trust it, and retried with backoff. Runs off the call task.

use std::time::Duration;

pub use crate::util::signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};

/// Where and how to deliver.
#[derive(Debug, Clone)]
pub struct Webhook {
    client: reqwest::Client,
    url: String,
    secret: String,
    attempts: u32,
}

impl Webhook {
    /// A webhook to `url` signed with `secret`, tried `attempts` times.
    pub fn new(url: &str, secret: &str, attempts: u32) -> Result<Webhook, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Webhook {
            client,
            url: url.to_string(),
            secret: secret.to_string(),
            attempts: attempts.max(1),
        })
    }

    /// Delivers `body` (JSON), retrying with backoff; returns the attempts it took.
    pub async fn deliver(&self, body: String) -> Result<u32, String> {
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            let timestamp = crate::util::unix_seconds(std::time::SystemTime::now()) as u64;
            let signature = sign(self.secret.as_bytes(), timestamp, body.as_bytes());
            let result = self
                .client
                .post(&self.url)
                .header("content-type", "application/json")
                .header(SIGNATURE_HEADER, signature)
                .header(TIMESTAMP_HEADER, timestamp.to_string())
                .body(body.clone())
                .send()
                .await;
            match result {
                Ok(r) if r.status().is_success() => return Ok(attempt),
                Ok(r) => last = format!("answered {}", r.status()),
                Err(e) => last = e.to_string(),
            }
            tracing::warn!(url = %self.url, attempt, error = %last, "screen-pop webhook failed");
            tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt - 1))).await;
        }
        Err(format!("gave up after {} attempts: {last}", self.attempts))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_signature_is_the_rfc_4231_style_hmac_of_timestamp_dot_body() {
        // HMAC-SHA256(key="key", "The quick brown fox jumps over the lazy dog") is a well-known vector.
        let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(b"key").unwrap();
        hmac::Mac::update(&mut mac, b"The quick brown fox jumps over the lazy dog");
        assert_eq!(
            hex::encode(hmac::Mac::finalize(mac).into_bytes()),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        let s = super::sign(b"secret", 1_795_600_000, b"{}");
        assert!(s.starts_with("sha256=") && s.len() == 7 + 64);
        assert_ne!(
            s,
            super::sign(b"secret", 1_795_600_001, b"{}"),
            "the timestamp is signed"
        );
    }
}
