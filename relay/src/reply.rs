//! SMTP replies with enhanced status codes (RFC 3463), written with
//! smtp-proto's generator.

use routing::outcome::Answer;
use smtp_proto::Response;

pub type Reply = Response<String>;

/// `reply(250, "2.1.0", "Ok")`.
pub fn reply(code: u16, enhanced: &str, text: impl Into<String>) -> Reply {
    let mut esc = [0u8; 3];
    for (slot, part) in esc.iter_mut().zip(enhanced.split('.')) {
        *slot = part.parse().unwrap_or(0);
    }
    Response {
        code,
        esc,
        message: text.into(),
    }
}

pub fn to_bytes(r: &Reply) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + r.message.len());
    // Writing to a Vec cannot fail.
    let _ = r.write(&mut out);
    out
}

/// The routing core's decision as a reply.
pub fn from_routing(r: &routing::Reply) -> Reply {
    reply(r.code, r.enhanced, r.text.clone())
}

/// A reply from the next hop, passed back as it came (code, enhanced code,
/// text), so the sender sees the real reason and no backscatter is made.
/// A multi-line reply becomes one line (its lines joined by spaces): our
/// reply must not carry a bare line break.
pub fn passed_back(r: &Reply) -> Reply {
    let esc = if r.esc == [0, 0, 0] {
        // Next hops without ENHANCEDSTATUSCODES: derive the class.
        [(r.code / 100) as u8, 0, 0]
    } else {
        r.esc
    };
    Response {
        code: r.code,
        esc,
        message: r.message.replace(['\r', '\n'], " "),
    }
}

/// A reply as the routing core's outcome policy takes it.
pub fn to_answer(r: &Reply) -> Answer {
    Answer::new(r.code, r.esc, r.message.clone())
}

/// An answer of the outcome policy as a reply.
pub fn from_answer(a: &Answer) -> Reply {
    Response {
        code: a.code,
        esc: a.enhanced,
        message: a.text.clone(),
    }
}

/// `250 2.0.0 Ok`, for logs.
pub fn display(r: &Reply) -> String {
    let [a, b, c] = r.esc;
    format!("{} {a}.{b}.{c} {}", r.code, r.message.trim())
}

/// The queue id a next hop names in its reply to the final dot, where it
/// gives one: Postfix's "queued as 4XyZ", Exim's "id=1xZ…".
pub fn queue_id(text: &str) -> Option<&str> {
    let rest = text
        .split_once("queued as ")
        .or_else(|| text.split_once("id="))?
        .1;
    let id = rest
        .split(|c: char| c.is_whitespace() || c == ')' || c == ';' || c == ',')
        .next()?;
    (!id.is_empty()).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_line_reply_is_passed_back_as_one_line() {
        let r = reply(550, "5.7.1", "Blocked\nSee https://example.com/why");
        let mut out = Vec::new();
        passed_back(&r).write(&mut out).unwrap();
        assert_eq!(out, b"550 5.7.1 Blocked See https://example.com/why\r\n");
        let no_esc = Response {
            code: 451,
            esc: [0, 0, 0],
            message: "later".to_string(),
        };
        assert_eq!(passed_back(&no_esc).esc, [4, 0, 0]);
    }

    #[test]
    fn queue_ids_from_next_hop_replies() {
        assert_eq!(queue_id("250 2.0.0 Ok: queued as 4XyZ1"), Some("4XyZ1"));
        assert_eq!(
            queue_id("250 OK id=1xZVCH-00059f-31"),
            Some("1xZVCH-00059f-31")
        );
        assert_eq!(
            queue_id("250 2.0.0 Ok: accepted by the next hop (Ok: queued as SINK1)"),
            Some("SINK1")
        );
        assert_eq!(queue_id("250 2.0.0 Ok"), None);
    }
}
