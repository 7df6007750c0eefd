//! The delivery status notification (RFC 3464) the relay sends, from `<>`,
//! to the sender of a message whose recipients went to several next hops
//! when some next hops refused it for good and others accepted it (the
//! policy: routing::outcome). It is composed here, as bytes, from what is
//! known; it is delivered through the table like any message.

use crate::received::rfc5322_date;
use crate::reply::{Reply, display};
use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// One recipient the notification reports as failed.
pub struct Failed<'a> {
    /// As it was sent to its next hop.
    pub recipient: &'a str,
    /// As the client named it (its ORCPT, or its RCPT when we rewrote it).
    pub original: Option<&'a str>,
    /// The next hop that refused it, and what it said.
    pub hop: &'a str,
    pub reply: &'a Reply,
}

/// What of the message goes back with the notification.
pub enum Returned<'a> {
    /// The header section (as received, after our Received header).
    Headers(&'a [u8]),
    /// The whole message (RET=FULL, and small enough).
    Message(&'a [u8]),
}

pub struct Report<'a> {
    /// Our host name: the reporting MTA.
    pub hostname: &'a str,
    /// The session's id, for the Message-ID and the MIME boundary.
    pub id: &'a str,
    /// The original sender: the notification's recipient.
    pub sender: &'a str,
    pub envid: Option<&'a str>,
    pub arrival: SystemTime,
    pub failed: &'a [Failed<'a>],
    pub returned: Returned<'a>,
}

impl Report<'_> {
    /// The notification as it goes on the wire after DATA: CRLF lines,
    /// dot-stuffed, without the final dot.
    pub fn compose(&self, now: SystemTime) -> Vec<u8> {
        let nanos = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let boundary = format!("{nanos:x}.{}/{}", self.id, self.hostname);
        let host = self.hostname;
        let utf8 = self.international();
        let mut m = String::with_capacity(2048);
        let _ = write!(
            m,
            "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n\
             To: <{sender}>\r\n\
             Subject: Undelivered Mail Returned to Sender\r\n\
             Date: {date}\r\n\
             Message-ID: <{nanos:x}.{id}@{host}>\r\n\
             Auto-Submitted: auto-replied\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=delivery-status;\r\n\
             \tboundary=\"{boundary}\"\r\n\
             \r\n\
             This is a MIME-encapsulated message.\r\n\
             \r\n\
             --{boundary}\r\n\
             Content-Type: text/plain; charset={charset}\r\n\
             \r\n\
             This is the mail system at host {host}.\r\n\
             \r\n\
             Your message was delivered to its other recipients, but the next hop\r\n\
             of the recipients below refused it permanently.\r\n\
             \r\n",
            sender = self.sender,
            date = rfc5322_date(now),
            id = self.id,
            charset = if utf8 { "utf-8" } else { "us-ascii" },
        );
        for f in self.failed {
            let _ = write!(m, "<{}>", f.original.unwrap_or(f.recipient));
            if f.original.is_some_and(|o| o != f.recipient) {
                let _ = write!(m, " (sent as <{}>)", f.recipient);
            }
            let _ = write!(m, ": {} said:\r\n    {}\r\n\r\n", f.hop, said(f.reply));
        }
        let _ = write!(
            m,
            "--{boundary}\r\n\
             Content-Type: message/{global}delivery-status\r\n\
             \r\n\
             Reporting-MTA: dns; {host}\r\n",
            global = if utf8 { "global-" } else { "" },
        );
        if let Some(envid) = self.envid {
            let _ = write!(m, "Original-Envelope-Id: {envid}\r\n");
        }
        let _ = write!(m, "Arrival-Date: {}\r\n", rfc5322_date(self.arrival));
        for f in self.failed {
            let [class, subject, detail] = f.reply.esc;
            let status = if class == 5 {
                format!("{class}.{subject}.{detail}")
            } else {
                "5.0.0".to_owned()
            };
            let _ = write!(m, "\r\nFinal-Recipient: rfc822; {}\r\n", f.recipient);
            if let Some(original) = f.original {
                let _ = write!(m, "Original-Recipient: rfc822; {original}\r\n");
            }
            let _ = write!(
                m,
                "Action: failed\r\nStatus: {status}\r\nRemote-MTA: x-mailroute; {}\r\nDiagnostic-Code: smtp; {}\r\n",
                f.hop,
                said(f.reply)
            );
        }
        let (kind, content) = match self.returned {
            Returned::Headers(h) => ("text/rfc822-headers", h),
            Returned::Message(all) => ("message/rfc822", all),
        };
        let eight_bit = !content.is_ascii();
        let _ = write!(m, "\r\n--{boundary}\r\nContent-Type: {kind}\r\n");
        if eight_bit {
            m.push_str("Content-Transfer-Encoding: 8bit\r\n");
        }
        m.push_str("\r\n");
        let mut out = m.into_bytes();
        // The returned part is already on the wire's form (CRLF lines,
        // dot-stuffed), as the client sent it; our own lines never begin
        // with a dot.
        out.extend_from_slice(content);
        if !content.is_empty() && !content.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        out
    }

    /// Whether the notification needs SMTPUTF8 and 8BITMIME to travel.
    pub fn needs(&self, composed: &[u8]) -> (bool, bool) {
        (self.international(), !composed.is_ascii())
    }

    /// RFC 6533: a report naming an internationalised address is a
    /// message/global-delivery-status, and needs SMTPUTF8 to travel.
    fn international(&self) -> bool {
        !self.sender.is_ascii()
            || self
                .failed
                .iter()
                .any(|f| !f.recipient.is_ascii() || !f.original.unwrap_or("").is_ascii())
    }
}

/// A next hop's reply on one line of printable text.
fn said(r: &Reply) -> String {
    display(r)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::reply;
    use std::time::Duration;

    fn report<'a>(failed: &'a [Failed<'a>], returned: Returned<'a>) -> Report<'a> {
        Report {
            hostname: "relay.test",
            id: "1f",
            sender: "s@client.test",
            envid: Some("QQ314159"),
            arrival: UNIX_EPOCH + Duration::from_secs(1_795_253_055),
            failed,
            returned,
        }
    }

    #[test]
    fn a_report_names_each_failed_recipient_and_returns_the_headers() {
        let refusal = reply(554, "5.7.1", "Content refused\nby policy");
        let failed = [Failed {
            recipient: "bob@partner.example.net",
            original: Some("bob@example.com"),
            hop: "SmtpConnector/partner",
            reply: &refusal,
        }];
        let headers =
            b"Received: from x\r\n\tby relay.test\r\nSubject: hello\r\n..dotted: x\r\n\r\n";
        let r = report(&failed, Returned::Headers(headers));
        let now = UNIX_EPOCH + Duration::from_secs(1_795_253_056);
        let text = String::from_utf8(r.compose(now)).unwrap();
        let nanos = format!("{:x}", 1_795_253_056u128 * 1_000_000_000);
        let boundary = format!("{nanos}.1f/relay.test");
        let expected = format!(
            "From: Mail Delivery System <MAILER-DAEMON@relay.test>\r\n\
             To: <s@client.test>\r\n\
             Subject: Undelivered Mail Returned to Sender\r\n\
             Date: Sat, 21 Nov 2026 09:24:16 +0000\r\n\
             Message-ID: <{nanos}.1f@relay.test>\r\n\
             Auto-Submitted: auto-replied\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=delivery-status;\r\n\
             \tboundary=\"{boundary}\"\r\n\
             \r\n\
             This is a MIME-encapsulated message.\r\n\
             \r\n\
             --{boundary}\r\n\
             Content-Type: text/plain; charset=us-ascii\r\n\
             \r\n\
             This is the mail system at host relay.test.\r\n\
             \r\n\
             Your message was delivered to its other recipients, but the next hop\r\n\
             of the recipients below refused it permanently.\r\n\
             \r\n\
             <bob@example.com> (sent as <bob@partner.example.net>): SmtpConnector/partner said:\r\n    \
             554 5.7.1 Content refused by policy\r\n\
             \r\n\
             --{boundary}\r\n\
             Content-Type: message/delivery-status\r\n\
             \r\n\
             Reporting-MTA: dns; relay.test\r\n\
             Original-Envelope-Id: QQ314159\r\n\
             Arrival-Date: Sat, 21 Nov 2026 09:24:15 +0000\r\n\
             \r\n\
             Final-Recipient: rfc822; bob@partner.example.net\r\n\
             Original-Recipient: rfc822; bob@example.com\r\n\
             Action: failed\r\n\
             Status: 5.7.1\r\n\
             Remote-MTA: x-mailroute; SmtpConnector/partner\r\n\
             Diagnostic-Code: smtp; 554 5.7.1 Content refused by policy\r\n\
             \r\n\
             --{boundary}\r\n\
             Content-Type: text/rfc822-headers\r\n\
             \r\n\
             Received: from x\r\n\tby relay.test\r\nSubject: hello\r\n..dotted: x\r\n\r\n\
             \r\n\
             --{boundary}--\r\n"
        );
        assert_eq!(text, expected);
        assert_eq!(r.needs(text.as_bytes()), (false, false));
        assert_eq!(r.compose(now), r.compose(now), "the same bytes each time");
    }

    #[test]
    fn internationalised_addresses_make_a_global_report() {
        let refusal = reply(550, "5.1.1", "unknown");
        let failed = [Failed {
            recipient: "jörg@example.com",
            original: None,
            hop: "SmtpConnector/mbx",
            reply: &refusal,
        }];
        let r = report(&failed, Returned::Message(b"Subject: x\r\n\r\nbody\r\n"));
        let bytes = r.compose(UNIX_EPOCH);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.contains("Content-Type: message/global-delivery-status\r\n"),
            "{text}"
        );
        assert!(text.contains("charset=utf-8"), "{text}");
        assert!(text.contains("Content-Type: message/rfc822\r\n\r\nSubject: x\r\n\r\nbody\r\n"));
        assert!(!text.contains("Original-Recipient"), "{text}");
        assert_eq!(r.needs(&bytes), (true, true));
    }
}
