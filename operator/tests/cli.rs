//! The `mailroute` command-line contract, run as a user runs it: the real
//! binary on the repository's examples and on bad input.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn mailroute(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailroute"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("mailroute runs")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `(action, connector or "code enhanced", recipient)` from `trace -o json`.
fn trace(ns: &str, address: &str, relay: bool) -> (String, String, String) {
    let mut args = vec!["trace", "-f", "examples/", "-n", ns, address, "-o", "json"];
    if relay {
        args.push("--relay-allowed");
    }
    let out = mailroute(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json(&out);
    let action = v["action"].as_str().unwrap().to_owned();
    if action == "forward" {
        (
            action,
            v["connector"].as_str().unwrap().into(),
            v["recipient"].as_str().unwrap().into(),
        )
    } else {
        let r = &v["reply"];
        (
            action,
            format!("{} {}", r["code"], r["enhanced"].as_str().unwrap()),
            String::new(),
        )
    }
}

fn fwd(c: &str, r: &str) -> (String, String, String) {
    ("forward".into(), c.into(), r.into())
}

fn rep(code: &str) -> (String, String, String) {
    let action = if code.starts_with('5') {
        "reject"
    } else {
        "defer"
    };
    (action.into(), code.into(), String::new())
}

#[test]
fn check_passes_on_the_examples() {
    let out = mailroute(&["check", "-f", "examples/", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json(&out);
    let objects = v["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 29);
    for o in objects {
        let types: Vec<&str> = o["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            ["Ready", "LoopRisk", "AuthoritativenessConflict"],
            "{o}"
        );
        assert_eq!(o["conditions"][0]["status"], "True", "{o}");
        for key in ["kind", "name"] {
            assert!(o[key].is_string());
        }
        for c in o["conditions"].as_array().unwrap() {
            assert!(c["reason"].is_string() && c["message"].is_string());
        }
    }
}

#[test]
fn examples_trace_as_their_readme_says() {
    // examples/README.md states these outcomes.
    assert_eq!(
        trace("alias-table", "ann@example.com", false),
        fwd("mbx1", "ann@mbx1.example.com")
    );
    assert_eq!(
        trace("alias-table", "Bob.Marsh@example.com", false),
        fwd("mbx2", "bob@mbx2.example.com")
    );
    assert_eq!(
        trace("alias-table", "carol@example.com", false),
        rep("550 5.1.1")
    );
    assert_eq!(
        trace("alias-table", "someone@other.org", false),
        rep("554 5.7.1")
    );
    assert_eq!(
        trace("alias-table", "someone@other.org", true),
        fwd("internet", "someone@other.org")
    );
    assert_eq!(
        trace("domain-reroute", "jane@cpandl.net", false),
        fwd("mailbox-server", "jane@mbx.adatum.com")
    );
    assert_eq!(
        trace("domain-reroute", "JANE@internal.adatum.com", false),
        fwd("mailbox-server", "jane@mbx.adatum.com")
    );
    assert_eq!(
        trace("domain-reroute", "nobody@cpandl.org", false),
        rep("550 5.1.1")
    );
    assert_eq!(
        trace("shared-space", "ann@example.com", false),
        fwd("exchange", "ann@exchange.example.com")
    );
    assert_eq!(
        trace("shared-space", "joe@example.com", false),
        fwd("unix", "joe@example.com")
    );
    assert_eq!(
        trace("mail-switch", "internetuser@xo.one", false),
        fwd("remote-domain", "internetUser@remote.domain")
    );
    assert_eq!(
        trace("mail-switch", "other@xo.one", false),
        rep("550 5.1.1")
    );
    assert_eq!(
        trace("most-specific", "x@eu.corp.example", true),
        fwd("connector-b", "x@eu.corp.example")
    );
    assert_eq!(
        trace("most-specific", "x@sub.eu.corp.example", true),
        fwd("connector-a", "x@sub.eu.corp.example")
    );
    assert_eq!(
        trace("most-specific", "x@us.corp.example", true),
        fwd("connector-a", "x@us.corp.example")
    );
    assert_eq!(
        trace("most-specific", "x@corp.example", true),
        fwd("internet", "x@corp.example")
    );
    assert_eq!(
        trace("most-specific", "x@eu.corp.example", false),
        rep("554 5.7.1")
    );
    assert_eq!(
        trace("gateway", "Ann.Smith@example.com", false),
        fwd("mailbox-server", "Ann.Smith@example.com")
    );
    assert_eq!(
        trace("gateway", "postmaster@example.com", false),
        fwd("mailbox-server", "ann@example.com")
    );
    assert_eq!(
        trace("gateway", "nobody@example.com", false),
        rep("550 5.1.1")
    );
}

#[test]
fn trace_json_has_the_contract_fields() {
    let out = mailroute(&[
        "trace",
        "-f",
        "examples/",
        "-n",
        "most-specific",
        "x@eu.corp.example",
        "--relay-allowed",
        "-o",
        "json",
    ]);
    let v = json(&out);
    assert_eq!(v["hosts"], serde_json::json!(["[10.5.0.2]", "[10.5.0.3]"]));
    assert!(v["steps"].as_array().unwrap().len() >= 2);
    assert!(v.get("reply").is_none());
    let out = mailroute(&[
        "trace",
        "-f",
        "examples/",
        "-n",
        "alias-table",
        "not an address",
        "-o",
        "json",
    ]);
    let v = json(&out);
    assert_eq!(v["action"], "reject");
    assert_eq!(v["reply"]["code"], 501);
    assert_eq!(v["reply"]["enhanced"], "5.1.3");
    assert!(v.get("connector").is_none());
}

#[test]
fn trace_text_reads_like_a_story() {
    let out = mailroute(&[
        "trace",
        "-f",
        "examples/",
        "-n",
        "domain-reroute",
        "jane@cpandl.net",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(
            "Resolving jane@cpandl.net:\n  1. cpandl.net is accepted by AddressSpace/cpandl-net"
        ),
        "{text}"
    );
    assert!(
        text.ends_with(
            "=> forward to [10.1.0.5] via SmtpConnector/mailbox-server as <jane@mbx.adatum.com>\n"
        ),
        "{text}"
    );
}

#[test]
fn trace_needs_one_namespace() {
    let out = mailroute(&["trace", "-f", "examples/", "ann@example.com"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("choose one with --namespace"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_reports_problems_and_exits_1() {
    let out = mailroute(&[
        "check",
        "-f",
        "examples/broken/conflicts.yaml",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    let reason = |kind: &str, name: &str, i: usize| -> String {
        let o = v["objects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["kind"] == kind && o["name"] == name)
            .unwrap();
        format!(
            "{}/{}",
            o["conditions"][i]["status"].as_str().unwrap(),
            o["conditions"][i]["reason"].as_str().unwrap()
        )
    };
    assert_eq!(reason("AddressSpace", "adatum-b", 2), "True/DuplicateClaim");
    assert_eq!(
        reason("AddressSpace", "adatum-a", 2),
        "True/SharedAuthoritativeSpace"
    );
    assert_eq!(
        reason("AddressSpace", "partner", 2),
        "True/RelayWithoutRoute"
    );
    assert_eq!(
        reason("AddressSpace", "shared", 1),
        "True/MxForAcceptedDomain"
    );
    assert_eq!(
        reason("MailContact", "jo-second", 0),
        "False/DuplicateAddress"
    );
    assert_eq!(reason("MailContact", "lost", 0), "False/NoRoute");
    assert_eq!(
        reason("RecipientPolicy", "surnames", 0),
        "False/TemplateIncomplete"
    );
    assert_eq!(reason("AddressSpace", "broken", 0), "False/InvalidSpec");

    let out = mailroute(&["check", "-f", "examples/broken/rewrite-cycle.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("RewriteCycle: MailContact/alice → MailContact/bob → MailContact/alice"),
        "{text}"
    );
}

#[test]
fn self_addresses_reveal_forwarding_to_self() {
    let file = "examples/broken/forwards-to-self.yaml";
    let out = mailroute(&["check", "-f", file]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "without --self the relay cannot know"
    );
    let out = mailroute(&[
        "check",
        "-f",
        file,
        "--self",
        "mailroute-relay.mail.svc.cluster.local",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    let unix = v["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "unix")
        .unwrap();
    assert_eq!(unix["conditions"][1]["reason"], "ForwardsToSelf");
    let out = mailroute(&[
        "trace",
        "-f",
        file,
        "--self",
        "mailroute-relay.mail.svc.cluster.local",
        "joe@example.com",
        "-o",
        "json",
    ]);
    assert_eq!(json(&out)["reply"]["enhanced"], "4.4.6");
}

fn temp_manifest(name: &str, text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let p = path.to_str().unwrap().to_owned();
    (dir, p)
}

#[test]
fn bad_input_exits_2_naming_file_and_line() {
    let cases = [
        (
            "apiVersion: mailroute.io/v1alpha1\nkind: MailContact\nmetadata: {name: a}\nspec:\n  targetAddress: [unclosed\n",
            ":6:",
            "invalid YAML",
        ),
        (
            "# a comment\n---\napiVersion: mailroute.io/v1alpha1\nkind: MailContact\nmetadata: {name: a}\nspec: {targetAdress: a@b.c}\n",
            ":6:",
            "MailContact/a: unknown field spec.targetAdress (did you mean targetAddress?)",
        ),
        (
            "apiVersion: mailroute.io/v1alpha1\nkind: MailContact\nmetadata: {name: a}\nspec: {targetAddress: 5, proxyAddresses: x}\n",
            ":4:",
            "MailContact/a: spec.targetAddress: invalid type: integer `5`, expected a string",
        ),
        (
            "apiVersion: mailroute.io/v1alpha1\nkind: MailContact\nmetadata: {}\nspec: {targetAddress: a@b.c}\n",
            ":3:",
            "metadata.name",
        ),
        (
            "apiVersion: mailroute.io/v1beta9\nkind: MailContact\nmetadata: {name: a}\n",
            ":1:",
            "unsupported apiVersion",
        ),
        (
            "apiVersion: mailroute.io/v1alpha1\nkind: MailThing\nmetadata: {name: a}\n",
            ":2:",
            "unknown kind MailThing",
        ),
        ("just: a map\n", ":1:", "not a Kubernetes object"),
        // A syntax error in the third document: its own line, once (not
        // the document's start with "at line 4" after it).
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: y}\n---\napiVersion: mailroute.io/v1alpha1\nkind: MailContact\nmetadata:\n  name: ann\n spec: [\n",
            ":13:",
            "invalid YAML: did not find expected key (column 2)",
        ),
        (
            "apiVersion: mailroute.io/v1alpha1\nkind: MailContact\nmetadata: {name: a}\nspec: {targetAddress: a@b.c}\n---\napiVersion: mailroute.io/v1alpha1\nkind: MailContact\nmetadata: {name: a}\nspec: {targetAddress: a@b.c}\n",
            ":8:",
            "MailContact/a is defined twice (first at",
        ),
    ];
    for (text, line, message) in cases {
        let (_dir, path) = temp_manifest("m.yaml", text);
        let out = mailroute(&["check", "-f", &path]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{message}: {err}");
        assert!(
            err.contains(&format!("{path}{line}")),
            "expected {path}{line} in {err}"
        );
        assert!(err.contains(message), "expected {message:?} in {err}");
        assert!(!err.contains("panicked"));
        assert!(!err.contains(" at line "), "one line named: {err}");
    }
    let out = mailroute(&["check", "-f", "/nonexistent/file.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/nonexistent/file.yaml"));
}

/// Every problem of every file is reported, each at its field's own line,
/// in file order: a user fixes them all in one round, not one per run.
#[test]
fn every_problem_is_reported_at_its_fields_line() {
    let first = "\
apiVersion: mailroute.io/v1alpha1
kind: SmtpConnector
metadata:
  name: out
spec:
  addressSpaces:
  - domain: a.example
  - domain: b.example
    cots: 2
  smartHosts: [\"[10.0.0.1]\"]
  tls:
    mode: Required
    verfy: false
---
apiVersion: v1
kind: List
items:
- apiVersion: mailroute.io/v1alpha1
  kind: AddressSpace
  metadata: {name: a}
  spec:
    domain: a.example
    typ: Authoritative
";
    let second = "apiVersion: mailroute.io/v1alpha1\nkind: MailContact\nmetadata:\n  name: Ann\nspec:\n  targetAddress: ann@a.example\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("1.yaml"), first).unwrap();
    std::fs::write(dir.path().join("2.yaml"), second).unwrap();
    let out = mailroute(&["check", "-f", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let d = dir.path().display();
    let expected = format!(
        "{d}/1.yaml:9: SmtpConnector/out: unknown field spec.addressSpaces[1].cots (did you mean cost?)\n\
         {d}/1.yaml:13: SmtpConnector/out: unknown field spec.tls.verfy (did you mean verify?)\n\
         {d}/1.yaml:23: AddressSpace/a: unknown field spec.typ (did you mean type?)\n\
         {d}/2.yaml:4: MailContact: metadata.name \"Ann\" is not a valid name (lower-case letters, digits, '-' and '.', at most 253)\n\
         mailroute: 4 problem(s) in the manifests\n"
    );
    assert_eq!(stderr(&out), expected);
}

/// A misspelt namespace or a path without mailroute objects is an error,
/// never "0 objects, all ready" (a CI job must not pass on a typo).
#[test]
fn a_namespace_or_path_without_objects_is_an_error() {
    let names = "(namespaces in examples/: alias-table, domain-reroute, gateway, mail-switch, most-specific, shared-space)";
    for args in [
        &["check", "-f", "examples/", "-n", "alias-tabel"][..],
        &[
            "trace",
            "-f",
            "examples/",
            "-n",
            "alias-tabel",
            "ann@example.com",
        ],
        &[
            "compile",
            "-f",
            "examples/",
            "-n",
            "alias-tabel",
            "-o",
            "/nonexistent/never-written",
        ],
    ] {
        let out = mailroute(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&out).ends_with(&format!(
                "mailroute: no mailroute.io objects in namespace \"alias-tabel\" {names}\n"
            )),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let (_dir, path) = temp_manifest(
        "other.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    );
    let out = mailroute(&["check", "-f", &path]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).ends_with(&format!("mailroute: no mailroute.io objects in {path}\n")),
        "{}",
        stderr(&out)
    );
    let empty = tempfile::tempdir().unwrap();
    let out = mailroute(&["check", "-f", empty.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no mailroute.io objects in"));
}

/// `-n NS` takes the objects that name no namespace too, as `kubectl apply
/// -n NS` would put them there.
#[test]
fn objects_without_a_namespace_join_the_chosen_one() {
    let text = "apiVersion: mailroute.io/v1alpha1\nkind: AddressSpace\nmetadata: {name: a}\nspec: {domain: a.example, type: Authoritative}\n---\napiVersion: mailroute.io/v1alpha1\nkind: MailContact\nmetadata: {name: ann, namespace: prod}\nspec: {targetAddress: ann@b.example, proxyAddresses: [ann@a.example]}\n";
    let (_dir, path) = temp_manifest("m.yaml", text);
    let out = mailroute(&["check", "-f", &path, "-n", "prod", "-o", "json"]);
    let names: Vec<String> = json(&out)["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["a", "ann"]);
}

#[test]
fn other_kinds_are_ignored_with_a_note() {
    let text = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: mailroute.io/v1alpha1\n  kind: AddressSpace\n  metadata: {name: x}\n  spec: {domain: x.example, type: Authoritative}\n";
    let (_dir, path) = temp_manifest("mixed.yml", text);
    // Other kinds are normal in a manifests directory: nothing said about
    // them unless asked for.
    let out = mailroute(&["check", "-f", &path, "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    assert_eq!(json(&out)["objects"][0]["name"], "x");
    let out = mailroute(&["check", "-f", &path]);
    assert!(
        stdout(&out).ends_with("\n1 object(s): 1 ready, 0 not ready\n"),
        "{}",
        stdout(&out)
    );
    assert_eq!(stderr(&out), "");
    let out = mailroute(&["check", "-f", &path, "--verbose", "-o", "json"]);
    assert_eq!(
        stderr(&out),
        "info: 1 object(s) of other kinds left aside: v1 Service/web\n"
    );
}

#[test]
fn compile_writes_the_table_the_loader_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("table");
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::write(out_dir.join("addresses-007-of-008.zst"), b"stale").unwrap();
    std::fs::write(out_dir.join("keep.txt"), b"not ours").unwrap();
    let out = mailroute(&[
        "compile",
        "-f",
        "examples/",
        "-n",
        "alias-table",
        "-o",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("wrote 3 file(s)"), "{}", stderr(&out));
    let mut names: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "addresses-000-of-001.zst",
            "base.zst",
            "keep.txt",
            "manifest.json"
        ]
    );
    let files: std::collections::BTreeMap<String, Vec<u8>> = names
        .iter()
        .map(|n| (n.clone(), std::fs::read(out_dir.join(n)).unwrap()))
        .collect();
    let (manifest, table) = routing::table::load(|k| files.get(k).map(Vec::as_slice)).unwrap();
    assert_eq!(manifest.counts.addresses, 4);
    let routing = routing::RoutingTable::new(table);
    assert!(
        matches!(routing.resolve("ann.lee@example.com", false), routing::Decision::Forward { recipient, .. } if recipient == "ann@mbx1.example.com")
    );
}

/// `crds/` is generated by `mailroute crds`; this fails when it drifts.
#[test]
fn crds_directory_and_the_charts_match_the_code() {
    let out = mailroute(&["crds"]);
    assert_eq!(out.status.code(), Some(0));
    let generated = String::from_utf8(out.stdout).unwrap();
    for file in [
        "crds/mailroute.io.yaml",
        "charts/mailroute/crds/mailroute.io.yaml",
    ] {
        let committed = std::fs::read_to_string(repo().join(file)).unwrap();
        assert!(
            generated == committed,
            "{file} is stale: run `cargo run --bin mailroute -- crds | tee crds/mailroute.io.yaml > charts/mailroute/crds/mailroute.io.yaml`"
        );
    }
    assert_eq!(
        generated.matches("kind: CustomResourceDefinition").count(),
        6
    );
}

#[test]
fn import_postfix_writes_objects_check_passes_and_names_what_it_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("objects");
    let args = |out: Option<&str>| {
        let mut a = vec![
            "import",
            "postfix",
            "--main-cf",
            "examples/postfix/main.cf",
            "--virtual",
            "examples/postfix/virtual",
            "--transport",
            "examples/postfix/transport",
            "--relay-recipients",
            "examples/postfix/relay_recipients",
            "-n",
            "gateway",
        ];
        if let Some(o) = out {
            a.extend(["-o", o]);
        }
        a.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let to_dir = args(Some(out_dir.to_str().unwrap()));
    let out = mailroute(&to_dir.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("skipped examples/postfix/virtual:8: team@example.com"),
        "{}",
        stderr(&out)
    );
    let files = std::fs::read_dir(&out_dir).unwrap().count();
    assert_eq!(files, 17);
    let check = mailroute(&["check", "-f", out_dir.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));

    // To stdout: the same objects, as one stream, byte for byte each time.
    let stdout_args = args(None);
    let stdout_args: Vec<&str> = stdout_args.iter().map(String::as_str).collect();
    let once = mailroute(&stdout_args);
    let again = mailroute(&stdout_args);
    assert_eq!(once.stdout, again.stdout);
    let text = String::from_utf8(once.stdout).unwrap();
    assert_eq!(text.matches("---\n").count(), 17);
    assert!(text.contains("namespace: gateway"));

    // A map main.cf names that is not there: the file, exit 2.
    let out = mailroute(&["import", "postfix", "--main-cf", "examples/postfix/main.cf"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("reading /etc/postfix/virtual: No such file"),
        "{}",
        stderr(&out)
    );
}

/// A field the schema refuses is named by file and line, as the reader's
/// errors are, and a trailing dot is called that.
#[test]
fn invalid_spec_names_file_line_and_field() {
    let text = "apiVersion: mailroute.io/v1alpha1\nkind: AddressSpace\nmetadata: {name: a}\nspec: {domain: a.example, type: Authoritative}\n---\napiVersion: mailroute.io/v1alpha1\nkind: MailContact\nmetadata: {name: ann}\nspec:\n  targetAddress: ann@b.example.\n  proxyAddresses: [ann@a.example]\n";
    let (_dir, path) = temp_manifest("m.yaml", text);
    let out = mailroute(&["check", "-f", &path]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let expected = format!(
        "    {path}:10: InvalidSpec: spec.targetAddress \"ann@b.example.\": invalid domain: trailing dot (mail domains are written without it)\n"
    );
    assert!(stdout(&out).contains(&expected), "{}", stdout(&out));
}
