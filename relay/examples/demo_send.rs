//! The local demo's sender (`examples/demo.sh`): picks addresses from a
//! scenario's manifests and sends one message to each through the relay,
//! one connection each, printing what the relay answered. The addresses:
//! every contact's proxy addresses, one address in each alias domain, one in
//! each connector's address space (`*` left out: that is the Internet), and
//! an unknown one in the first authoritative space.
//!
//! usage: demo_send RELAY_ADDR:PORT SCENARIO.yaml

use routing::crd::AddressSpaceType;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, relay, scenario] = args.as_slice() else {
        eprintln!("usage: demo_send RELAY_ADDR:PORT SCENARIO.yaml");
        return ExitCode::from(2);
    };
    let objects = match manifests::read(&[PathBuf::from(scenario)]) {
        Ok(m) => match m.single(None) {
            Ok((_, objects)) => objects,
            Err(e) => return fail(&e.to_string()),
        },
        Err(e) => return fail(&e.to_string()),
    };
    for rcpt in addresses(&objects) {
        match send(relay, &rcpt) {
            Ok(outcome) => println!("  {rcpt}: {outcome}"),
            Err(e) => return fail(&format!("talking to the relay at {relay}: {e}")),
        }
    }
    ExitCode::SUCCESS
}

fn fail(message: &str) -> ExitCode {
    eprintln!("demo_send: {message}");
    ExitCode::FAILURE
}

fn addresses(o: &routing::Objects) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in &o.contacts {
        out.extend(c.spec.proxy_addresses.iter().cloned());
    }
    for space in &o.address_spaces {
        let Some(target) = &space.spec.rewrite_to else {
            continue;
        };
        let local = o
            .contacts
            .iter()
            .flat_map(|c| &c.spec.proxy_addresses)
            .find_map(|a| {
                let (local, domain) = a.rsplit_once('@')?;
                domain.eq_ignore_ascii_case(target).then_some(local)
            });
        if let Some(local) = local {
            out.push(format!(
                "{local}@{}",
                space.spec.domain.replace("*.", "sub.")
            ));
        }
    }
    for connector in &o.connectors {
        for space in &connector.spec.address_spaces {
            if space.domain != "*" {
                out.push(format!("x@{}", space.domain.replace("*.", "sub.")));
            }
        }
    }
    let authoritative = o.address_spaces.iter().find(|s| {
        s.spec.r#type == Some(AddressSpaceType::Authoritative) && !s.spec.domain.starts_with("*.")
    });
    if let Some(space) = authoritative {
        out.push(format!("nobody@{}", space.spec.domain));
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|a| seen.insert(a.to_ascii_lowercase()));
    out
}

/// One message to `rcpt`: "accepted", or the reply that refused it.
fn send(relay: &str, rcpt: &str) -> std::io::Result<String> {
    let stream = TcpStream::connect(relay)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut exchange = |command: &str| -> std::io::Result<String> {
        if !command.is_empty() {
            writer.write_all(command.as_bytes())?;
        }
        read_reply(&mut reader)
    };
    let greeting = exchange("")?;
    if !greeting.starts_with("220") {
        return Ok(format!("greeting {greeting}"));
    }
    exchange("EHLO demo.client.test\r\n")?;
    let mail = exchange("MAIL FROM:<demo@client.test>\r\n")?;
    if !mail.starts_with("250") {
        return Ok(format!("MAIL refused {mail}"));
    }
    let rcpt_reply = exchange(&format!("RCPT TO:<{rcpt}>\r\n"))?;
    if !rcpt_reply.starts_with("250") {
        exchange("QUIT\r\n")?;
        return Ok(format!("refused {rcpt_reply}"));
    }
    let data = exchange("DATA\r\n")?;
    if !data.starts_with("354") {
        return Ok(format!("DATA refused {data}"));
    }
    let end = exchange(&format!("Subject: demo for {rcpt}\r\n\r\nHello.\r\n.\r\n"))?;
    exchange("QUIT\r\n")?;
    Ok(if end.starts_with("250") {
        "accepted".into()
    } else {
        format!("refused after DATA {end}")
    })
}

/// A whole reply (its last line), e.g. `550 5.1.1 Recipient address rejected: User unknown`.
fn read_reply(reader: &mut impl BufRead) -> std::io::Result<String> {
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the relay closed the connection",
            ));
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(line.trim_end().to_owned());
        }
    }
}
