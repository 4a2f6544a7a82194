//! The local time zone's offset, as C's `localtime` reads it.

/// How far local time is ahead of UTC at `unix_secs`, in seconds, by the
/// rules C's `localtime` follows (the `TZ` variable, else `/etc/localtime`);
/// 0 where they cannot be read. `localtime_r` reads the environment: sound
/// in ssed's binary, which never changes its environment, but not a
/// function to export to code that may (`std::env::set_var`).
#[allow(unsafe_code)]
pub(crate) fn local_offset(unix_secs: i64) -> i64 {
    let t = unix_secs as libc::time_t;
    // SAFETY: `tm` is plain integers and one pointer; all zeroes is valid.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: localtime_r reads `t` and writes only `tm`; it is thread-safe.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return 0;
    }
    #[allow(clippy::unnecessary_cast)] // c_long is not i64 on every target
    {
        tm.tm_gmtoff as i64
    }
}
