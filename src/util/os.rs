//! What warmline asks of the operating system for itself: the open-file limit
//! (raised from the soft to the hard maximum at start: a gateway's connections,
//! RTP sockets and database all need file descriptors, and the common soft
//! default of 1024 is far below what it can carry; read so the HTTP server can
//! keep headroom under it), and a lower CPU priority for work that must never
//! take the CPU from calls (the whisper worker processes).
#![allow(unsafe_code)]

/// Raises `RLIMIT_NOFILE`'s soft limit to its hard limit; returns the soft
/// limit in force afterwards (`None` when it cannot be read).
pub(crate) fn raise_to_hard() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit; failure leaves the limit as it was.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            tracing::debug!(
                from = limit.rlim_cur,
                to = limit.rlim_max,
                "open-file limit raised"
            );
            limit.rlim_cur = limit.rlim_max;
        }
    }
    Some(limit.rlim_cur)
}

/// Lowers this process's CPU priority by `nice` steps (the whisper worker
/// does it first, so the gateway's audio path always wins a busy CPU).
pub fn lower_priority(nice: i32) {
    // SAFETY: plain integer arguments; `0` means this process. A failure only
    // leaves the priority as it was.
    let status = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if status != 0 {
        tracing::debug!(nice, "cannot lower the process priority");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_limit_can_be_read_and_is_at_least_what_a_shell_gives() {
        let limit = super::raise_to_hard().expect("getrlimit works");
        assert!(limit >= 256, "{limit}");
    }
}
