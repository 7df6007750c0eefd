//! `mailroute import postfix`: each Postfix rule the importer preserves,
//! on small in-memory configurations, and the imported objects resolved
//! with the routing core (the decisions Postfix would make).

use operator::import::Imported;
use operator::import::postfix::{Overrides, import};
use routing::{CompileOptions, compile};

mod common;
use common::decide;
use std::collections::HashMap;

fn run(main_cf: &str, files: &[(&str, &str)]) -> Imported {
    let files: HashMap<String, String> = files
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let read = move |path: &str| {
        files
            .get(path)
            .cloned()
            .ok_or_else(|| format!("reading {path}: no such file"))
    };
    import(
        "main.cf",
        main_cf,
        &Overrides::default(),
        &read,
        Some("mail"),
    )
    .unwrap()
}

// A gateway as Postfix's STANDARD_CONFIGURATION_README sets one up: no
// local delivery.
const GATEWAY: &str = "mydestination =\n\
    relay_domains = example.com\n\
    relay_recipient_maps = hash:/etc/postfix/recipients\n\
    virtual_alias_maps = hash:/etc/postfix/virtual\n\
    transport_maps = hash:/etc/postfix/transport\n";

fn gateway() -> Imported {
    run(
        GATEWAY,
        &[
            (
                "/etc/postfix/recipients",
                "ann@example.com OK\nbob@example.com OK\n",
            ),
            (
                "/etc/postfix/virtual",
                "info@example.com ann@example.com\nold@example.com ann@mbx.example.com\n",
            ),
            (
                "/etc/postfix/transport",
                "example.com smtp:[10.0.0.11]\nmbx.example.com smtp:[10.0.0.12]:2525\n",
            ),
        ],
    )
}

#[test]
fn a_gateway_forwards_listed_recipients_as_addressed_and_refuses_the_rest() {
    let i = gateway();
    assert!(i.skipped.is_empty(), "{:?}", i.skipped);
    assert_eq!(
        decide(&i, "Ann@Example.com"),
        "forward [10.0.0.11] Ann@Example.com"
    );
    assert_eq!(
        decide(&i, "info@example.com"),
        "forward [10.0.0.11] ann@example.com"
    );
    assert_eq!(decide(&i, "nobody@example.com"), "550 5.1.1");
    // Postfix delivers an alias target without checking it again.
    assert_eq!(
        decide(&i, "old@example.com"),
        "forward [10.0.0.12]:2525 ann@mbx.example.com"
    );
    // relay_domains covers subdomains; the recipient map still applies.
    assert_eq!(decide(&i, "x@sub.example.com"), "550 5.1.1");
    assert_eq!(decide(&i, "x@example.org"), "554 5.7.1");
    let c = compile(&i.objects(), &CompileOptions::default());
    assert!(c.reports.iter().all(|r| r.is_ready()), "{:?}", c.reports);
}

#[test]
fn without_a_recipient_map_a_relay_domain_accepts_everyone_and_the_default_route_is_mx() {
    let i = run(
        "relay_domains = example.com\nvirtual_alias_maps = hash:/v\n",
        &[("/v", "ann@example.com ann@elsewhere.example\n")],
    );
    let types: Vec<_> = i
        .spaces
        .iter()
        .map(|s| (s.spec.domain.as_str(), s.spec.r#type.map(|t| t.as_str())))
        .collect();
    assert_eq!(
        types,
        [
            ("example.com", Some("InternalRelay")),
            ("*.example.com", Some("ExternalRelay"))
        ]
    );
    assert_eq!(decide(&i, "joe@example.com"), "forward MX joe@example.com");
    // As Postfix would, a relay domain goes by its MX, likely back to this
    // relay: check says so.
    let c = compile(&i.objects(), &CompileOptions::default());
    let mx = c.report(routing::crd::Kind::SmtpConnector, "mx").unwrap();
    assert_eq!(mx.conditions[1].reason, "MxForAcceptedDomain");
    assert_eq!(
        decide(&i, "ann@example.com"),
        "forward MX ann@elsewhere.example"
    );
}

#[test]
fn virtual_alias_domains_alias_domains_and_what_cannot_be_said() {
    let i = run(
        "virtual_alias_maps = hash:/v regexp:/r\nrelayhost = [mail.isp.example]\nmydestination =\n",
        &[(
            "/v",
            "example.com anything\n\
             example.org anything\n\
             @example.org @example.com\n\
             ann@example.com ann@mbx.example.net\n\
             self@example.com self@example.com\n\
             team@example.com ann@example.com, bob@example.com\n\
             pipe@example.com |/usr/bin/procmail\n\
             @example.com catchall@example.net\n\
             postmaster root@example.com\n\
             far@elsewhere.example x@example.net\n",
        )],
    );
    assert_eq!(
        decide(&i, "ann@example.com"),
        "forward [mail.isp.example] ann@mbx.example.net"
    );
    assert_eq!(
        decide(&i, "ann@example.org"),
        "forward [mail.isp.example] ann@mbx.example.net"
    );
    // Postfix accepts, then bounces it (unknown in a virtual alias domain).
    assert_eq!(decide(&i, "self@example.com"), "550 5.1.1");
    assert_eq!(decide(&i, "nobody@example.com"), "550 5.1.1");
    let skipped: Vec<String> = i.skipped.iter().map(ToString::to_string).collect();
    assert_eq!(
        skipped,
        [
            "/v:5: self@example.com self@example.com: an address of a virtual alias domain that aliases to itself: Postfix accepts it, then bounces it (User unknown); mailroute refuses it at RCPT",
            "/v:6: team@example.com ann@example.com, bob@example.com: 2 targets: a MailContact has one",
            "/v:7: pipe@example.com |/usr/bin/procmail: |/usr/bin/procmail is not an address (a pipe, file or :include: list is not a route)",
            "/v:8: @example.com catchall@example.net: a catch-all to an address: a MailContact has its own addresses, not a whole domain's",
            "/v:9: postmaster root@example.com: a bare local part: Postfix applies it to its local domains (mydestination), which mailroute does not deliver to",
            "/v:10: far@elsewhere.example x@example.net: elsewhere.example is neither a relay domain nor a virtual alias domain here: Postfix applies it only to mail it relays for its own clients",
            "main.cf:1: virtual_alias_maps = … regexp:/r: a regular-expression map: its patterns cannot be turned into objects",
        ]
    );
}

#[test]
fn transport_keys_become_connector_patterns_and_unroutable_transports_are_reported() {
    let i = run(
        "relay_domains = example.com\ntransport_maps = hash:/t\nmydestination =\n",
        &[(
            "/t",
            "example.com smtp:[10.0.0.1]\n\
             .example.com relay:[10.0.0.2]:2525\n\
             eu.example.com :[10.0.0.3]\n\
             bad.example.com error:5.1.1 no such domain\n\
             user@example.com smtp:[10.0.0.4]\n\
             example.com smtp:[10.0.0.9]\n\
             * smtp:\n",
        )],
    );
    assert_eq!(
        decide(&i, "a@example.com"),
        "forward [10.0.0.1] a@example.com"
    );
    assert_eq!(
        decide(&i, "a@x.example.com"),
        "forward [10.0.0.2]:2525 a@x.example.com"
    );
    assert_eq!(
        decide(&i, "a@eu.example.com"),
        "forward [10.0.0.3] a@eu.example.com"
    );
    let skipped: Vec<String> = i.skipped.iter().map(|s| s.why.clone()).collect();
    assert_eq!(
        skipped,
        [
            "error: refuses or defers on purpose; mailroute has no such connector",
            "a per-recipient transport: route that recipient with a MailContact whose target is in a domain a connector serves",
            "a duplicate key: the first one counts",
        ]
    );
}

#[test]
fn the_same_input_gives_the_same_bytes() {
    let a = gateway().documents();
    let b = gateway().documents();
    assert_eq!(a, b);
    let names: Vec<&str> = a.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        names,
        [
            "addressspace-any-example-com.yaml",
            "addressspace-example-com.yaml",
            "smtpconnector-10-0-0-11.yaml",
            "smtpconnector-10-0-0-12-2525.yaml",
            "smtpconnector-mx.yaml",
            "mailcontact-ann-example-com.yaml",
            "mailcontact-ann-mbx-example-com.yaml",
            "mailcontact-bob-example-com.yaml",
            "mailcontact-info-example-com.yaml",
            "mailcontact-old-example-com.yaml",
        ]
    );
}

/// The issue's gateway: a regexp alias map beside the one given with
/// `--virtual`, local delivery (`mydestination`, `alias_maps`) and
/// `mynetworks`. Nothing of it may vanish without a line in the summary,
/// and the summary says that the imported objects refuse `gw.example.org`'s
/// postmaster, whom Postfix delivered itself.
#[test]
fn what_is_not_imported_is_listed_with_its_line_and_local_mail_refused_is_named() {
    let main_cf = "mydestination = $myhostname, gw.example.org, localhost\n\
         alias_maps = hash:/etc/aliases\n\
         mynetworks = 127.0.0.0/8 10.0.0.0/8\n\
         relay_domains = example.org\n\
         relay_recipient_maps = hash:/r\n\
         virtual_alias_maps = hash:/etc/postfix/virtual regexp:/etc/postfix/virtual.re\n\
         transport_maps = hash:/t\n";
    let files: HashMap<&str, &str> = HashMap::from([
        ("virtual", "info@example.org ann@example.org\n"),
        ("/r", "ann@example.org OK\n"),
        ("/t", "example.org smtp:[10.0.0.11]\n"),
    ]);
    let read = |path: &str| {
        files
            .get(path)
            .map(|s| s.to_string())
            .ok_or_else(|| format!("reading {path}: no such file"))
    };
    let overrides = Overrides {
        virtual_alias_maps: Some("virtual".into()),
        ..Overrides::default()
    };
    let i = import("main.cf", main_cf, &overrides, &read, Some("mail")).unwrap();
    assert_eq!(
        decide(&i, "info@example.org"),
        "forward [10.0.0.11] ann@example.org"
    );
    let summary = i.summary();
    let lines: Vec<&str> = summary.lines().skip(1).collect();
    assert_eq!(
        lines,
        [
            "note: postmaster@gw.example.org, which Postfix delivers itself (mydestination, main.cf:1), would be refused by the imported objects (550 5.1.1 Recipient address rejected: User unknown)",
            "skipped main.cf:1: mydestination = $myhostname, gw.example.org, localhost: not imported: mail to these domains is delivered by Postfix itself (local(8): alias_maps, local users); mailroute delivers to no mailbox: route them to the server that does",
            "skipped main.cf:2: alias_maps = hash:/etc/aliases: not imported: aliases of the mydestination domains; `mailroute import sendmail --aliases FILE --local-domain DOMAIN` imports an aliases file",
            "skipped main.cf:3: mynetworks = 127.0.0.0/8 10.0.0.0/8: not imported: clients here may relay to any domain: give them a SendingGrant (spec.networks) or the relay's --relay-networks",
            "skipped main.cf:6: virtual_alias_maps = … regexp:/etc/postfix/virtual.re: a regular-expression map: its patterns cannot be turned into objects",
        ]
    );
}

/// Left at Postfix's defaults, local delivery is on: listed as such.
#[test]
fn postfix_defaults_for_local_delivery_are_listed() {
    let i = run("relay_domains = example.com\n", &[]);
    let skipped: Vec<String> = i.skipped.iter().map(|s| s.entry.clone()).collect();
    assert_eq!(
        skipped,
        [
            "mydestination = $myhostname, localhost.$mydomain, localhost",
            "alias_maps = hash:/etc/aliases",
        ]
    );
    assert_eq!(i.skipped[0].origin.to_string(), "(Postfix default)");
    // `$myhostname` is the machine's name: no domain to check.
    assert!(i.notes.is_empty(), "{:?}", i.notes);
}
