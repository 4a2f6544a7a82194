//! Giving back the stack pages a thread no longer needs.

/// What `release_unused_stack` keeps below its own frame: more than the
/// x86-64 red zone (128 bytes) and the libc call it makes.
const STACK_MARGIN: usize = 1024;

/// Gives back to the system the pages of the calling thread's stack below
/// the caller's frame. A stream's thread touches more stack while it routes
/// its request and opens the stream than it needs for the rest of its life
/// (waiting and writing); those pages would stay resident for as long as
/// the stream lasts. Nothing lives below the stack pointer, and a page
/// touched again later is simply zero-filled by the kernel.
///
/// It rests on the frame layout of x86-64 and aarch64 (stacks grow down;
/// the red zone is at most 128 bytes below the stack pointer): it is for
/// ssed's connection threads, not a function to export. An error leaves
/// the pages resident: nothing is lost.
#[allow(unsafe_code)]
#[inline(never)]
pub(crate) fn release_unused_stack() -> std::io::Result<()> {
    // SAFETY: pthread_getattr_np fills `attr` for the calling thread, which
    // pthread_attr_getstack reads and pthread_attr_destroy frees. madvise
    // is given a page-aligned range that lies inside this thread's stack and
    // below this function's frame (less a margin for the red zone), which
    // holds nothing that is still in use.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        let rc = libc::pthread_getattr_np(libc::pthread_self(), &mut attr);
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        let mut low: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let got = libc::pthread_attr_getstack(&attr, &mut low, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        if got != 0 {
            return Err(std::io::Error::from_raw_os_error(got));
        }
        let page = match libc::sysconf(libc::_SC_PAGESIZE) {
            n if n > 0 => n as usize,
            _ => return Err(std::io::Error::last_os_error()),
        };
        let here = std::ptr::addr_of!(size) as usize;
        let low = low as usize;
        // Below this frame, a margin for the red zone and for the frames of
        // the madvise call itself, which must not be released under it.
        let end = here.saturating_sub(STACK_MARGIN) & !(page - 1);
        if end > low && here < low + size {
            super::check(libc::madvise(
                low as *mut libc::c_void,
                end - low,
                libc::MADV_DONTNEED,
            ))?;
        }
        Ok(())
    }
}
