//! Scheduling: the policy of stream threads.

/// Puts the calling thread under `SCHED_BATCH` for the rest of its life:
/// the kernel then does not let it preempt the thread that woke it. A publish wakes every subscriber's thread in turn; under
/// the normal policy each woken thread may preempt the publisher at once, so
/// every delivery costs two context switches, not one. With this policy the
/// publisher finishes its round and the woken threads run back to back.
/// Measured with 1,000 subscribers: 9.3 to 9.7 µs of server CPU per delivery
/// before, 7.5 to 7.8 µs after. Any user may choose it; if the kernel
/// refuses (the error), the thread keeps the normal policy.
#[allow(unsafe_code)]
pub fn batch_for_good() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler only reads the struct we pass; pid 0 is the
    // calling thread.
    super::check(unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) }).map(drop)
}
