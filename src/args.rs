//! The small option lexer that `ssed serve`, `ssed listen` and `ssed
//! publish` share: long options with `--name value` or `--name=value`,
//! short ones with a separate value, `-` as a plain argument, and errors
//! that name what they are about.

/// A command line that cannot be used; the message names the argument.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

/// One argument, as the lexer sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Arg {
    /// `-x`, `--name`, or `--name=value` (the value inline).
    Option(String, Option<String>),
    /// Anything else, `-` included.
    Plain(String),
}

/// The arguments of one command.
pub struct Args<I: Iterator<Item = String>> {
    args: I,
}

impl<I: Iterator<Item = String>> Args<I> {
    pub fn new(args: impl IntoIterator<Item = String, IntoIter = I>) -> Self {
        Args {
            args: args.into_iter(),
        }
    }

    /// The value of option `name`: its inline value, else the next argument.
    pub fn value(&mut self, name: &str, inline: Option<String>) -> Result<String, UsageError> {
        inline
            .or_else(|| self.args.next())
            .ok_or_else(|| UsageError(format!("{name} needs a value")))
    }
}

impl<I: Iterator<Item = String>> Iterator for Args<I> {
    type Item = Arg;

    fn next(&mut self) -> Option<Arg> {
        let arg = self.args.next()?;
        Some(match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => {
                Arg::Option(name.to_string(), Some(value.to_string()))
            }
            _ if arg.starts_with('-') && arg.len() > 1 => Arg::Option(arg, None),
            _ => Arg::Plain(arg),
        })
    }
}

/// `invalid value "x" for --flag: why`. A secret (a name with `token` in
/// it, or a URL with a password: `redis://user:pw@host`) is not echoed to
/// a terminal or a log.
pub fn invalid(name: &str, value: &str, why: &str) -> UsageError {
    let with_password = value
        .split_once("://")
        .and_then(|(_, rest)| rest.split('/').next())
        .is_some_and(|authority| authority.contains('@'));
    if name.to_ascii_lowercase().contains("token") || with_password {
        return UsageError(format!("invalid value for {name}: {why}"));
    }
    UsageError(format!("invalid value {value:?} for {name}: {why}"))
}

/// Bytes, with an optional K or M suffix (1024 and 1024²).
pub fn bytes(value: &str, min: usize, max: usize) -> Result<usize, String> {
    let (digits, unit) = match value.strip_suffix(['K', 'k']) {
        Some(d) => (d, 1024),
        None => match value.strip_suffix(['M', 'm']) {
            Some(d) => (d, 1024 * 1024),
            None => match value.strip_suffix(['G', 'g']) {
                Some(d) => (d, 1024 * 1024 * 1024),
                None => (value, 1),
            },
        },
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("expected bytes from {min} to {max}, such as 65536, 64K or 1M"))
}

/// The error for an option no command knows.
pub fn unknown(name: &str, command: &str) -> UsageError {
    UsageError(format!("unknown option {name:?} for {command}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexes() {
        let mut args = Args::new(
            ["--a=1", "--b", "2", "-H", "x: y", "-", "url", "--c="]
                .iter()
                .map(|s| s.to_string()),
        );
        assert_eq!(
            args.next(),
            Some(Arg::Option("--a".into(), Some("1".into())))
        );
        assert_eq!(args.next(), Some(Arg::Option("--b".into(), None)));
        assert_eq!(args.value("--b", None), Ok("2".into()));
        assert_eq!(args.next(), Some(Arg::Option("-H".into(), None)));
        assert_eq!(args.value("-H", None), Ok("x: y".into()));
        assert_eq!(args.next(), Some(Arg::Plain("-".into())));
        assert_eq!(args.next(), Some(Arg::Plain("url".into())));
        assert_eq!(
            args.next(),
            Some(Arg::Option("--c".into(), Some(String::new())))
        );
        assert_eq!(
            args.value("--d", None),
            Err(UsageError("--d needs a value".into()))
        );
        assert_eq!(
            invalid("--publish-token", "s3cret", "bad"),
            UsageError("invalid value for --publish-token: bad".into())
        );
    }
}
