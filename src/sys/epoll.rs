//! epoll, and an eventfd doorbell that wakes an epoll loop: what the park
//! (`conn::park`) watches thousands of sockets with; and a socket's send
//! queue.

use super::check;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An epoll instance. Closed when dropped.
pub struct Epoll {
    fd: OwnedFd,
}

/// What epoll reported for one registered descriptor.
#[derive(Clone, Copy, Debug)]
pub struct Ready {
    pub token: u64,
    /// Room to write.
    pub writable: bool,
    /// The peer hung up (FIN or reset) or the socket failed.
    pub hung_up: bool,
}

impl Epoll {
    #[allow(unsafe_code)]
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes a flag and returns a new descriptor,
        // which the OwnedFd then owns.
        let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: fd is a descriptor just opened and owned by no one else.
        Ok(Epoll {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Watches `fd` for a hang-up, and for room to write when `writable`.
    pub fn add(&self, fd: RawFd, token: u64, writable: bool) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, writable)
    }

    /// Changes whether `fd` is watched for room to write.
    pub fn modify(&self, fd: RawFd, token: u64, writable: bool) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, token, writable)
    }

    /// Watches `fd` for something to read (a doorbell).
    pub fn add_readable(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        self.raw_ctl(libc::EPOLL_CTL_ADD, fd, &mut ev)
    }

    /// Stops watching `fd`.
    pub fn remove(&self, fd: RawFd) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        self.raw_ctl(libc::EPOLL_CTL_DEL, fd, &mut ev)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64, writable: bool) -> io::Result<()> {
        let mut events = libc::EPOLLRDHUP as u32;
        if writable {
            events |= libc::EPOLLOUT as u32;
        }
        let mut ev = libc::epoll_event { events, u64: token };
        self.raw_ctl(op, fd, &mut ev)
    }

    #[allow(unsafe_code)]
    fn raw_ctl(&self, op: libc::c_int, fd: RawFd, ev: &mut libc::epoll_event) -> io::Result<()> {
        // SAFETY: epoll_ctl reads the one event we pass; the descriptors
        // are plain integers (a closed one is EBADF).
        check(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, ev) }).map(|_| ())
    }

    /// Waits at most `timeout` for events and appends them to `out`. A
    /// signal that cut the wait short is no error (nothing is appended);
    /// any other failure is returned, for the caller to decide.
    #[allow(unsafe_code)]
    pub fn wait(&self, out: &mut Vec<Ready>, timeout: std::time::Duration) -> io::Result<()> {
        const MAX: usize = 256;
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; MAX];
        let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: epoll_wait writes at most MAX events into the array.
        let n = match check(unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                events.as_mut_ptr(),
                MAX as libc::c_int,
                ms,
            )
        }) {
            Ok(n) => n as usize,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(e),
        };
        for ev in events.iter().take(n) {
            let bits = ev.events;
            out.push(Ready {
                token: ev.u64,
                writable: bits & libc::EPOLLOUT as u32 != 0,
                hung_up: bits & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0,
            });
        }
        Ok(())
    }
}

/// A doorbell another thread can ring through a descriptor (`eventfd`), so
/// that an epoll loop wakes for it.
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    #[allow(unsafe_code)]
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd returns a new descriptor, owned by the OwnedFd.
        let fd = check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: fd is a descriptor just opened and owned by no one else.
        Ok(EventFd {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Rings. A counter already at its maximum (EAGAIN) is rung anyway.
    #[allow(unsafe_code)]
    pub fn ring(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: write reads 8 bytes from a u64 on our stack.
        let n = unsafe { libc::write(self.raw(), std::ptr::addr_of!(one).cast(), 8) };
        match check(n as libc::c_int) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Takes the rings. One that never rang (EAGAIN) is not an error.
    #[allow(unsafe_code)]
    pub fn clear(&self) -> io::Result<()> {
        let mut n: u64 = 0;
        // SAFETY: read writes at most 8 bytes into a u64 on our stack.
        let got = unsafe { libc::read(self.raw(), std::ptr::addr_of_mut!(n).cast(), 8) };
        match check(got as libc::c_int) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

/// Bytes written to the socket `fd` that its peer has not yet taken (the
/// kernel's send queue, `SIOCOUTQ`); `None` if the kernel will not say.
#[allow(unsafe_code)]
pub fn unsent_bytes(fd: RawFd) -> Option<u64> {
    let mut n: libc::c_int = 0;
    // SAFETY: ioctl(SIOCOUTQ) writes one int.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) };
    check(rc).ok()?;
    u64::try_from(n).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_rung_doorbell_wakes_the_loop_once() {
        let epoll = Epoll::new().unwrap();
        let bell = EventFd::new().unwrap();
        epoll.add_readable(bell.raw(), 7).unwrap();
        let mut ready = Vec::new();
        epoll.wait(&mut ready, Duration::ZERO).unwrap();
        assert!(ready.is_empty());
        bell.ring().unwrap();
        bell.ring().unwrap();
        epoll.wait(&mut ready, Duration::from_secs(1)).unwrap();
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].token, 7);
        bell.clear().unwrap();
        bell.clear().unwrap();
        ready.clear();
        epoll.wait(&mut ready, Duration::ZERO).unwrap();
        assert!(ready.is_empty());
        assert!(epoll.remove(bell.raw()).is_ok());
        assert!(epoll.remove(bell.raw()).is_err(), "not watched any more");
    }
}
