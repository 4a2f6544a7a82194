//! `--tail` files: followed as `tail -F` does, opened without blocking,
//! regular files only, no symlink or other owner at rotation.

use super::{Kind, Shared, Source, CHUNKS_PER_LOOK, READ_CHUNK};
use crate::lines::Lines;
use crate::log;
use crate::sse::Event;
use crate::sync::lock;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Refuses at start a `--tail` path that exists and is not something to
/// follow: a directory, a FIFO, a device, a socket, or (without
/// `--tail-symlinks`) a symlink. One that does not exist yet is waited for.
pub(super) fn check_tail_at_start(path: &Path, symlinks: bool) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() && !symlinks => Err(format!(
            "{} is a symlink; name the file itself, or allow symlinks with --tail-symlinks",
            path.display()
        )),
        Ok(meta) => {
            let meta = if meta.file_type().is_symlink() {
                match std::fs::metadata(path) {
                    Ok(target) => target,
                    // A dangling symlink: waited for, as a missing file.
                    Err(_) => return Ok(()),
                }
            } else {
                meta
            };
            match not_regular(&meta) {
                Some(what) => Err(format!(
                    "{} is {what}; --tail follows regular files only",
                    path.display()
                )),
                None => Ok(()),
            }
        }
        Err(_) => Ok(()),
    }
}

/// What a file is when it is not a regular file: `a directory`.
fn not_regular(meta: &Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    Some(if t.is_file() {
        return None;
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    })
}

/// Why the file at a `--tail` path is not followed.
#[derive(Debug, PartialEq, Eq)]
enum Refused {
    /// Nothing there (or a dangling symlink): said once, then waited for.
    Missing(String),
    /// Something there that must not be read: said once, then waited out.
    Unsafe(String),
}

/// Opens the file at `path` to follow it: never blocks (a FIFO or a device
/// opens at once with `O_NONBLOCK`, then is refused), never follows a
/// symlink unless `symlinks`, and refuses a file not owned by `owner` (the
/// owner of the file it replaces), so that whoever can write the log's
/// directory cannot make ssed publish another file.
fn open_followed(
    path: &Path,
    symlinks: bool,
    owner: Option<u32>,
) -> Result<(File, Metadata), Refused> {
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY;
    if !symlinks {
        flags |= libc::O_NOFOLLOW;
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) if !symlinks => {
                Refused::Unsafe("is now a symlink; not followed (--tail-symlinks allows it)".into())
            }
            _ if e.kind() == io::ErrorKind::NotFound => Refused::Missing(e.to_string()),
            _ => Refused::Unsafe(e.to_string()),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| Refused::Unsafe(e.to_string()))?;
    if let Some(what) = not_regular(&meta) {
        return Err(Refused::Unsafe(format!(
            "is now {what}; --tail follows regular files only"
        )));
    }
    if let Some(uid) = owner.filter(|&uid| uid != meta.uid()) {
        return Err(Refused::Unsafe(format!(
            "is now owned by uid {}, not uid {uid} as the file it replaces; not followed",
            meta.uid()
        )));
    }
    Ok((file, meta))
}

/// Follows a `--tail` file as `tail -F` does.
pub(super) fn follow(shared: &Shared, source: &Source, there_at_start: bool) {
    let Kind::File(path) = &source.spec.kind else {
        return;
    };
    let topic = source.spec.topic.as_str();
    let poll = shared.settings.tail_poll;
    let symlinks = shared.settings.tail_symlinks;
    let mut lines = Lines::new(shared.settings.max_line);
    let mut emit = |line: String| shared.publish(topic, Event::message(line));
    // Only a file there from the start is read from its end; one that
    // appears, or replaces it, is read whole.
    let mut from_end = there_at_start;
    let mut open: Option<(File, u64, u64)> = None;
    // The owner of the first file followed: a file that replaces it must
    // have the same.
    let mut owner: Option<u32> = None;
    // What was last said about the path, so that it is said once.
    let mut said: Option<Refused> = None;
    let mut buf = vec![0u8; READ_CHUNK];
    while !shared.stopping() {
        let Some((file, inode, pos)) = open.as_mut() else {
            match open_followed(path, symlinks, owner) {
                Ok((mut f, meta)) => {
                    let start = if from_end { meta.len() } else { 0 };
                    if f.seek(SeekFrom::Start(start)).is_ok() {
                        owner.get_or_insert(meta.uid());
                        open = Some((f, meta.ino(), start));
                        lock(&source.state).running = true;
                        said = None;
                    }
                }
                Err(refused) => {
                    if said.as_ref() != Some(&refused) {
                        let why = match &refused {
                            Refused::Missing(e) => format!("{e}; waiting for it"),
                            Refused::Unsafe(e) => format!("{} {e}", path.display()),
                        };
                        log::line(&format!("{}: {why}", source.spec.flag()));
                        said = Some(refused);
                    }
                    source.bell.wait(poll);
                }
            }
            from_end = false;
            continue;
        };
        let mut read_any = false;
        // Whether the read came to the file's end (else it stopped to look
        // around, and more is there).
        let mut at_end = false;
        for _ in 0..CHUNKS_PER_LOOK {
            if shared.stopping() {
                break;
            }
            match file.read(&mut buf) {
                Ok(0) => {
                    at_end = true;
                    break;
                }
                Ok(n) => {
                    *pos += n as u64;
                    read_any = true;
                    lines.feed(&buf[..n], &mut emit);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // EAGAIN (a file that would block) or a failing disk: look
                // again after a poll period.
                Err(_) => {
                    at_end = true;
                    break;
                }
            }
        }
        let now = if symlinks {
            std::fs::metadata(path)
        } else {
            std::fs::symlink_metadata(path)
        };
        let next = match now {
            // Renamed away and created anew (or a symlink put in its
            // place): what the old one held is read to its end; then the
            // new one from its start, if it may be.
            Ok(meta) if meta.ino() != *inode && at_end => Next::Reopen,
            Ok(meta) if meta.ino() == *inode && meta.len() < *pos => {
                if file.seek(SeekFrom::Start(0)).is_ok() {
                    *pos = 0;
                }
                Next::Truncated
            }
            // Removed: what it held is read, then it is waited for.
            Err(_) if at_end => Next::Gone,
            _ if read_any => Next::Read,
            _ => Next::Wait,
        };
        match next {
            Next::Read => {}
            Next::Wait => {
                source.bell.wait(poll);
            }
            Next::Reopen => {
                lines.finish(&mut emit);
                open = None;
                lock(&source.state).running = false;
            }
            Next::Truncated => {
                lines.finish(&mut emit);
                shared.publish(topic, Event::named("truncated", path.display().to_string()));
            }
            Next::Gone => {
                lines.finish(&mut emit);
                open = None;
                lock(&source.state).running = false;
            }
        }
    }
}

/// What a followed file needs after a read.
enum Next {
    /// More may be there: read again.
    Read,
    /// Nothing new: wait a poll period.
    Wait,
    /// Another file has its name.
    Reopen,
    /// It was cut short: read it from the start.
    Truncated,
    /// It is gone.
    Gone,
}
