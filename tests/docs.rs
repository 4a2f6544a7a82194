//! The manual keeps its word: every shell example of README.md and docs/
//! runs as shown against a server as `make run` starts it, and every link
//! between the pages (and to a heading) leads somewhere.
//!
//! A block runs line by line in one bash, as a person pastes it: a line
//! that ends in `&` starts in the background (stopped when the block
//! ends), any other must end by itself with status 0 or still be running
//! after a few seconds (a stream; it is then stopped). The address of
//! `make run` (127.0.0.1:8000) is rewritten to the test's server, and
//! `ssed` is the binary just built. A block that cannot run here says why
//! in a comment just before it: `<!-- not run: needs root -->`.

mod common;

use common::Daemon;
use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a line that streams runs before it is stopped.
const STREAM_FOR: &str = "2";

/// The longest a whole block may take.
const BLOCK_WITHIN: Duration = Duration::from_secs(120);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every page of docs/, with their text.
fn pages() -> Vec<(PathBuf, String)> {
    let mut paths = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("a docs entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    paths.extend(docs);
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("a page");
            (p, text)
        })
        .collect()
}

/// A heading's anchor as GitHub makes it.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The lines of a page outside its code blocks.
fn prose(text: &str) -> impl Iterator<Item = &str> {
    let mut fenced = false;
    text.lines().filter(move |line| {
        if line.starts_with("```") {
            fenced = !fenced;
            return false;
        }
        !fenced
    })
}

/// The anchors of a page's headings.
fn anchors(text: &str) -> BTreeSet<String> {
    prose(text)
        .filter(|line| line.starts_with('#'))
        .map(|line| anchor(line.trim_start_matches('#')))
        .collect()
}

/// `](target)` links outside code blocks.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose(text) {
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn every_link_between_the_pages_leads_to_a_page_and_a_heading() {
    let pages = pages();
    let mut broken = Vec::new();
    for (path, text) in &pages {
        for link in links(text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (file, frag) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() {
                path.clone()
            } else {
                path.parent().unwrap().join(file)
            };
            let Ok(target_text) = std::fs::read_to_string(&target) else {
                broken.push(format!("{}: {link} (no such file)", path.display()));
                continue;
            };
            if !frag.is_empty() && !anchors(&target_text).contains(frag) {
                broken.push(format!("{}: {link} (no such heading)", path.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_is_short_and_leads_to_every_page_of_the_manual() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 150,
        "the README has {lines} lines: a newcomer reads it in five minutes"
    );
    for (path, _) in pages().iter().skip(1) {
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(
            readme.contains(&format!("](docs/{name})")),
            "the README's contents do not lead to docs/{name}"
        );
    }
}

#[test]
fn every_flag_of_the_usage_is_in_the_flags_page() {
    let out = Command::new(env!("CARGO_BIN_EXE_ssed"))
        .arg("--help")
        .output()
        .expect("ssed --help");
    let usage = String::from_utf8_lossy(&out.stdout);
    let page = std::fs::read_to_string(root().join("docs/flags.md")).unwrap();
    let flags: BTreeSet<&str> = usage
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .filter_map(|l| l.split([' ', ',', '=']).next())
        .collect();
    assert!(flags.len() > 20, "{usage}");
    let missing: Vec<_> = flags
        .iter()
        .filter(|f| !page.contains(&format!("`--{f}")))
        .collect();
    assert!(
        missing.is_empty(),
        "flags the page does not list: {missing:?}"
    );
}

/// A shell example: where it is, and its lines.
struct Example {
    at: String,
    text: String,
}

/// Every ```sh block, but those marked `<!-- not run: why -->`.
fn examples() -> (Vec<Example>, Vec<String>) {
    let mut run = Vec::new();
    let mut skipped = Vec::new();
    for (path, text) in pages() {
        let name = path.strip_prefix(root()).unwrap().display().to_string();
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            if lines[i].trim_end() == "```sh" {
                let start = i + 1;
                let mut end = start;
                while end < lines.len() && !lines[end].starts_with("```") {
                    end += 1;
                }
                let at = format!("{name}:{}", i + 1);
                let before = lines[..i].iter().rev().find(|l| !l.trim().is_empty());
                match before.and_then(|l| l.trim().strip_prefix("<!-- not run:")) {
                    Some(why) => {
                        skipped.push(format!("{at}: {}", why.trim_end_matches("-->").trim()))
                    }
                    None => run.push(Example {
                        at,
                        text: lines[start..end].join("\n"),
                    }),
                }
                i = end;
            }
            i += 1;
        }
    }
    (run, skipped)
}

/// The block as one bash script: each line checked, streams stopped.
fn script(example: &str, port: u16) -> String {
    let text = ports(example, port);
    let mut out = String::from(
        "set -u\ntrap 'kill $(jobs -p) 2>/dev/null' EXIT\ncheck() { s=$?; if [ $s -ne 0 ] && [ $s -ne 124 ]; then echo \"exit $s: $1\" >&2; exit 1; fi; }\n",
    );
    let mut logical = String::new();
    for line in text.lines() {
        if let Some(head) = line.strip_suffix('\\') {
            logical.push_str(head);
            continue;
        }
        logical.push_str(line);
        let command = strip_comment(&logical).trim().to_string();
        logical.clear();
        if command.is_empty() {
            continue;
        }
        let first = command.split_whitespace().next().unwrap_or("");
        let assignment = first.contains('=') && !first.starts_with('-');
        if ["kill", "export", "cd", "wait", "unset"].contains(&first) || assignment {
            // The shell's own: jobs, variables, the folder.
            out.push_str(&command);
            out.push('\n');
        } else if command.ends_with('&') {
            out.push_str(&command);
            out.push('\n');
            // A background command starts before the next line needs it.
            out.push_str("sleep 0.3\n");
        } else {
            let quoted = command.replace('\'', r"'\''");
            out.push_str(&format!(
                "timeout {STREAM_FOR} bash -c '{quoted}' </dev/null; check '{quoted}'\n"
            ));
        }
    }
    out
}

/// The example with `make run`'s port (8000) made the test server's, and
/// every other port it names (a second server's) a free one, the same
/// throughout the block.
fn ports(example: &str, make_run: u16) -> String {
    let mut map = std::collections::HashMap::new();
    let mut text = example.to_string();
    for host in ["127.0.0.1:", "localhost:", "0.0.0.0:", "--port "] {
        let mut out = String::new();
        let mut rest = text.as_str();
        while let Some(i) = rest.find(host) {
            let after = &rest[i + host.len()..];
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            out.push_str(&rest[..i + host.len()]);
            match after[..digits].parse::<u16>() {
                Ok(port) if digits == 4 => {
                    let new = *map.entry(port).or_insert_with(|| {
                        if port == 8000 {
                            make_run
                        } else {
                            free_port()
                        }
                    });
                    out.push_str(&new.to_string());
                }
                _ => out.push_str(&after[..digits]),
            }
            rest = &after[digits..];
        }
        out.push_str(rest);
        text = out;
    }
    text
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Kills what is left of the process group `leader` started. Never a
/// group id of 1 or less: -1 is every process there is. (Not through
/// kill(1), which reads a small negative number as a signal.)
fn kill_group(leader: u32) {
    let Ok(pgid) = libc::pid_t::try_from(leader) else {
        return;
    };
    if pgid > 1 {
        // SAFETY: kill takes plain integers.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}

/// A line without its trailing `# comment` (a `#` after a space, outside
/// quotes).
fn strip_comment(line: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\'' if !double => single = !single,
            b'"' if !single => double = !double,
            b'#' if !single && !double && (i == 0 || bytes[i - 1] == b' ') => return &line[..i],
            _ => {}
        }
    }
    line
}

#[test]
fn every_shell_example_runs_as_shown() {
    let daemon = Daemon::start(&[]);
    let port = daemon.addr.port();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_ssed"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let work = common::TempDir::new("docs-examples");
    let (examples, skipped) = examples();
    assert!(
        examples.len() >= 10,
        "only {} examples found",
        examples.len()
    );
    let mut failed = Vec::new();
    for ex in &examples {
        let script = script(&ex.text, port);
        // Its own process group: what it left behind is ended with it. Its
        // output goes to files: a pipe would wait for whatever holds it.
        let out_file = work.join("stdout");
        let err_file = work.join("stderr");
        let mut child = Command::new("bash")
            .process_group(0)
            .arg("-c")
            .arg(&script)
            .current_dir(&work.0)
            .env("PATH", &path)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_file).expect("stdout file"))
            .stderr(std::fs::File::create(&err_file).expect("stderr file"))
            .spawn()
            .expect("bash");
        let pid = child.id();
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break Some(status);
            }
            if started.elapsed() > BLOCK_WITHIN {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        kill_group(pid);
        let _ = child.wait();
        if status.is_none_or(|s| !s.success()) {
            failed.push(format!(
                "{} ({}):\n{}\n--- stderr:\n{}",
                ex.at,
                status.map_or("still running".to_string(), |s| s.to_string()),
                ex.text,
                std::fs::read_to_string(&err_file).unwrap_or_default()
            ));
        }
    }
    for s in &skipped {
        eprintln!("not run: {s}");
    }
    assert!(
        failed.is_empty(),
        "examples that fail:\n\n{}",
        failed.join("\n\n")
    );
    drop(daemon);
}
