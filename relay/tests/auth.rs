//! SMTP AUTH and SendingGrants on real sockets (docs/relay.md, "Who may
//! send"): AUTH only over TLS, password users of a grant's Secret, a
//! ServiceAccount token checked with TokenReview (a mocked API server that
//! checks the exact request), every refusal with its RFC reply; Python's
//! smtplib and swaks as clients.

mod common;

use common::*;
use relay::identity::AuthSettings;
use relay::session::Port;
use relay::{Config, Shared};
use routing::Objects;
use routing::fixtures::*;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

const ALICE_PASSWORD: &str = "correct horse battery staple";

/// example.com is ours (ann); everything else goes to `out` through a `*`
/// connector. Grants: the password users of Secret smtp-users may send as
/// app@example.com to partner.net at 3 messages a minute; ServiceAccount
/// apps/billing as billing@example.com anywhere.
fn org(out: &Sink) -> Objects {
    let mut o = one_route("ann@mbx.example.com", &out.smart_host());
    o.connectors
        .push(connector("internet", &[("*", 5)], &[&out.smart_host()]));
    o.grants.push(grant(
        "app",
        vec![password_secret("smtp-users")],
        &["partner.net"],
        &["app@example.com"],
        Some(3),
    ));
    o.grants.push(grant(
        "billing",
        vec![service_account("apps/billing")],
        &["*"],
        &["billing@example.com"],
        None,
    ));
    o
}

struct Setup {
    _dir: tempfile::TempDir,
    cert: CertificateDer<'static>,
    smtp: SocketAddr,
    submission: SocketAddr,
    submissions: SocketAddr,
    shared: Arc<Shared>,
}

fn settings(dir: &Path) -> AuthSettings {
    AuthSettings {
        passwords_dir: dir.join("passwords"),
        failure_limit: 3,
        failure_delay: Duration::from_millis(10),
        record_principal: true,
        ..AuthSettings::default()
    }
}

async fn start(
    out: &Sink,
    tokens: Option<Arc<dyn relay::identity::TokenReviewer>>,
    tune: impl FnOnce(&mut Config),
) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["relay.test".into()]).unwrap();
    std::fs::write(dir.path().join("tls.crt"), ck.cert.pem()).unwrap();
    std::fs::write(dir.path().join("tls.key"), ck.signing_key.serialize_pem()).unwrap();
    let users = dir.path().join("passwords/smtp-users");
    std::fs::create_dir_all(&users).unwrap();
    let hash = bcrypt::hash(ALICE_PASSWORD, 4).unwrap();
    std::fs::write(
        users.join("htpasswd"),
        format!("alice:{hash}\nbroken:$2y$oops\n"),
    )
    .unwrap();

    let tls = relay::tls::Tls::new(dir.path().join("tls.crt"), dir.path().join("tls.key")).unwrap();
    let mut config = config();
    // 127.0.0.1 is not a relay network here: only grants let it relay.
    config.relay_networks = Vec::new();
    config.auth = settings(dir.path());
    tune(&mut config);
    let tables = Arc::new(relay::table::Tables::default());
    tables.set(table_of(&org(out)));
    let shared = Shared::build(config, tables, Some(tls), tokens);
    let mut addrs = Vec::new();
    for port in [Port::Smtp, Port::Submission, Port::Submissions] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(listener.local_addr().unwrap());
        tokio::spawn(relay::server::serve_on(listener, shared.clone(), port));
    }
    Setup {
        _dir: dir,
        cert: ck.cert.der().clone(),
        smtp: addrs[0],
        submission: addrs[1],
        submissions: addrs[2],
        shared,
    }
}

fn connector_trusting(cert: &CertificateDer<'static>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// A line client over any stream.
struct Line<S>(BufReader<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> Line<S> {
    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.0.read_line(&mut line).await.unwrap() == 0 {
                return all;
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.0
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.reply().await
    }
}

type Tls = Line<tokio_rustls::client::TlsStream<TcpStream>>;

/// Connected, EHLO'd and upgraded with STARTTLS (port 25 or 587).
async fn starttls(s: &Setup, addr: SocketAddr) -> (Tls, String) {
    let mut plain = Line(BufReader::new(TcpStream::connect(addr).await.unwrap()));
    assert!(plain.reply().await.starts_with("220"));
    let ehlo = plain.cmd("EHLO client.test").await;
    assert!(!ehlo.contains("AUTH"), "never offered in cleartext: {ehlo}");
    assert!(plain.cmd("STARTTLS").await.starts_with("220"));
    let tcp = plain.0.into_inner();
    let name = ServerName::try_from("relay.test").unwrap();
    let tls = connector_trusting(&s.cert)
        .connect(name, tcp)
        .await
        .unwrap();
    let mut c = Line(BufReader::new(tls));
    let ehlo = c.cmd("EHLO client.test").await;
    (c, ehlo)
}

fn plain(user: &str, password: &str) -> String {
    base64_plain(user, password)
}

#[tokio::test]
async fn auth_is_offered_only_over_tls_and_refused_in_cleartext() {
    let out = Sink::start(SinkBehaviour::default()).await;
    let s = start(&out, None, |_| {}).await;
    let mut c = Client::connect(s.smtp).await;
    let ehlo = c.cmd("EHLO client.test").await;
    assert!(
        ehlo.contains("250-STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    let r = c
        .cmd(&format!("AUTH PLAIN {}", plain("alice", ALICE_PASSWORD)))
        .await;
    assert!(r.starts_with("538 5.7.11 "), "{r}");
    let (_tls, ehlo) = starttls(&s, s.smtp).await;
    assert!(ehlo.contains("250-AUTH PLAIN LOGIN"), "{ehlo}");
}

#[tokio::test]
async fn a_password_user_sends_as_its_sender_to_its_domains_only() {
    let out = Sink::start(SinkBehaviour::default()).await;
    let s = start(&out, None, |_| {}).await;
    let (mut c, _) = starttls(&s, s.submission).await;
    let r = c
        .cmd(&format!("AUTH PLAIN {}", plain("alice", ALICE_PASSWORD)))
        .await;
    assert!(r.starts_with("235 2.7.0 "), "{r}");
    assert!(
        c.cmd("AUTH LOGIN").await.starts_with("503 5.5.1 "),
        "AUTH twice"
    );
    let r = c.cmd("MAIL FROM:<ceo@example.com>").await;
    assert!(r.starts_with("553 5.7.1 Sender address not allowed"), "{r}");
    assert!(
        c.cmd("MAIL FROM:<App@Example.com>")
            .await
            .starts_with("250")
    );
    let r = c.cmd("RCPT TO:<someone@gmail.test>").await;
    assert!(r.starts_with("554 5.7.1 "), "not a granted domain: {r}");
    assert!(c.cmd("RCPT TO:<bob@partner.net>").await.starts_with("250"));
    assert!(
        c.cmd("AUTH PLAIN =").await.starts_with("503 5.5.1 "),
        "mid-transaction"
    );
    assert!(c.cmd("DATA").await.starts_with("354"));
    let r = c
        .cmd("From: App <app@example.com>\r\nSubject: hi\r\n\r\nHello.\r\n.")
        .await;
    assert!(r.starts_with("250"), "{r}");
    let got = out.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_to, ["bob@partner.net"]);
    let received = String::from_utf8_lossy(&got[0].data);
    assert!(received.contains("with ESMTPSA id"), "{received}");
    assert!(
        received.contains("(authenticated as user:alice with PLAIN)"),
        "{received}"
    );
}

#[tokio::test]
async fn a_header_from_the_grant_does_not_allow_refuses_the_message() {
    let out = Sink::start(SinkBehaviour::default()).await;
    let s = start(&out, None, |_| {}).await;
    let (mut c, _) = starttls(&s, s.submission).await;
    assert!(
        c.cmd(&format!("AUTH PLAIN {}", plain("alice", ALICE_PASSWORD)))
            .await
            .starts_with("235")
    );
    assert!(
        c.cmd("MAIL FROM:<app@example.com>")
            .await
            .starts_with("250")
    );
    assert!(c.cmd("RCPT TO:<bob@partner.net>").await.starts_with("250"));
    assert!(c.cmd("DATA").await.starts_with("354"));
    let r = c
        .cmd("Received: from x by y; Thu, 1 Jan 2026 00:00:00 +0000\r\nFrom: \"app@example.com\" <ceo@example.com>\r\n\r\nPay now.\r\n.")
        .await;
    assert!(r.starts_with("553 5.7.1 From header not allowed"), "{r}");
    assert!(out.messages().is_empty(), "nothing reached the next hop");
}

#[tokio::test]
async fn submission_wants_tls_then_auth_before_mail() {
    let out = Sink::start(SinkBehaviour::default()).await;
    let s = start(&out, None, |_| {}).await;
    let mut c = Client::connect(s.submission).await;
    c.cmd("EHLO client.test").await;
    let r = c.cmd("MAIL FROM:<app@example.com>").await;
    assert!(
        r.starts_with("530 5.7.0 Must issue a STARTTLS command first"),
        "{r}"
    );
    let (mut c, _) = starttls(&s, s.submission).await;
    let r = c.cmd("MAIL FROM:<app@example.com>").await;
    assert!(r.starts_with("530 5.7.0 Authentication required"), "{r}");
}

#[tokio::test]
async fn without_auth_only_accepted_domains_are_reachable() {
    let out = Sink::start(SinkBehaviour::default()).await;
    let s = start(&out, None, |_| {}).await;
    let mut c = Client::connect(s.smtp).await;
    c.cmd("EHLO client.test").await;
    assert!(
        c.cmd("MAIL FROM:<anyone@elsewhere.test>")
            .await
            .starts_with("250")
    );
    let r = c.cmd("RCPT TO:<bob@partner.net>").await;
    assert!(r.starts_with("554 5.7.1 Relay access denied"), "{r}");
    assert!(c.cmd("RCPT TO:<ann@example.com>").await.starts_with("250"));
}

#[tokio::test]
async fn malformed_exchanges_get_the_rfc_replies() {
    let out = Sink::start(SinkBehaviour::default()).await;
    let s = start(&out, None, |_| {}).await;
    let (mut c, _) = starttls(&s, s.submission).await;
    let cases = [
        ("AUTH PLAIN !!!notbase64", "501 5.5.2 "),
        ("AUTH CRAM-MD5", "504 5.5.4 "),
        ("AUTH", "501 5.5.2 "),
        ("AUTH PLAIN *", "501 5.0.0 "),
        ("AUTH PLAIN =", "501 5.5.2 "),
    ];
    for (line, want) in cases {
        let r = c.cmd(line).await;
        assert!(r.starts_with(want), "{line}: {r}");
    }
    // LOGIN, cancelled at the password prompt.
    assert_eq!(c.cmd("AUTH LOGIN").await, "334 VXNlcm5hbWU6\r\n");
    assert_eq!(c.cmd("YWxpY2U=").await, "334 UGFzc3dvcmQ6\r\n");
    assert!(c.cmd("*").await.starts_with("501 5.0.0 "));
    // An answer longer than RFC 4954's 12288 octets.
    assert_eq!(c.cmd("AUTH PLAIN").await, "334 \r\n");
    let r = c.cmd(&"A".repeat(13_000)).await;
    assert!(r.starts_with("500 5.5.6 "), "{r}");
    // Still usable: LOGIN done right.
    assert_eq!(c.cmd("AUTH LOGIN YWxpY2U=").await, "334 UGFzc3dvcmQ6\r\n");
    let r = c.cmd(&base64(ALICE_PASSWORD)).await;
    assert!(r.starts_with("235 2.7.0 "), "{r}");
}

fn base64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn repeated_bad_passwords_are_throttled_per_client() {
    let out = Sink::start(SinkBehaviour::default()).await;
    let s = start(&out, None, |_| {}).await;
    let (mut c, _) = starttls(&s, s.submission).await;
    for user in ["alice", "nobody", "broken"] {
        let r = c.cmd(&format!("AUTH PLAIN {}", plain(user, "guess"))).await;
        assert!(r.starts_with("535 5.7.8 "), "{user}: {r}");
    }
    let r = c
        .cmd(&format!("AUTH PLAIN {}", plain("alice", ALICE_PASSWORD)))
        .await;
    assert!(
        r.starts_with("421 4.7.0 Too many failed authentications"),
        "{r}"
    );
    assert_eq!(c.reply().await, "", "closed");
    // A new connection from the same address is refused too, even with
    // the right password.
    let (mut c, _) = starttls(&s, s.smtp).await;
    let r = c
        .cmd(&format!("AUTH PLAIN {}", plain("alice", ALICE_PASSWORD)))
        .await;
    assert!(r.starts_with("421 4.7.0 "), "{r}");
    let metrics = s.shared.metrics.render(&s.shared.tables);
    assert!(
        metrics.contains(r#"mailroute_relay_auth_total{mechanism="PLAIN",result="invalid"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"mailroute_relay_auth_total{mechanism="PLAIN",result="throttled"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_grant_s_rate_is_enforced_at_mail() {
    let out = Sink::start(SinkBehaviour::default()).await;
    let s = start(&out, None, |_| {}).await;
    let (mut c, _) = starttls(&s, s.submission).await;
    assert!(
        c.cmd(&format!("AUTH PLAIN {}", plain("alice", ALICE_PASSWORD)))
            .await
            .starts_with("235")
    );
    for _ in 0..3 {
        assert!(
            c.cmd("MAIL FROM:<app@example.com>")
                .await
                .starts_with("250")
        );
        assert!(c.cmd("RSET").await.starts_with("250"));
    }
    let r = c.cmd("MAIL FROM:<app@example.com>").await;
    assert!(
        r.starts_with("450 4.7.1 Message rate limit exceeded"),
        "{r}"
    );
}

/// ServiceAccount tokens (the `kube` feature: TokenReview).
#[cfg(feature = "kube")]
mod tokens {
    use super::*;
    use serde_json::json;

    type Seen = Arc<std::sync::Mutex<Vec<testkit::Recorded>>>;

    /// An API server answering TokenReviews: `token` is apps/billing's for
    /// the audience mailroute; anything else is not authenticated. Every
    /// request is recorded as it comes (the relay keeps its client).
    fn token_api(token: &'static str) -> (kube::Client, Seen) {
        let seen: Seen = Default::default();
        let record = seen.clone();
        let (client, _task) = testkit::mock_api(
            Box::new(move |_, r| {
                record.lock().unwrap().push(r.clone());
                let valid = r.body["spec"]["token"] == token;
                let status = if valid {
                    json!({"authenticated": true, "audiences": ["mailroute"],
                           "user": {"username": "system:serviceaccount:apps:billing", "uid": "u1"}})
                } else {
                    json!({"authenticated": false, "error": "invalid bearer token"})
                };
                (
                    200,
                    json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                             "spec": r.body["spec"].clone(), "status": status}),
                )
            }),
            "mailroute",
        );
        (client, seen)
    }

    const TOKEN: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6IngifQ.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6YXBwczpiaWxsaW5nIn0.c2lnbmF0dXJl";

    #[tokio::test]
    async fn a_service_account_token_is_reviewed_once_per_cache_lifetime() {
        let out = Sink::start(SinkBehaviour::default()).await;
        let (client, api) = token_api(TOKEN);
        let reviewer = relay::identity::tokens::kube_api::KubeTokenReview {
            client,
            audience: "mailroute".into(),
        };
        let s = start(&out, Some(Arc::new(reviewer)), |_| {}).await;
        for _ in 0..3 {
            let (mut c, _) = starttls(&s, s.submission).await;
            let r = c
                .cmd(&format!("AUTH PLAIN {}", plain("billing", TOKEN)))
                .await;
            assert!(r.starts_with("235 2.7.0 "), "{r}");
            assert!(
                c.cmd("MAIL FROM:<billing@example.com>")
                    .await
                    .starts_with("250")
            );
            assert!(
                c.cmd("RCPT TO:<customer@anywhere.test>")
                    .await
                    .starts_with("250")
            );
        }
        let (mut c, _) = starttls(&s, s.submission).await;
        let forged = format!("{TOKEN}x");
        let r = c
            .cmd(&format!("AUTH PLAIN {}", plain("billing", &forged)))
            .await;
        assert!(r.starts_with("535 5.7.8 "), "{r}");
        assert_eq!(s.shared.identity.token_reviews.get(), 2);
        let seen = api.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "one review per token: {seen:#?}");
        assert_eq!(seen[0].method, "POST");
        assert_eq!(seen[0].path, "/apis/authentication.k8s.io/v1/tokenreviews?");
        assert_eq!(
            seen[0].body["spec"],
            json!({"token": TOKEN, "audiences": ["mailroute"]})
        );
    }
}

/// A slow reviewer (200 ms an answer), counting what it is asked: the
/// relay, not the API server, is under test here.
struct SlowReviewer(std::sync::atomic::AtomicUsize);

impl relay::identity::TokenReviewer for SlowReviewer {
    fn review<'a>(
        &'a self,
        _: &'a str,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = relay::identity::tokens::Review> + Send + 'a>,
    > {
        Box::pin(async move {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(Some(relay::identity::ServiceAccountName {
                namespace: "apps".into(),
                name: "billing".into(),
            }))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_logging_in_at_once_with_one_token_share_one_review() {
    let out = Sink::start(SinkBehaviour::default()).await;
    let reviewer = Arc::new(SlowReviewer(Default::default()));
    let s = Arc::new(start(&out, Some(reviewer.clone()), |_| {}).await);
    let logins: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                let (mut c, _) = starttls(&s, s.submission).await;
                c.cmd(&format!(
                    "AUTH PLAIN {}",
                    plain("billing", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")
                ))
                .await
            })
        })
        .collect();
    for login in logins {
        let r = login.await.unwrap();
        assert!(r.starts_with("235 2.7.0 "), "{r}");
    }
    assert_eq!(reviewer.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(s.shared.identity.token_reviews.get(), 1);
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_smtplib_logs_in_with_starttls_and_is_held_to_its_grant() {
    let out = Sink::start(SinkBehaviour::default()).await;
    let s = start(&out, None, |_| {}).await;
    let port = s.submission.port();
    let script = format!(
        r#"
import smtplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
with smtplib.SMTP("127.0.0.1", {port}) as s:
    s.starttls(context=ctx)
    s.login("alice", "{ALICE_PASSWORD}")
    s.sendmail("app@example.com", ["bob@partner.net"], "From: app@example.com\r\nSubject: py\r\n\r\nfrom smtplib\r\n")
    try:
        s.sendmail("ceo@example.com", ["bob@partner.net"], "Subject: x\r\n\r\nx\r\n")
        print("NOT REFUSED")
    except smtplib.SMTPSenderRefused as e:
        print("refused", e.smtp_code, e.smtp_error.decode())
"#
    );
    let run = blocking(move || {
        Command::new("python3")
            .args(["-c", &script])
            .output()
            .unwrap()
    })
    .await;
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.starts_with("refused 553 5.7.1 Sender address not allowed"),
        "{stdout}"
    );
    assert_eq!(out.messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_swaks_tls),
    ignore = "needs swaks with TLS: apt-get install swaks libio-socket-ssl-perl"
)]
async fn swaks_authenticates_on_587_and_465() {
    let out = Sink::start(SinkBehaviour::default()).await;
    let s = start(&out, None, |_| {}).await;
    for (addr, tls) in [(s.submission, "--tls"), (s.submissions, "--tls-on-connect")] {
        let server = addr.to_string();
        let run = blocking(move || {
            Command::new("swaks")
                .args(["--server", &server, tls, "--auth", "PLAIN"])
                .args(["--auth-user", "alice", "--auth-password", ALICE_PASSWORD])
                .args(["--from", "app@example.com", "--to", "bob@partner.net"])
                .args(["--header", "From: app@example.com", "--body", "from swaks"])
                .output()
                .unwrap()
        })
        .await;
        let text = String::from_utf8_lossy(&run.stdout);
        assert!(run.status.success(), "{tls}: {text}");
        assert!(
            text.contains("235 2.7.0 Authentication successful"),
            "{text}"
        );
    }
    assert_eq!(out.messages().len(), 2);
    let server = s.submission.to_string();
    let run = blocking(move || {
        Command::new("swaks")
            .args(["--server", &server, "--tls", "--auth", "LOGIN"])
            .args(["--auth-user", "alice", "--auth-password", "wrong"])
            .args(["--from", "app@example.com", "--to", "bob@partner.net"])
            .output()
            .unwrap()
    })
    .await;
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(!run.status.success());
    assert!(
        text.contains("535 5.7.8 Authentication credentials invalid"),
        "{text}"
    );
}

/// A client certificate from the relay's client CA identifies the client
/// to a grant's `clientCertificate` (subject or DNS name); without one, or
/// with one from another CA, it is anonymous.
#[tokio::test]
async fn a_verified_client_certificate_is_a_principal() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let out = Sink::start(SinkBehaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let issue_ca = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        (cert, Issuer::new(params, key))
    };
    let (ca, issuer) = issue_ca("mail clients");
    let (_, other_issuer) = issue_ca("somebody else");
    let client = |issuer: &Issuer<'_, KeyPair>| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["Scanner.Example.com".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Example");
        params
            .distinguished_name
            .push(DnType::CommonName, "scanner");
        let cert = params.signed_by(&key, issuer).unwrap();
        (
            cert.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    };
    let server = rcgen::generate_simple_self_signed(vec!["relay.test".into()]).unwrap();
    std::fs::write(dir.path().join("tls.crt"), server.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("tls.key"),
        server.signing_key.serialize_pem(),
    )
    .unwrap();
    std::fs::write(dir.path().join("ca.crt"), ca.pem()).unwrap();
    let tls = relay::tls::Tls::with_client_ca(
        dir.path().join("tls.crt"),
        dir.path().join("tls.key"),
        Some(dir.path().join("ca.crt")),
    )
    .unwrap();
    let mut o = org(&out);
    o.grants.push(grant(
        "by-subject",
        vec![certificate_subject("CN=scanner, O=Example")],
        &["partner.net"],
        &[],
        None,
    ));
    let mut config = config();
    config.relay_networks = Vec::new();
    let tables = Arc::new(relay::table::Tables::default());
    tables.set(table_of(&o));
    let relay = Relay::start_shared(Shared::build(config, tables, Some(tls), None)).await;

    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(server.cert.der().clone()).unwrap();
    let connector = |identity: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>| {
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone());
        let config = match identity {
            Some((cert, key)) => builder.with_client_auth_cert(vec![cert], key).unwrap(),
            None => builder.with_no_client_auth(),
        };
        TlsConnector::from(Arc::new(config))
    };
    let rcpt_after_starttls = |connector: TlsConnector| async move {
        let mut plain = Line(BufReader::new(
            TcpStream::connect(relay.addr).await.unwrap(),
        ));
        plain.reply().await;
        plain.cmd("EHLO client.test").await;
        assert!(plain.cmd("STARTTLS").await.starts_with("220"));
        let name = ServerName::try_from("relay.test").unwrap();
        let Ok(tls) = connector.connect(name, plain.0.into_inner()).await else {
            return "handshake refused".to_owned();
        };
        let mut c = Line(BufReader::new(tls));
        c.cmd("EHLO client.test").await;
        assert!(
            c.cmd("MAIL FROM:<scans@example.com>")
                .await
                .starts_with("250")
        );
        c.cmd("RCPT TO:<bob@partner.net>").await
    };
    let r = rcpt_after_starttls(connector(Some(client(&issuer)))).await;
    assert!(r.starts_with("250"), "the subject's grant: {r}");
    let r = rcpt_after_starttls(connector(None)).await;
    assert!(r.starts_with("554 5.7.1 "), "no certificate: {r}");
    // Another CA's certificate: TLS 1.3 finishes the client's side of the
    // handshake first, so the refusal (bad_certificate / unknown CA) shows
    // at the first read.
    let other = tokio::spawn(rcpt_after_starttls(connector(Some(client(&other_issuer))))).await;
    assert!(
        other.as_ref().is_err() || other.as_ref().is_ok_and(|r| !r.starts_with("250")),
        "another CA's certificate: {other:?}"
    );
}

/// Postfix as an AUTH client: a Postfix whose relayhost is the relay's
/// submission port, with SASL (Cyrus's PLAIN/LOGIN plugins) and TLS
/// required, delivers as the grant's password user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_postfix_sasl),
    ignore = "needs a private Postfix with SASL: apt-get install postfix libsasl2-modules, and root"
)]
async fn postfix_logs_in_on_587_and_relays_as_its_granted_sender() {
    use testkit::mta::{Postfix, SMTP_CLIENT};
    let out = Sink::start(SinkBehaviour::default()).await;
    let s = start(&out, None, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let relayhost = format!("[127.0.0.1]:{}", s.submission.port());
    let postfix = Postfix::configure(
        dir.path(),
        free_port(),
        &format!(
            "myhostname = postfix.test\n\
             mynetworks = 127.0.0.0/8\n\
             relayhost = {relayhost}\n\
             smtp_sasl_auth_enable = yes\n\
             smtp_sasl_password_maps = hash:{}/conf/sasl_passwd\n\
             smtp_sasl_security_options = noanonymous\n\
             smtp_sasl_tls_security_options = noanonymous\n\
             smtp_tls_security_level = encrypt\n",
            dir.path().display()
        ),
        // TLS in Postfix's SMTP client needs its TLS manager.
        &format!("{SMTP_CLIENT}tlsmgr unix - - n 1000? 1 tlsmgr\n"),
    );
    postfix.map(
        "sasl_passwd",
        &[format!("{relayhost} alice:{ALICE_PASSWORD}")],
    );
    postfix.start();
    let mut c = Client::connect(([127, 0, 0, 1], postfix.port).into()).await;
    assert_eq!(code(&c.cmd("EHLO client.test").await), "250");
    c.envelope_again("app@example.com", &["bob@partner.net"])
        .await;
    let done = c
        .data("From: app@example.com\r\nSubject: via postfix\r\n\r\nHello.\r\n")
        .await;
    assert_eq!(code(&done), "250", "{done}");
    let start = std::time::Instant::now();
    while out.messages().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "nothing arrived; Postfix's log:\n{}",
            postfix.maillog()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let got = out.messages();
    assert_eq!(got[0].rcpt_to, ["bob@partner.net"]);
    let data = String::from_utf8_lossy(&got[0].data);
    assert!(data.contains("with ESMTPSA"), "{data}");
    assert!(
        postfix.maillog().contains("status=sent"),
        "{}",
        postfix.maillog()
    );
}
