//! `mailroute import csvde`: exports as csvde writes them (quoted DNs with
//! commas, doubled quotes, BOMs, CRLF, UTF-16 from `csvde -u`), bad rows
//! named by line, and the contacts resolved by the routing core.

use operator::import::Imported;
use operator::import::csvde::{OTHER_PROXIES_ANNOTATION, import};

const HEADER: &str =
    "objectClass,dn,cn,sn,givenName,displayName,proxyAddresses,targetAddress,mail,mailNickname";

fn run(text: &str) -> Imported {
    import(
        "export.csv",
        text.as_bytes(),
        &["example.com".into()],
        Some("mail"),
    )
    .unwrap()
}

fn skipped(i: &Imported) -> Vec<String> {
    i.skipped.iter().map(ToString::to_string).collect()
}

#[test]
fn a_contact_row_becomes_a_mail_contact_with_its_primary_first() {
    let i = run(&format!(
        "\u{feff}{HEADER}\r\ncontact,\"CN=Smith\\, Ann,OU=Contacts,DC=example,DC=com\",\"Smith, Ann\",Smith,Ann,\"Ann \"\"the boss\"\" Smith\",smtp:ann.smith@example.com;SMTP:Ann@Example.com;X500:/o=Example/cn=ann;SIP:ann@example.com,SMTP:ann@mbx1.example.com,ann@example.com,ann\r\n"
    ));
    assert!(i.skipped.is_empty(), "{:?}", skipped(&i));
    let c = &i.contacts[0];
    assert_eq!(c.metadata.name.as_deref(), Some("ann"));
    assert_eq!(
        c.spec.target_address.as_deref(),
        Some("ann@mbx1.example.com")
    );
    assert_eq!(
        c.spec.proxy_addresses,
        ["Ann@Example.com", "ann.smith@example.com"]
    );
    assert_eq!(
        c.spec.display_name.as_deref(),
        Some("Ann \"the boss\" Smith")
    );
    assert_eq!(
        (
            c.spec.given_name.as_deref(),
            c.spec.surname.as_deref(),
            c.spec.alias.as_deref()
        ),
        (Some("Ann"), Some("Smith"), Some("ann"))
    );
    let annotations = c.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        annotations[OTHER_PROXIES_ANNOTATION],
        "X500:/o=Example/cn=ann;SIP:ann@example.com"
    );
    assert_eq!(annotations["mailroute.io/imported-from"], "export.csv:2");
    assert_eq!(i.spaces[0].spec.domain, "example.com");
}

#[test]
fn bad_rows_are_named_by_line_and_skipped() {
    let i = run(&format!(
        "{HEADER}\n\
         contact,\"CN=Multi\nLine,DC=example\",Multi,,,,SMTP:multi@example.com,SMTP:multi@mbx.example.com,,multi\n\
         contact,CN=Short,Short,only,four\n\
         contact,CN=Fax,Fax,,,,,FAX:+1 555 0100,,fax\n\
         contact,CN=NoTarget,NoTarget,,,,SMTP:nt@example.com,,,nt\n\
         group,CN=Sales,Sales,,,,SMTP:sales@example.com,,,sales\n\
         contact,CN=Ok,Ok,,,,SMTP:ok@example.com,SMTP:ok@mbx.example.com,,\n"
    ));
    assert_eq!(
        skipped(&i),
        [
            "export.csv:4: Short: 5 fields where the header has 10",
            "export.csv:5: Fax: targetAddress \"FAX:+1 555 0100\" is not an SMTP address (fax)",
            "export.csv:6: NoTarget: a contact without targetAddress",
            "export.csv:7: Sales: objectClass group without targetAddress: a mailbox or group, not a contact",
        ]
    );
    let names: Vec<_> = i
        .contacts
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    // No mailNickname: the cn.
    assert_eq!(names, ["multi", "ok"]);
}

#[test]
fn utf16_from_csvde_u_and_names_made_unique_and_reported() {
    let text = format!(
        "{HEADER}\r\ncontact,\"CN=Zoë Müller\",Zoë Müller,Müller,Zoë,,SMTP:zoe@example.com,SMTP:zoe@mbx.example.com,,\r\n\
         contact,\"CN=Zoë Müller 2\",Zoë Müller,,,,SMTP:zoe2@example.com,SMTP:zoe2@mbx.example.com,,\r\n"
    );
    let mut bytes = vec![0xFF, 0xFE];
    for unit in text.encode_utf16() {
        bytes.extend(unit.to_le_bytes());
    }
    let i = import("u.csv", &bytes, &[], None).unwrap();
    let names: Vec<_> = i
        .contacts
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["zoe-muller", "zoe-muller-2"]);
    assert_eq!(i.contacts[0].spec.surname.as_deref(), Some("Müller"));
    // A name taken twice is reported, not renamed silently.
    assert!(
        i.summary().contains(
            "note: u.csv:3: \"Zoë Müller\" is also the name of the contact at u.csv:2: this one is MailContact/zoe-muller-2"
        ),
        "{}",
        i.summary()
    );
    // Without --authoritative the summary says where the addresses are.
    assert!(
        i.summary()
            .contains("note: addresses in domains no --authoritative names: example.com (2)"),
        "{}",
        i.summary()
    );
}

#[test]
fn what_cannot_be_read_is_an_error_naming_the_file() {
    let e = import("bad.csv", b"objectClass,cn\ncontact,x\n", &[], None).unwrap_err();
    assert!(e.starts_with("bad.csv: no targetAddress column"), "{e}");
    let e = import(
        "latin1.csv",
        b"cn,targetAddress\nZo\xeb,z@example.com\n",
        &[],
        None,
    )
    .unwrap_err();
    assert!(
        e.starts_with("latin1.csv: not UTF-8 (export with csvde -u"),
        "{e}"
    );
}
