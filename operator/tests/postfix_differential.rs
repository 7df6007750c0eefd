//! The differential test of `mailroute import postfix` (issue 15): a
//! generated Postfix gateway configuration of a few thousand entries runs
//! in a real Postfix (a private instance on a loopback port, its `smtp`
//! and `relay` transports replaced by a pipe(8) command that records the
//! original recipient, the next hop and the final recipient), and the same
//! files are imported and resolved by mailroute. For every address:
//! Postfix's answer at RCPT and, when it accepted, where it delivered,
//! against mailroute's decision. They must agree, except in the two classes
//! where mailroute differs on purpose (docs/cli.md), which are counted:
//!
//! - an alias target given directly by a client: Postfix refuses it (it is
//!   not a listed recipient), mailroute forwards it (the importer made it a
//!   recipient so that the alias to it still delivers);
//! - an address Postfix accepts and then bounces as unknown (an alias
//!   domain's catch-all to an unknown user of a virtual alias domain, or a
//!   virtual alias domain address that aliases to itself): mailroute
//!   refuses it at RCPT, which is what it does for unknown recipients.
//!
//! The figure is in docs/cli.md ("import postfix").

use operator::import::postfix::{Overrides, import};
use routing::{CompileOptions, Decision, compile};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::mta::Postfix;

/// A small deterministic generator (xorshift64*): the same configuration
/// on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The generated configuration: map sources and the addresses to ask about.
struct Generated {
    /// The main.cf lines of the routing under test.
    routing: String,
    recipients: Vec<String>,
    virtual_: Vec<String>,
    transport: Vec<String>,
    relay_domains: Vec<String>,
    addresses: BTreeSet<String>,
    /// Alias keys with several targets: Postfix delivers to all, the
    /// importer skips them (a contact has one target); not asked about.
    multi: BTreeSet<String>,
}

const GATEWAYS: u64 = 6;
const OPEN: u64 = 2;
const VIRTUAL: u64 = 3;
const ALIAS_DOMAINS: u64 = 2;

/// Which of Postfix's ways a configuration takes.
#[derive(Clone, Copy)]
struct Variant {
    /// relay_recipient_maps set (gateway domains list their recipients),
    /// or not (every relay domain accepts everyone).
    recipient_maps: bool,
    /// The default route: a `*` transport entry, or relayhost.
    star_transport: bool,
}

fn generate(seed: u64, v: Variant) -> Generated {
    let mut r = Rng(seed);
    let mut g = Generated {
        routing: String::new(),
        recipients: Vec::new(),
        virtual_: Vec::new(),
        transport: Vec::new(),
        relay_domains: Vec::new(),
        addresses: BTreeSet::new(),
        multi: BTreeSet::new(),
    };
    // Gateway domains: listed recipients, mailbox servers by transport.
    let mut listed: Vec<String> = Vec::new();
    for i in 0..GATEWAYS {
        let d = format!("gw{i}.example");
        g.relay_domains.push(d.clone());
        for j in 0..400 {
            let a = format!("u{j}@{d}");
            if r.chance(70) {
                g.recipients.push(format!("{a} OK"));
                listed.push(a.clone());
            }
            g.addresses.insert(a);
        }
        g.transport.push(format!("{d} smtp:[10.1.{i}.1]"));
        if i % 2 == 0 {
            g.transport.push(format!(".{d} relay:[10.1.{i}.2]:2525"));
        } else {
            g.transport.push(format!("mbx.{d} smtp:[10.2.{i}.1]"));
        }
        g.addresses.insert(format!("x@sub.{d}"));
        g.addresses.insert(format!("U1@GW{i}.EXAMPLE"));
    }
    // Relay domains that accept everyone (`@d` in the recipient map).
    for i in 0..OPEN {
        let d = format!("op{i}.example");
        g.relay_domains.push(d.clone());
        g.recipients.push(format!("@{d} OK"));
        if i == 0 {
            g.transport.push(format!("{d} relay:mail.{d}"));
        }
        for j in 0..20 {
            g.addresses.insert(format!("anyone{j}@{d}"));
        }
        g.addresses.insert(format!("x@deep.sub.{d}"));
    }
    // Targets an alias may point at.
    let target = |r: &mut Rng, listed: &[String], lower: &[String]| -> Vec<String> {
        match r.below(10) {
            0..=3 => vec![listed[r.below(listed.len() as u64) as usize].clone()],
            4 | 5 => {
                let i = r.below(GATEWAYS);
                vec![format!("box{}@mbx.gw{i}.example", r.below(50))]
            }
            6 => vec![format!(
                "someone{}@ext{}.example.net",
                r.below(100),
                r.below(5)
            )],
            7 if !lower.is_empty() => vec![lower[r.below(lower.len() as u64) as usize].clone()],
            8 => vec![
                listed[r.below(listed.len() as u64) as usize].clone(),
                format!("copy{}@ext0.example.net", r.below(100)),
            ],
            _ => vec![listed[r.below(listed.len() as u64) as usize].clone()],
        }
    };
    // Virtual alias domains, each with aliases (chains to earlier ones).
    let mut aliases: Vec<String> = Vec::new();
    for i in 0..VIRTUAL {
        let d = format!("va{i}.example");
        g.virtual_.push(format!("{d} virtual"));
        for k in 0..250 {
            let key = format!("a{k}@{d}");
            let t = if r.chance(3) {
                vec![key.clone()]
            } else {
                target(&mut r, &listed, &aliases)
            };
            g.virtual_.push(format!("{key} {}", t.join(", ")));
            if t.len() > 1 {
                g.multi.insert(key);
            } else {
                // Chains only through single-target aliases, which the
                // importer can express.
                g.addresses.insert(key.clone());
                aliases.push(key);
            }
        }
        g.addresses.insert(format!("nobody@{d}"));
    }
    // Aliases inside gateway and open relay domains.
    for i in 0..GATEWAYS {
        for k in 0..60 {
            let key = format!("alias{k}@gw{i}.example");
            let t = target(&mut r, &listed, &aliases);
            if t.len() > 1 {
                g.multi.insert(key.clone());
            } else {
                g.addresses.insert(key.clone());
            }
            g.virtual_.push(format!("{key} {}", t.join(", ")));
        }
    }
    for k in 0..30 {
        let key = format!("alias{k}@op1.example");
        let t = target(&mut r, &listed, &aliases);
        if t.len() == 1 {
            g.addresses.insert(key.clone());
            g.virtual_.push(format!("{key} {}", t.join(", ")));
        }
    }
    // Alias domains of the virtual ones, with a few exceptions of their own.
    for i in 0..ALIAS_DOMAINS {
        let d = format!("al{i}.example");
        g.virtual_.push(format!("{d} virtual"));
        g.virtual_.push(format!("@{d} @va{i}.example"));
        g.virtual_
            .push(format!("special@{d} {}", listed[i as usize]));
        g.addresses.insert(format!("special@{d}"));
        for k in (0..300).step_by(7) {
            // Through the catch-all to a{k}@va{i}: not when that has several targets.
            if !g.multi.contains(&format!("a{k}@va{i}.example")) {
                g.addresses.insert(format!("a{k}@{d}"));
            }
        }
    }
    // Targets given directly, and outside domains.
    for i in 0..GATEWAYS {
        for b in 0..10 {
            g.addresses.insert(format!("box{b}@mbx.gw{i}.example"));
        }
    }
    for n in 0..10 {
        g.addresses
            .insert(format!("someone{n}@ext{}.example.net", n % 5));
    }
    for a in &g.multi {
        g.addresses.remove(a);
    }
    g.routing = format!(
        "relay_domains = {}\nvirtual_alias_maps = hash:@/virtual\ntransport_maps = hash:@/transport\n",
        g.relay_domains.join(", ")
    );
    if v.recipient_maps {
        g.routing
            .push_str("relay_recipient_maps = hash:@/recipients\n");
    }
    if v.star_transport {
        g.transport.push("* smtp:[10.9.9.8]:2525".into());
    } else {
        g.routing.push_str("relayhost = [10.9.9.9]\n");
    }
    g
}

/// A private Postfix instance that records each delivery instead of making
/// it: its smtp and relay transports are a pipe(8) command.
struct Recording {
    postfix: Postfix,
}

const SENDER: &str = "probe@sender.test";

impl Recording {
    fn start(dir: &Path, g: &Generated, port: u16) -> Recording {
        let rec = dir.join("rec");
        std::fs::create_dir_all(&rec).unwrap();
        std::fs::set_permissions(&rec, std::fs::Permissions::from_mode(0o777)).unwrap();
        let record = rec.join("record");
        std::fs::write(
            &record,
            format!("#!/bin/sh\necho \"$*\" >> {}/records\n", rec.display()),
        )
        .unwrap();
        std::fs::set_permissions(&record, std::fs::Permissions::from_mode(0o755)).unwrap();
        let d = dir.display();
        // The routing under test, then what the harness needs (a client
        // outside mynetworks, no error throttling for thousands of refused
        // recipients).
        let main = format!(
            "{routing}\
             myhostname = postfix.differential.test\n\
             mynetworks = 192.0.2.0/24\n\
             smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n\
             smtpd_error_sleep_time = 0\n\
             smtpd_soft_error_limit = 1000000\n\
             smtpd_hard_error_limit = 1000000\n\
             smtpd_junk_command_limit = 1000000\n",
            routing = g.routing.replace('@', &format!("{d}/conf")),
        );
        let pipe = |transport: &str| {
            format!(
                "{transport} unix - n n - - pipe flags=q user=nobody argv={} {transport} ${{original_recipient}} ${{nexthop}} ${{recipient}}\n",
                record.display()
            )
        };
        let postfix = Postfix::configure(dir, port, &main, &(pipe("smtp") + &pipe("relay")));
        postfix.map("recipients", &g.recipients);
        postfix.map("virtual", &g.virtual_);
        postfix.map("transport", &g.transport);
        postfix.start();
        Recording { postfix }
    }

    /// RCPT for each address (one message each): the reply code of the
    /// refused ones, and the accepted ones.
    fn ask(&self, addresses: &BTreeSet<String>) -> BTreeMap<String, u16> {
        let stream = TcpStream::connect(("127.0.0.1", self.postfix.port)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut reply = |w: &mut TcpStream, line: Option<&str>| -> u16 {
            if let Some(l) = line {
                w.write_all(format!("{l}\r\n").as_bytes()).unwrap();
            }
            loop {
                let mut s = String::new();
                reader.read_line(&mut s).unwrap();
                if s.as_bytes().get(3) != Some(&b'-') {
                    return s[..3].parse().unwrap();
                }
            }
        };
        assert_eq!(reply(&mut writer, None), 220);
        assert_eq!(reply(&mut writer, Some("EHLO client.test")), 250);
        let mut out = BTreeMap::new();
        for a in addresses {
            assert_eq!(
                reply(&mut writer, Some(&format!("MAIL FROM:<{SENDER}>"))),
                250
            );
            let code = reply(&mut writer, Some(&format!("RCPT TO:<{a}>")));
            out.insert(a.clone(), code);
            if code == 250 {
                assert_eq!(reply(&mut writer, Some("DATA")), 354);
                let done = reply(
                    &mut writer,
                    Some(&format!("Subject: {a}\r\n\r\nprobe\r\n.")),
                );
                assert_eq!(done, 250, "{a}");
            } else {
                assert_eq!(reply(&mut writer, Some("RSET")), 250);
            }
        }
        reply(&mut writer, Some("QUIT"));
        out
    }

    /// Every delivery recorded, once the queue is empty: original
    /// recipient → (next hop, final recipient).
    fn deliveries(&self, accepted: usize) -> BTreeMap<String, (String, String)> {
        let records = self.postfix.dir.join("rec/records");
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut last = (0, Instant::now());
        loop {
            let text = std::fs::read_to_string(&records).unwrap_or_default();
            let n = text.lines().count();
            let queue_empty = self.postfix.queued() == 0;
            if n != last.0 {
                last = (n, Instant::now());
            }
            // Settled: the queue is empty and nothing new for a second.
            if queue_empty && n >= accepted.min(1) && last.1.elapsed() > Duration::from_secs(1) {
                let mut out = BTreeMap::new();
                for line in text.lines() {
                    let parts: Vec<&str> = line.split(' ').collect();
                    if let [_, original, hop, final_] = parts[..]
                        && original != SENDER
                    {
                        out.insert(original.to_owned(), (hop.to_owned(), final_.to_owned()));
                    }
                }
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "Postfix did not deliver everything"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One decision, comparable across the two: `refuse CODE` or
/// `deliver NEXTHOP RECIPIENT` (Postfix's next hop for MX delivery is the
/// recipient's domain).
fn postfix_decision(code: u16, delivered: Option<&(String, String)>) -> String {
    match (code, delivered) {
        (250, Some((hop, rcpt))) => format!("deliver {hop} {rcpt}"),
        (250, None) => "accept, then bounce".into(),
        (code, _) => format!("refuse {code}"),
    }
}

fn mailroute_decision(routing: &routing::RoutingTable, address: &str) -> String {
    match routing.resolve(address, false) {
        Decision::Forward {
            recipient,
            connector,
        } => {
            let hosts = &routing.connector(connector).smart_hosts;
            let hop = if hosts.is_empty() {
                let domain = recipient.rsplit_once('@').map(|(_, d)| d);
                domain.unwrap_or_default().to_owned()
            } else {
                let hosts: Vec<String> = hosts.iter().map(ToString::to_string).collect();
                hosts.join(",")
            };
            format!("deliver {hop} {recipient}")
        }
        Decision::Reply(r) => format!("refuse {}", r.code),
    }
}

fn agreement(v: Variant) {
    let g = generate(0x6d61_696c_726f_7574, v);
    let dir = tempfile::Builder::new()
        .prefix("mailroute-postfix-diff")
        .tempdir_in("/tmp")
        .unwrap();
    let postfix = Recording::start(dir.path(), &g, free_port());
    let answers = postfix.ask(&g.addresses);
    let accepted = answers.values().filter(|&&c| c == 250).count();
    let delivered = postfix.deliveries(accepted);

    // The same files, through `mailroute import postfix`.
    let conf = dir.path().join("conf");
    let main_cf = std::fs::read_to_string(conf.join("main.cf")).unwrap();
    let read = |p: &str| std::fs::read_to_string(p).map_err(|e| format!("{p}: {e}"));
    let imported = import("main.cf", &main_cf, &Overrides::default(), &read, None).unwrap();
    let compiled = compile(&imported.objects(), &CompileOptions::default());
    let skipped_multi = imported
        .skipped
        .iter()
        .filter(|s| s.why.ends_with("targets: a MailContact has one"))
        .count();
    assert_eq!(skipped_multi, g.multi.len());
    // The only other entries skipped: virtual alias domain addresses that
    // alias to themselves (Postfix bounces them; mailroute refuses them),
    // and the harness's own client rules, listed as not imported.
    let harness = ["mynetworks = ", "smtpd_relay_restrictions = "];
    let other: Vec<String> = imported
        .skipped
        .iter()
        .filter(|s| !s.why.ends_with("targets: a MailContact has one"))
        .filter(|s| !harness.iter().any(|h| s.entry.starts_with(h)))
        .filter(|s| {
            !s.why
                .starts_with("an address of a virtual alias domain that aliases to itself")
        })
        .map(ToString::to_string)
        .collect();
    assert!(other.is_empty(), "{other:?}");

    let targets: BTreeSet<String> = imported
        .contacts
        .iter()
        .filter_map(|c| c.spec.target_address.clone())
        .collect();
    let mut agree = 0;
    let mut by_design: BTreeMap<&str, usize> = BTreeMap::new();
    let mut differ = Vec::new();
    for a in &g.addresses {
        let pf = postfix_decision(answers[a], delivered.get(a));
        let mr = mailroute_decision(&compiled.routing, a);
        if pf == mr {
            agree += 1;
        } else if pf == "refuse 550"
            && mr.starts_with("deliver")
            && targets.contains(&a.to_lowercase())
        {
            *by_design
                .entry("an alias target given directly")
                .or_default() += 1;
        } else if pf == "accept, then bounce" && mr == "refuse 550" {
            *by_design
                .entry("accepted, then bounced by Postfix; refused at RCPT by mailroute")
                .or_default() += 1;
        } else {
            differ.push(format!("{a}: Postfix {pf}, mailroute {mr}"));
        }
    }
    let total = g.addresses.len();
    let recipients = if v.recipient_maps {
        g.recipients.len()
    } else {
        0
    };
    let entries = recipients + g.virtual_.len() + g.transport.len();
    let figure = format!(
        "{entries} Postfix entries, {total} addresses: {agree} the same decision, {} different by design {by_design:?}, {} different otherwise; {} aliases with several targets not imported",
        by_design.values().sum::<usize>(),
        differ.len(),
        g.multi.len()
    );
    eprintln!("{figure}");
    assert!(
        differ.is_empty(),
        "{figure}\n{}",
        differ[..differ.len().min(30)].join("\n")
    );
    assert!(total > 2000 && agree > total * 9 / 10, "{figure}");
}

#[test]
#[cfg_attr(
    not(has_postfix_instance),
    ignore = "needs Postfix (apt-get install postfix) and root, to run a private instance"
)]
fn with_recipient_maps_and_a_relayhost_imported_routing_agrees_with_postfix() {
    agreement(Variant {
        recipient_maps: true,
        star_transport: false,
    });
}

#[test]
#[cfg_attr(
    not(has_postfix_instance),
    ignore = "needs Postfix (apt-get install postfix) and root, to run a private instance"
)]
fn without_recipient_maps_and_with_a_star_transport_imported_routing_agrees_with_postfix() {
    agreement(Variant {
        recipient_maps: false,
        star_transport: true,
    });
}
