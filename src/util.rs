//! Small helpers every layer may use: no I/O beyond the OS random source.

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
