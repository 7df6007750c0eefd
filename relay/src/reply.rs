//! SMTP replies with enhanced status codes (RFC 3463), written with
//! smtp-proto's generator.

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
        message: r.message.clone(),
    }
}
