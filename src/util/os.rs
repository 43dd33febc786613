//! What warmline asks of the operating system for itself: the open-file limit
//! (raised from the soft to the hard maximum at start: a gateway's connections,
//! RTP sockets and database all need file descriptors, and the common soft
//! default of 1024 is far below what it can carry; read so the HTTP server can
//! keep headroom under it), and a lower CPU priority for work that must never
//! take the CPU from calls (the whisper worker processes), and the fork/wait
//! the whisper worker uses to give every render a fresh copy of a prepared
//! engine.
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

/// One side of a [`fork`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// This is the new process.
    Child,
    /// This is the parent; the child has this pid.
    Parent(i32),
}

/// Forks this process. Only for a process that has one thread (the whisper
/// worker's parent never starts a runtime): the child is a copy of that one
/// thread, with the memory it had, and nothing else.
pub fn fork() -> std::io::Result<Forked> {
    // SAFETY: no arguments. The caller is single-threaded, so no lock can be
    // held by a thread that does not exist in the child.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// In a forked child: be killed when the parent dies, and end at once if it
/// already has (a render must not outlive the worker that a timed-out
/// gateway killed).
pub fn die_with_parent(parent: i32) {
    // SAFETY: plain integer arguments; a failure leaves the child as it was.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    // SAFETY: no arguments.
    if unsafe { libc::getppid() } != parent {
        exit_now(4);
    }
}

/// This process's id.
pub fn pid() -> i32 {
    std::process::id() as i32
}

/// Waits for the child `pid` to end; `true` when it exited with status 0.
pub fn wait_succeeded(pid: i32) -> std::io::Result<bool> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: `status` is a valid, writable int for the call.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Ok(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Ends this process with `code` at once, without exit handlers or
/// destructors (a forked child must not tear down what its parent owns).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: plain integer argument; the call does not return.
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_forked_child_whose_parent_is_gone_ends_at_once_and_its_exit_is_seen() {
        // Only async-signal-safe calls happen in the children (prctl, getppid, _exit).
        let me = super::pid();
        for (parent, succeeded) in [(me, true), (me + 1_000_000, false)] {
            match super::fork().expect("fork") {
                super::Forked::Child => {
                    super::die_with_parent(parent);
                    super::exit_now(0)
                }
                super::Forked::Parent(child) => {
                    assert_eq!(super::wait_succeeded(child).expect("wait"), succeeded);
                }
            }
        }
    }

    #[test]
    fn the_limit_can_be_read_and_is_at_least_what_a_shell_gives() {
        let limit = super::raise_to_hard().expect("getrlimit works");
        assert!(limit >= 256, "{limit}");
    }
}
