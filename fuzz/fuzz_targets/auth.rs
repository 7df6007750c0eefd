//! What an AUTH exchange and a grant's checks read from a client must
//! never panic: the SASL state machine fed the AUTH arguments and then any
//! lines, the header `From` parser, and a password Secret's htpasswd text.
//! (Whole sessions, AUTH refused in cleartext included, are the `session`
//! target's; AUTH over TLS is relay/tests/fuzz_auth.rs's.)

#![no_main]

use libfuzzer_sys::fuzz_target;
use routing::grants::header_from;
use routing::grants::password::Htpasswd;
use routing::grants::sasl::{Exchange, Step};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split("\r\n");
    let (mut step, mut exchange) = Exchange::start(lines.next().unwrap_or(""));
    for line in lines {
        let Some(ex) = exchange.as_mut() else { break };
        if !matches!(step, Step::Challenge(_)) {
            break;
        }
        step = ex.respond(line);
    }
    if let Step::Done(c) = &step {
        assert!(!c.user.is_empty());
    }
    let _ = header_from::addresses(&text);
    let _ = Htpasswd::parse(&text);
});
