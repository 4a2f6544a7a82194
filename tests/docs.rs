//! The manual keeps its word: every shell example of README.md and docs/
//! runs as shown against a server as `make run` starts it, prints the
//! answers its comments show, and every link between the pages (and to a
//! heading) leads somewhere.
//!
//! A block runs line by line in one bash, as a person pastes it, against
//! a server just started (so its ids and counts are those shown):
//! - a line that ends in `&` starts in the background (stopped when the
//!   block ends), and the next line waits until it is ready: it printed
//!   something (a stream's `retry:`, a server's start-up line) and the
//!   ports it serves answer (an ssed's `/healthz`, which needs its Redis);
//! - a stream (`curl -N`, `ssed listen`) runs a few seconds, then is
//!   stopped; it must not fail before;
//! - any other line must end by itself with status 0; if its comment (on
//!   the line, or the comment lines under it) begins with JSON, `{...}`,
//!   `[...]` or `403 {...}`, what it printed must be that JSON: the same
//!   keys and values, an id `RUN-N` standing for any run's `N`, a string
//!   shown ending in `...` for its beginning.
//!
//! The address of `make run` (127.0.0.1:8000) is rewritten to the test's
//! server, other ports to free ones, and `ssed` is the binary just built.
//! Variables a block sets are exported (a person's shell has them all).
//! A block that cannot run here says why in a comment just before it:
//! `<!-- not run: needs root -->`.

mod common;

use common::Daemon;
use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a line that streams runs before it is stopped.
const STREAM_FOR: &str = "2";

/// The longest a line that does not stream may take to end, and a
/// background job to get ready (seconds).
const WITHIN: u32 = 30;

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

/// A line's printed answer, as its comment shows it: checked after the
/// block has run.
struct Answer {
    /// The line as the page shows it.
    command: String,
    /// The file its standard output went to.
    out: String,
    /// The comment that shows it, from its JSON on (prose may follow).
    expect: String,
}

impl Answer {
    /// The JSON value the comment begins with.
    fn shown(&self) -> Result<serde_json::Value, String> {
        serde_json::Deserializer::from_str(&self.expect)
            .into_iter::<serde_json::Value>()
            .next()
            .unwrap_or_else(|| Err(serde::de::Error::custom("empty")))
            .map_err(|e| format!("the answer shown is not JSON ({e}): {}", self.expect))
    }
}

/// The JSON a comment shows as a line's answer: `# {...}`, `# [...]` or
/// `# 403 {...}` (the status is for the reader: curl prints the body
/// only); none for prose.
fn shown_answer(comment: &str) -> Option<&str> {
    let text = comment.trim_start_matches('#').trim();
    let text = match text.split_once(' ') {
        Some((status, rest)) if status.len() == 3 && status.bytes().all(|b| b.is_ascii_digit()) => {
            rest
        }
        _ => text,
    };
    (text.starts_with('{') || text.starts_with('[')).then_some(text)
}

/// Whether a line streams until it is stopped (then it is stopped after
/// `STREAM_FOR` seconds); any other line must end by itself.
fn streams(command: &str) -> bool {
    let curl_n = command.starts_with("curl ") && command.split_whitespace().any(|w| w == "-N");
    curl_n || command.starts_with("ssed listen ")
}

/// The ports a background server listens on, and whether it is ssed (then
/// it is ready when its /healthz says 200, which needs its Redis linked).
fn serves(command: &str) -> (Vec<String>, bool) {
    let words: Vec<&str> = command.split_whitespace().collect();
    let program = words
        .iter()
        .find(|w| !w.contains('='))
        .copied()
        .unwrap_or("");
    let mut ports = Vec::new();
    for pair in words.windows(2) {
        match pair[0] {
            "--addr" => ports.extend(pair[1].rsplit_once(':').map(|(_, p)| p.to_string())),
            "--port" => ports.push(pair[1].to_string()),
            _ => {}
        }
    }
    (ports, program == "ssed")
}

/// The block as one bash script: each line checked, streams stopped, a
/// background job waited for until it is ready (it printed something, and
/// the ports it serves answer), each line's answer kept for `Answer`.
fn script(example: &str, port: u16, within: u32) -> (String, Vec<Answer>) {
    let text = ports(example, port);
    let mut out = String::from(
        r#"set -u -a
mkdir -p .out
trap 'kill $(jobs -p) 2>/dev/null' EXIT
check() { local s=$?; if [ $s -ne 0 ] && [ $s -ne 124 ]; then echo "exit $s: $1" >&2; exit 1; fi; }
ended() { local s=$?; if [ $s -eq 124 ]; then echo "still running after WITHIN s: $1" >&2; exit 1; fi
  if [ $s -ne 0 ]; then echo "exit $s: $1" >&2; exit 1; fi; }
answers() { local p; for p in "$@"; do
  if [ "${p#h}" != "$p" ]; then [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${p#h}/healthz")" = 200 ] || return 1
  else (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || return 1; fi
done; }
ready() { local f=$1 what=$2 end=$((SECONDS + WITHIN)); shift 2
  until [ -s "$f" ] && answers "$@"; do
    if [ $SECONDS -ge $end ]; then echo "not ready in WITHIN s: $what" >&2; exit 1; fi
    sleep 0.05
  done; }
"#,
    )
    .replace("WITHIN", &within.to_string());
    let mut answers: Vec<Answer> = Vec::new();
    // A line that printed, whose answer may be the comment lines under it.
    let mut pending: Option<(usize, String, Vec<String>)> = None;
    let finish = |pending: &mut Option<(usize, String, Vec<String>)>, answers: &mut Vec<Answer>| {
        if let Some((at, command, lines)) = pending.take() {
            if let Some(first) = lines.first().and_then(|l| shown_answer(l)) {
                let rest: Vec<&str> = lines[1..]
                    .iter()
                    .map(|l| l.trim_start_matches('#').trim())
                    .collect();
                answers.push(Answer {
                    command,
                    out: format!(".out/{at}"),
                    expect: format!("{first} {}", rest.join(" ")),
                });
            }
        }
    };
    let mut logical = String::new();
    for (n, line) in text.lines().enumerate() {
        if let Some(head) = line.strip_suffix('\\') {
            logical.push_str(head);
            continue;
        }
        logical.push_str(line);
        let whole = std::mem::take(&mut logical);
        let command = strip_comment(&whole).trim().to_string();
        let comment = whole[strip_comment(&whole).len()..].trim();
        if command.is_empty() {
            // Comment lines under a line that printed: its answer.
            match (&mut pending, comment.is_empty()) {
                (Some((_, _, lines)), false) => lines.push(comment.to_string()),
                _ => finish(&mut pending, &mut answers),
            }
            continue;
        }
        finish(&mut pending, &mut answers);
        let first = command.split_whitespace().next().unwrap_or("");
        let assignment = first.contains('=') && !first.starts_with('-');
        let quoted = command.replace('\'', r"'\''");
        if let Some(job) = command.strip_suffix('&') {
            let (ports, ssed) = serves(job);
            let ports: Vec<String> = ports
                .into_iter()
                .map(|p| if ssed { format!("h{p}") } else { p })
                .collect();
            out.push_str(&format!(
                "{job} > .out/{n} &\nready .out/{n} '{quoted}' {}\n",
                ports.join(" ")
            ));
        } else if ["kill", "export", "cd", "wait", "unset"].contains(&first) || assignment {
            // The shell's own: jobs, variables, the folder.
            out.push_str(&command);
            out.push('\n');
        } else {
            if streams(&command) {
                out.push_str(&format!(
                    "timeout {STREAM_FOR} bash -c '{quoted}' </dev/null > .out/{n}; check '{quoted}'\n"
                ));
            } else {
                out.push_str(&format!(
                    "timeout {within} bash -c '{quoted}' </dev/null > .out/{n}; ended '{quoted}'\n"
                ));
            }
            // A stream's answer too: a refusal ends it with its JSON.
            match shown_answer(comment) {
                Some(expect) => answers.push(Answer {
                    command: command.clone(),
                    out: format!(".out/{n}"),
                    expect: expect.to_string(),
                }),
                None => pending = Some((n, command.clone(), Vec::new())),
            }
        }
    }
    finish(&mut pending, &mut answers);
    (out, answers)
}

/// Whether `got` is the answer `shown`: the same keys and values, where a
/// shown string ending in `...` is a beginning, and an id (`RUN-SEQ`, a
/// run of 8 hex digits) stands for any id of the same number (runs differ
/// from run to run).
fn same_answer(shown: &serde_json::Value, got: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (shown, got) {
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|w| same_answer(v, w)))
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(v, w)| same_answer(v, w))
        }
        (Value::String(a), Value::String(b)) => {
            let seq = |s: &str| {
                s.rsplit_once('-')
                    .filter(|(run, n)| {
                        run.len() == 8
                            && run.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
                            && !n.is_empty()
                            && n.bytes().all(|c| c.is_ascii_digit())
                    })
                    .map(|(_, n)| n.to_string())
            };
            a == b
                || a.strip_suffix("...")
                    .is_some_and(|head| b.starts_with(head))
                || seq(a).is_some_and(|n| seq(b) == Some(n))
        }
        _ => shown == got,
    }
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
                            common::free_port()
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

/// Runs one block in `dir` against a server just started (its ids and
/// counts are then the ones its comments show): the number of answers
/// compared, or what went wrong, one failure a paragraph.
fn run_block(ex: &Example, dir: &std::path::Path, within: u32) -> Result<usize, Vec<String>> {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_ssed"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let daemon = Daemon::start(&[]);
    let (script, answers) = script(&ex.text, daemon.addr.port(), within);
    std::fs::create_dir_all(dir).expect("a folder for the block");
    // Its own process group: what it left behind is ended with it. Its
    // output goes to files: a pipe would wait for whatever holds it.
    let err_file = dir.join(".stderr");
    let mut child = Command::new("bash")
        .process_group(0)
        .arg("-c")
        .arg(&script)
        .current_dir(dir)
        .env("PATH", &path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
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
    drop(daemon);
    if status.is_none_or(|s| !s.success()) {
        return Err(vec![format!(
            "{} ({}):\n{}\n--- stderr:\n{}",
            ex.at,
            status.map_or("still running".to_string(), |s| s.to_string()),
            ex.text,
            std::fs::read_to_string(&err_file).unwrap_or_default()
        )]);
    }
    let mut failed = Vec::new();
    for answer in &answers {
        let got = std::fs::read_to_string(dir.join(&answer.out)).unwrap_or_default();
        let same = match answer.shown() {
            Ok(shown) => serde_json::from_str(got.trim()).is_ok_and(|v| same_answer(&shown, &v)),
            Err(e) => {
                failed.push(format!("{}: {e}", ex.at));
                continue;
            }
        };
        if !same {
            failed.push(format!(
                "{}: {}\n  shown: {}\n  got:   {}",
                ex.at,
                answer.command,
                answer.expect,
                got.trim()
            ));
        }
    }
    if failed.is_empty() {
        Ok(answers.len())
    } else {
        Err(failed)
    }
}

/// What a block needs that this machine lacks: `redis-server` (unless
/// `SSED_REQUIRE_REDIS` says the tests must have it, as CI does) or `jq`.
fn lacks(example: &str) -> Option<String> {
    let here = |program: &str| {
        std::env::var_os("PATH").is_some_and(|paths| {
            std::env::split_paths(&paths).any(|dir| dir.join(program).is_file())
        })
    };
    for program in ["redis-server", "jq"] {
        let required =
            program == "redis-server" && std::env::var_os("SSED_REQUIRE_REDIS").is_some();
        if example.contains(program) && !here(program) && !required {
            return Some(format!("needs {program}, which is not on the PATH"));
        }
    }
    None
}

#[test]
fn every_shell_example_runs_as_shown() {
    let work = common::TempDir::new("docs-examples");
    let (examples, skipped) = examples();
    assert!(
        examples.len() >= 10,
        "only {} examples found",
        examples.len()
    );
    let mut failed = Vec::new();
    let mut checked = 0;
    let mut skipped = skipped;
    for (i, ex) in examples.iter().enumerate() {
        if let Some(why) = lacks(&ex.text) {
            skipped.push(format!("{}: {why}", ex.at));
            continue;
        }
        match run_block(ex, &work.join(&format!("block-{i}")), WITHIN) {
            Ok(n) => checked += n,
            Err(why) => failed.extend(why),
        }
    }
    for s in &skipped {
        eprintln!("not run: {s}");
    }
    eprintln!(
        "{} examples run, {checked} answers compared",
        examples.len()
    );
    assert!(
        failed.is_empty(),
        "examples that fail:\n\n{}",
        failed.join("\n\n")
    );
    assert!(checked >= 10, "only {checked} answers compared");
}

/// The checker itself: an example that answers otherwise than its comment
/// says, one that does not end, or a background job that never gets ready
/// fails; ids match by their number, `...` by a beginning.
#[test]
fn an_example_that_breaks_its_word_fails() {
    let work = common::TempDir::new("docs-checker");
    let block = |text: &str| Example {
        at: "test".to_string(),
        text: text.to_string(),
    };
    let good = block(
        "curl -d hi http://127.0.0.1:8000/events/news   # {\"id\":\"0123abcd-1\",\"topic\":\"news\",\"subscribers\":0}\n\
         curl 'http://127.0.0.1:8000/events/a%20b'\n\
         # 400 {\"error\":\"topic names are 1 to 128 ...\"} and more prose",
    );
    assert_eq!(run_block(&good, &work.join("good"), 3), Ok(2));
    for (name, text, says) in [
        (
            "wrong",
            "curl -d hi http://127.0.0.1:8000/events/news   # {\"id\":\"0123abcd-2\",\"topic\":\"news\",\"subscribers\":0}",
            "shown: {\"id\":\"0123abcd-2\"",
        ),
        (
            "hangs",
            "curl -s http://127.0.0.1:8000/events/news",
            "still running after 1 s",
        ),
        ("never ready", "sh -c 'exec sleep 60' &", "not ready in 1 s"),
        ("fails", "false", "exit 1: false"),
    ] {
        let why = run_block(&block(text), &work.join(name), 1)
            .expect_err(name)
            .join("\n");
        assert!(why.contains(says), "{name}: {why}");
    }
}
