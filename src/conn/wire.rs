//! Where a stream's bytes go: its socket, written in pieces that need not
//! be copied together first (vectored writes).

use super::Peer;
use crate::sync::lock;
use std::io::{self, IoSlice, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A stream's connection, as its writer sees it: the only way a writer
/// reaches a socket. Its own thread writes and waits; a publisher writes
/// only what fits at once.
pub trait Wire: Send + Sync {
    /// Writes all of `bufs`, in order, waiting for room up to the write
    /// timeout.
    fn write_all(&self, bufs: &[IoSlice<'_>]) -> io::Result<()>;
    /// Writes what fits now, without waiting: possibly fewer bytes than
    /// asked, or an error of kind `WouldBlock` when nothing fits.
    fn write_now(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// The socket's descriptor, for a writer that waits on other things
    /// too (a mux) to watch for the client's hang-up; valid while the
    /// writer runs on the connection's thread.
    fn hang_up_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
}

/// A stream's socket: its thread's writes wait up to the write timeout, a
/// publisher's do not wait at all. What went out is counted, and how a
/// write failed is kept, so that the connection is closed (reset, if the
/// client stopped reading) when the stream ends.
pub(super) struct SocketWire {
    pub(super) peer: Arc<Peer>,
    bytes: AtomicU64,
    failed: Mutex<Option<io::ErrorKind>>,
}

impl SocketWire {
    pub(super) fn new(peer: Arc<Peer>) -> SocketWire {
        SocketWire {
            peer,
            bytes: AtomicU64::new(0),
            failed: Mutex::new(None),
        }
    }

    /// Bytes written so far.
    pub(super) fn written(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// How a write failed, if one did.
    pub(super) fn failure(&self) -> Option<io::ErrorKind> {
        *lock(&self.failed)
    }

    fn count(&self, written: io::Result<usize>) -> io::Result<usize> {
        match &written {
            Ok(n) => {
                self.bytes.fetch_add(*n as u64, Ordering::Relaxed);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                lock(&self.failed).get_or_insert(e.kind());
            }
        }
        written
    }
}

impl Wire for SocketWire {
    fn hang_up_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        Some(self.peer.sock.as_raw_fd())
    }

    fn write_all(&self, bufs: &[IoSlice<'_>]) -> io::Result<()> {
        let mut owned: Vec<IoSlice<'_>> = bufs.to_vec();
        let mut left: &mut [IoSlice<'_>] = &mut owned;
        IoSlice::advance_slices(&mut left, 0);
        while !left.is_empty() {
            match (&self.peer.sock).write_vectored(left) {
                Ok(0) => {
                    let e = io::Error::from(io::ErrorKind::WriteZero);
                    lock(&self.failed).get_or_insert(e.kind());
                    return Err(e);
                }
                Ok(n) => {
                    self.bytes.fetch_add(n as u64, Ordering::Relaxed);
                    IoSlice::advance_slices(&mut left, n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Here a timeout (WouldBlock) is a client that stopped
                    // reading.
                    lock(&self.failed).get_or_insert(e.kind());
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn write_now(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let sock = socket2::SockRef::from(&self.peer.sock);
        self.count(sock.send_vectored_with_flags(bufs, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL))
    }
}

/// A read or write that ran out of time (a socket's timeout, or nothing
/// to take without waiting).
pub(super) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
