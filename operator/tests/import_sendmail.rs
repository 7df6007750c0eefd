//! `mailroute import sendmail`: aliases(5) for each local domain,
//! virtusertable, mailertable; what cannot be said is listed.

use operator::import::sendmail::{Files, import};
use routing::{CompileOptions, compile};

mod common;
use common::decide;

const ALIASES: &str = "# local aliases\n\
    postmaster: root\n\
    root: ann@mbx.example.com\n\
    team: ann,\n  bob\n\
    prog: \"|/usr/bin/procmail\"\n\
    bob: bob@mbx.example.com\n\
    broken line\n";

#[test]
fn aliases_apply_to_every_local_domain_and_local_targets_resolve_again() {
    let local = ["example.com".to_owned(), "example.org".to_owned()];
    let files = Files {
        aliases: Some(("aliases", ALIASES)),
        virtusertable: Some((
            "virtusertable",
            "@alias.example %1@example.com\njobs@jobs.example bob\n@jobs.example error:nouser 550 no\n",
        )),
        mailertable: Some((
            "mailertable",
            "mbx.example.com esmtp:[10.0.0.1]:[10.0.0.2]\n.example.net smtp:relay.example.net\nlocal.example local:user\n",
        )),
        local_domains: &local,
    };
    let i = import(&files, Some("mail")).unwrap();
    let c = compile(&i.objects(), &CompileOptions::default());
    assert!(c.reports.iter().all(|r| r.is_ready()), "{:?}", c.reports);
    assert_eq!(
        decide(&i, "postmaster@example.org"),
        "forward [10.0.0.1],[10.0.0.2] ann@mbx.example.com"
    );
    assert_eq!(
        decide(&i, "root@example.com"),
        "forward [10.0.0.1],[10.0.0.2] ann@mbx.example.com"
    );
    assert_eq!(
        decide(&i, "bob@alias.example"),
        "forward [10.0.0.1],[10.0.0.2] bob@mbx.example.com"
    );
    assert_eq!(
        decide(&i, "jobs@jobs.example"),
        "forward [10.0.0.1],[10.0.0.2] bob@mbx.example.com"
    );
    assert_eq!(decide(&i, "nobody@jobs.example"), "550 5.1.1");
    let skipped: Vec<String> = i.skipped.iter().map(ToString::to_string).collect();
    assert_eq!(
        skipped,
        [
            "aliases:4: team@example.com ann@example.com, bob@example.com: 2 targets: a MailContact has one",
            "aliases:4: team@example.org ann@example.com, bob@example.com: 2 targets: a MailContact has one",
            "aliases:6: prog: \"|/usr/bin/procmail\": a pipe to a program: not a route",
            "aliases:8: broken line: not `name: value`",
            "mailertable:3: local.example local:user: local: not an SMTP mailer (only smtp, esmtp, smtp8, dsmtp, relay are)",
            "virtusertable:3: @jobs.example error:nouser 550 no: error: refuses on purpose; a recipient without a contact is refused anyway in an Authoritative space",
        ]
    );
}

#[test]
fn aliases_without_a_local_domain_is_an_error_that_says_what_to_give() {
    let files = Files {
        aliases: Some(("aliases", ALIASES)),
        virtusertable: None,
        mailertable: None,
        local_domains: &[],
    };
    let e = import(&files, None).unwrap_err();
    assert!(e.contains("--local-domain DOMAIN"), "{e}");
}
