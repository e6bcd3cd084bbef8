//! The open-file limit: every connection is a descriptor, and the usual soft limit (1024) is far
//! below what a thread-per-connection server can hold.

use std::io;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, as Go's runtime does at start-up.
/// Returns the soft limit before and after.
pub fn raise() -> io::Result<(u64, u64)> {
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
