//! Small helpers every layer may use: no I/O beyond the OS random source.

pub(crate) mod conn_table;
pub mod os;
pub mod pii;
mod rate_limit;
mod sign_in;
pub mod signature;

pub use rate_limit::RateLimiter;
pub use sign_in::SignInGuard;

/// A random value from the operating system (tags, branches, SSRCs, RTP ports,
/// call ids): unguessable, as RFC 3261 §19.3 and RFC 3550 §8 ask. Falls back to
/// std's per-process random hash keys over the clock if the OS source fails.
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_ok() {
        return u64::from_le_bytes(bytes);
    }
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

/// `url` without its password, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..])
        }
        _ => url.to_string(),
    }
}

/// Constant-time comparison of two byte strings.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Seconds since the Unix epoch (0 for a clock set before 1970).
pub fn unix_seconds(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact_url("postgres://warmline:s3cret@db:5432/warmline"),
            "postgres://warmline:***@db:5432/warmline"
        );
        assert_eq!(redact_url("host=/run/postgresql"), "host=/run/postgresql");
    }
}
