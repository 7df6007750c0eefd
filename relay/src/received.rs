//! The Received header the relay prepends (RFC 5321 §4.4), and counting the
//! ones already there for the hop limit.

use std::fmt::Write;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

pub struct Trace<'a> {
    pub helo: &'a str,
    pub client: IpAddr,
    pub hostname: &'a str,
    pub esmtp: bool,
    pub tls: bool,
    /// After AUTH: the mechanism, and the principal when it is recorded.
    pub authenticated: Option<(&'a str, Option<&'a str>)>,
    pub id: &'a str,
    pub recipient: Option<&'a str>,
}

impl Trace<'_> {
    /// The header, written in place (it is made for every message).
    pub fn header(&self, now: SystemTime) -> String {
        // RFC 3848 protocol types.
        let with = match (self.esmtp, self.tls, self.authenticated.is_some()) {
            (true, true, true) => "ESMTPSA",
            (true, false, true) => "ESMTPA",
            (true, true, false) => "ESMTPS",
            (true, false, false) => "ESMTP",
            (false, _, _) => "SMTP",
        };
        let mut h = String::with_capacity(160);
        let _ = write!(
            h,
            "Received: from {} ([{}])\r\n\tby {} (mailroute-relay) with {with} id {}",
            self.helo, self.client, self.hostname, self.id
        );
        if let Some((mechanism, Some(principal))) = self.authenticated {
            // A comment's text: no parentheses, backslashes or controls.
            let principal: String = principal
                .chars()
                .map(|c| {
                    if matches!(c, '(' | ')' | '\\') || c.is_control() {
                        '_'
                    } else {
                        c
                    }
                })
                .collect();
            let _ = write!(h, "\r\n\t(authenticated as {principal} with {mechanism})");
        }
        if let Some(r) = self.recipient {
            let _ = write!(h, "\r\n\tfor <{r}>");
        }
        h.push_str(";\r\n\t");
        write_date(&mut h, now);
        h.push_str("\r\n");
        h
    }
}

/// Whether a header line starts a Received header (case-insensitive).
pub fn is_received(line: &[u8]) -> bool {
    line.len() > 9 && line[..9].eq_ignore_ascii_case(b"received:")
}

/// `Sat, 21 Nov 2026 09:24:15 +0000`.
pub fn rfc5322_date(t: SystemTime) -> String {
    let mut out = String::with_capacity(32);
    write_date(&mut out, t);
    out
}

fn write_date(out: &mut String, t: SystemTime) {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let (h, m, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    let (year, month, day) = civil_from_days(days);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let _ = write!(
        out,
        "{}, {day} {} {year} {h:02}:{m:02}:{s:02} +0000",
        WEEKDAYS[(days.rem_euclid(7)) as usize],
        MONTHS[(month - 1) as usize]
    );
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates() {
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(rfc5322_date(at(0)), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(at(1_795_253_055)),
            "Sat, 21 Nov 2026 09:24:15 +0000"
        );
        assert_eq!(
            rfc5322_date(at(951_782_400)),
            "Tue, 29 Feb 2000 00:00:00 +0000"
        );
    }

    #[test]
    fn received_lines() {
        assert!(is_received(b"Received: from x\r\n"));
        assert!(is_received(b"RECEIVED: from x\r\n"));
        assert!(!is_received(b"Received-SPF: pass\r\n"));
        assert!(!is_received(b" Received: folded\r\n"));
    }
}
