//! Calendar time without a date crate: the clocks of the demos (local
//! time, as Python's `datetime.now()` prints it), the `Date` header of HTTP
//! responses and the access log (UTC).

use crate::sys;
use std::time::{SystemTime, UNIX_EPOCH};

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Seconds since 1970-01-01 00:00:00 UTC, now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A calendar time, enough to print clocks without a date crate.
#[derive(Debug, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0 is Sunday.
    pub weekday: u32,
}

impl Civil {
    /// The local time now, as Python's `datetime.now()` and `time.ctime()`
    /// give it: by the `TZ` variable, else the system's `/etc/localtime`.
    pub fn local_now() -> Civil {
        let secs = unix_now();
        Civil::from_unix(secs + sys::tz::local_offset(secs))
    }

    /// The calendar time `secs` seconds after 1970-01-01 00:00:00 (UTC, or
    /// local time if the offset was added to them first).
    pub fn from_unix(secs: i64) -> Civil {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem / 60 % 60) as u32,
            second: (rem % 60) as u32,
            weekday: ((days + 4).rem_euclid(7)) as u32,
        }
    }

    /// C's `ctime` without the newline, as Python's `time.ctime()`:
    /// `Sat Nov 21 07:37:52 2026`.
    pub fn ctime(&self) -> String {
        format!(
            "{} {} {:2} {:02}:{:02}:{:02} {}",
            DAYS[self.weekday as usize],
            MONTHS[(self.month - 1) as usize],
            self.day,
            self.hour,
            self.minute,
            self.second,
            self.year
        )
    }
    /// The IMF-fixdate of HTTP's `Date` header (RFC 9110, 5.6.7), for a UTC
    /// time: `Sun, 22 Nov 2026 07:37:52 GMT`.
    pub fn http_date(&self) -> String {
        format!(
            "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
            DAYS[self.weekday as usize],
            self.day,
            MONTHS[(self.month - 1) as usize],
            self.year,
            self.hour,
            self.minute,
            self.second
        )
    }

    /// ISO 8601 with a `Z`, for a UTC time: `2026-11-22T07:37:52Z`.
    pub fn iso8601(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar() {
        let cases = [
            (
                0,
                "Thu Jan  1 00:00:00 1970",
                "Thu, 01 Jan 1970 00:00:00 GMT",
                "1970-01-01T00:00:00Z",
            ),
            (
                1_795_246_672,
                "Sat Nov 21 07:37:52 2026",
                "Sat, 21 Nov 2026 07:37:52 GMT",
                "2026-11-21T07:37:52Z",
            ),
            (
                951_782_400,
                "Tue Feb 29 00:00:00 2000",
                "Tue, 29 Feb 2000 00:00:00 GMT",
                "2000-02-29T00:00:00Z",
            ),
        ];
        for (secs, ctime, http, iso) in cases {
            let t = Civil::from_unix(secs);
            assert_eq!(
                (
                    t.ctime().as_str(),
                    t.http_date().as_str(),
                    t.iso8601().as_str()
                ),
                (ctime, http, iso)
            );
        }
    }
}
