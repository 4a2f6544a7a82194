//! `redis://[user[:password]@]host[:port][/db]`: where the shared hub is.

use crate::http1::{percent_decode, split_host_port};

/// A parsed `--redis` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    pub db: u32,
}

/// Never prints the password.
impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

/// `redis://user:***@host:port/db`, the password hidden, for logs and
/// `/healthz`.
impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("redis://")?;
        match (&self.user, &self.password) {
            (Some(u), Some(_)) => write!(f, "{u}:***@")?,
            (Some(u), None) => write!(f, "{u}@")?,
            (None, Some(_)) => f.write_str(":***@")?,
            (None, None) => {}
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        write!(f, ":{}", self.port)?;
        if self.db != 0 {
            write!(f, "/{}", self.db)?;
        }
        Ok(())
    }
}

impl Target {
    /// Parses a `redis://` URL; the error says what is wrong with it.
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = match url.split_once("://") {
            Some(("redis", rest)) => rest,
            Some(("rediss", _)) => {
                return Err(
                    "rediss:// (TLS) is not built in; reach Redis through a TLS tunnel (stunnel, spiped) on a local port".into(),
                )
            }
            Some((scheme, _)) => return Err(format!("expected redis://, not {scheme}://")),
            None => return Err("expected redis://[user:password@]host[:port][/db]".into()),
        };
        if rest.contains(['?', '#']) {
            return Err("a query or fragment is not understood; use redis://[user:password@]host[:port][/db]".into());
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let decode = |s: &str, what: &str| {
            percent_decode(s)
                .ok_or_else(|| format!("the {what} is not valid percent-encoded UTF-8"))
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let (u, p) = match info.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (info, None),
                };
                let user = (!u.is_empty())
                    .then(|| decode(u, "user name"))
                    .transpose()?;
                let password = p.map(|p| decode(p, "password")).transpose()?;
                (user, password.filter(|p| !p.is_empty()))
            }
        };
        let (host, port) =
            split_host_port(hostport).ok_or("an IPv6 address needs its closing ]")?;
        if host.is_empty() {
            return Err("the host is missing: redis://HOST[:PORT]".into());
        }
        let port =
            match port {
                None | Some("") => 6379,
                Some(p) => p.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| {
                    format!("the port must be a number from 1 to 65535, not {p:?}")
                })?,
            };
        let db = match path {
            "" => 0,
            d => d
                .parse::<u32>()
                .map_err(|_| format!("the database must be a number, not {d:?}"))?,
        };
        Ok(Target {
            host: host.to_string(),
            port,
            user,
            password,
            db,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = |host: &str, port, user: Option<&str>, password: Option<&str>, db| Target {
            host: host.into(),
            port,
            user: user.map(String::from),
            password: password.map(String::from),
            db,
        };
        let cases = [
            ("redis://localhost", t("localhost", 6379, None, None, 0)),
            (
                "redis://127.0.0.1:6380/2",
                t("127.0.0.1", 6380, None, None, 2),
            ),
            ("redis://:s%40cret@h", t("h", 6379, None, Some("s@cret"), 0)),
            ("redis://app:pw@h:1/", t("h", 1, Some("app"), Some("pw"), 0)),
            ("redis://app@h", t("h", 6379, Some("app"), None, 0)),
            ("redis://[::1]:7000/3", t("::1", 7000, None, None, 3)),
            ("redis://u:p:q@h", t("h", 6379, Some("u"), Some("p:q"), 0)),
        ];
        for (url, want) in cases {
            assert_eq!(Target::parse(url).as_ref(), Ok(&want), "{url}");
        }
        assert_eq!(
            Target::parse("redis://app:pw@[::1]:7000/3")
                .unwrap()
                .to_string(),
            "redis://app:***@[::1]:7000/3"
        );
        assert_eq!(
            Target::parse("redis://h").unwrap().to_string(),
            "redis://h:6379"
        );
        for (url, why) in [
            (
                "localhost:6379",
                "expected redis://[user:password@]host[:port][/db]",
            ),
            ("http://h", "expected redis://, not http://"),
            ("rediss://h", "rediss:// (TLS) is not built in"),
            ("redis://", "the host is missing"),
            (
                "redis://h:0",
                "the port must be a number from 1 to 65535, not \"0\"",
            ),
            (
                "redis://h:99999",
                "the port must be a number from 1 to 65535",
            ),
            ("redis://h/x", "the database must be a number, not \"x\""),
            ("redis://h?db=1", "a query or fragment is not understood"),
            ("redis://[::1", "an IPv6 address needs its closing ]"),
            (
                "redis://:%zz@h",
                "the password is not valid percent-encoded UTF-8",
            ),
        ] {
            let err = Target::parse(url).unwrap_err();
            assert!(err.starts_with(why), "{url}: {err}");
        }
    }
}
