//! System limits the server adapts to: the open-file limit (every connection is a descriptor)
//! and the longest listen queue the system allows.

use std::io;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, as Go's runtime does at start-up: the
/// usual soft limit (1024) is far below what a thread-per-connection server can hold.
/// Returns the soft limit before and after.
pub fn raise_open_files() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((as_u64(before), as_u64(limit.rlim_cur)))
}

#[allow(clippy::useless_conversion)] // rlim_t is u64 on Linux but not everywhere
fn as_u64(value: libc::rlim_t) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// The longest listen queue the system grants, read as Go reads it (Linux:
/// `net.core.somaxconn`, 4096 on current kernels). A longer request is cut to it silently, so
/// this is what a default `--backlog` really gets; `None` where it cannot be read.
pub fn listen_queue_max() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}
