//! What the import tests share: the imported objects resolved by the
//! routing core, as one comparable line.

use operator::import::Imported;
use routing::{CompileOptions, Decision, compile};

/// `forward HOSTS RECIPIENT` or `CODE ENHANCED`.
pub fn decide(i: &Imported, rcpt: &str) -> String {
    let c = compile(&i.objects(), &CompileOptions::default());
    match c.routing.resolve(rcpt, false) {
        Decision::Forward {
            recipient,
            connector,
        } => format!(
            "forward {} {recipient}",
            c.routing.connector(connector).hosts_display().join(",")
        ),
        Decision::Reply(r) => format!("{} {}", r.code, r.enhanced),
    }
}
