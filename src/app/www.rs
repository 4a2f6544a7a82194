//! The demo pages: compiled into the binary, or read from `--www DIR`.
//!
//! A request path is percent-decoded and refused (as not found) when it could
//! leave the pages: `..` or `.` segments, backslashes, NUL, and, on disk, any
//! file whose canonical path is not under the canonical root (symlinks out).

use crate::http1::percent_decode;
use std::borrow::Cow;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

macro_rules! embed {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/www/", $name)) as &[u8])),*]
    };
}

/// Every file of `www/`; a test checks that none is missing.
pub const EMBEDDED: &[(&str, &[u8])] = embed!(
    "index.html",
    "clock.html",
    "monitor.html",
    "training.html",
    "ticker.html",
    "messages.html",
    "events.html",
    "hub.html",
    "logs.html",
    "style.css",
    "ssed.js",
);

/// Where pages come from.
#[derive(Debug, Clone)]
pub enum Pages {
    Embedded,
    /// A canonical directory.
    Dir(PathBuf),
}

pub struct Page {
    pub body: Cow<'static, [u8]>,
    pub content_type: &'static str,
}

impl Pages {
    /// Serves `dir` from disk; an error names the directory.
    pub fn dir(dir: &Path) -> io::Result<Pages> {
        let root = fs::canonicalize(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a directory", dir.display()),
            ));
        }
        Ok(Pages::Dir(root))
    }

    /// The page at URL path `path` (relative, still percent-encoded), if any.
    pub fn get(&self, path: &str) -> Option<Page> {
        let rel = safe_relative(path)?;
        let body = match self {
            Pages::Embedded => Cow::Borrowed(EMBEDDED.iter().find(|(name, _)| *name == rel)?.1),
            Pages::Dir(root) => {
                let found = fs::canonicalize(root.join(&rel))
                    .ok()
                    .filter(|file| file.starts_with(root) && file.is_file());
                match found {
                    Some(file) => Cow::Owned(fs::read(file).ok()?),
                    // A folder of one's own pages still has `ssed.js`
                    // (SsedSource), unless it brings its own.
                    None if rel == SHARED_SCRIPT => {
                        Cow::Borrowed(EMBEDDED.iter().find(|(name, _)| *name == rel)?.1)
                    }
                    None => return None,
                }
            }
        };
        Some(Page {
            body,
            content_type: content_type(&rel),
        })
    }
}

/// The script every page may load, with `--www` too.
const SHARED_SCRIPT: &str = "ssed.js";

/// The decoded relative file path, `index.html` for a directory, or `None`
/// if the path could step outside the pages.
fn safe_relative(path: &str) -> Option<String> {
    let decoded = percent_decode(path)?;
    if decoded.contains(['\\', '\0']) || decoded.starts_with('/') {
        return None;
    }
    let mut parts = Vec::new();
    for part in decoded.split('/') {
        match part {
            "." | ".." => return None,
            "" => {}
            part => parts.push(part),
        }
    }
    if decoded.is_empty() || decoded.ends_with('/') {
        parts.push("index.html");
    }
    Some(parts.join("/"))
}

fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map_or("", |(_, ext)| ext);
    match ext.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_www_is_embedded() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("www");
        for entry in fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(
                EMBEDDED.iter().any(|(n, _)| *n == name),
                "www/{name} is not in www::EMBEDDED"
            );
        }
    }

    #[test]
    fn refuses_paths_that_leave_the_pages() {
        let cases = [
            ("", Some("index.html")),
            ("clock.html", Some("clock.html")),
            ("sub/", Some("sub/index.html")),
            ("a//b.css", Some("a/b.css")),
            ("../etc/passwd", None),
            ("%2e%2e/etc/passwd", None),
            ("%2E%2E%2Fetc%2Fpasswd", None),
            ("a/../../x", None),
            ("./x", None),
            ("%2fetc%2fpasswd", None),
            ("..%5c..%5cwin.ini", None),
            ("a%00.html", None),
            ("%zz", None),
        ];
        for (path, expected) in cases {
            assert_eq!(safe_relative(path).as_deref(), expected, "{path}");
        }
    }

    #[test]
    fn types() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("ssed.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("x.CSS"), "text/css; charset=utf-8");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }
}
