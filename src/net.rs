//! Kept connections, as every client of one sees them (`ssed publish`'s
//! HTTP session, the Redis pool): a connection the peer closed while it
//! sat idle fails at its next use, and the request is sent once more on a
//! new one, at once. (The Redis pool looks first, so that a command is
//! not sent into a connection already closed: one that fails after it
//! went out may have run.)

use std::io;

/// Whether `e` says the peer closed a kept connection while it was idle.
pub fn stale(e: &io::Error) -> bool {
    use io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(
        e.kind(),
        BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof
    )
}

/// Runs `attempt` with a kept connection if `kept`, and once more with a
/// new one if that one turns out `stale`; `attempt`'s argument says which
/// (true: the kept one). `attempt` must be safe to repeat: a read, or a
/// write the peer never received.
pub fn with_kept<T, E>(
    kept: bool,
    is_stale: impl Fn(&E) -> bool,
    mut attempt: impl FnMut(bool) -> Result<T, E>,
) -> Result<T, E> {
    match attempt(kept) {
        Err(e) if kept && is_stale(&e) => attempt(false),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_more_only_for_a_kept_connection_that_went_stale() {
        let closed = || io::Error::from(io::ErrorKind::ConnectionReset);
        let mut tries = Vec::new();
        let got = with_kept(true, stale, |kept| {
            tries.push(kept);
            if kept {
                Err(closed())
            } else {
                Ok(1)
            }
        });
        assert_eq!((got.unwrap(), tries), (1, vec![true, false]));
        // A new connection that fails is not tried again.
        let mut tries = 0;
        assert!(with_kept(false, stale, |_| {
            tries += 1;
            Err::<(), _>(closed())
        })
        .is_err());
        assert_eq!(tries, 1);
        // Nor a kept one that failed another way.
        let mut tries = 0;
        assert!(with_kept(true, stale, |_| {
            tries += 1;
            Err::<(), _>(io::Error::from(io::ErrorKind::TimedOut))
        })
        .is_err());
        assert_eq!(tries, 1);
    }
}
