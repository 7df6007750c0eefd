//! Arbitrary AUTH exchanges over TLS (port 465) never panic a session;
//! every reply is a well-formed SMTP reply line, and a password never
//! comes back in one.

mod common;

use proptest::prelude::*;
use relay::identity::AuthSettings;
use relay::session::{self, Port};
use relay::{Shared, tls::Tls};
use routing::fixtures::*;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

const SECRET: &str = "s3cret-Pa55";

struct Fixture {
    _dir: tempfile::TempDir,
    tls: Arc<Tls>,
    cert: CertificateDer<'static>,
    auth: AuthSettings,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // A static is never dropped, so neither is this directory: it goes
        // in cargo's scratch directory for tests, not in /tmp.
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["relay.test".into()]).unwrap();
        std::fs::write(dir.path().join("tls.crt"), ck.cert.pem()).unwrap();
        std::fs::write(dir.path().join("tls.key"), ck.signing_key.serialize_pem()).unwrap();
        let users = dir.path().join("passwords/users");
        std::fs::create_dir_all(&users).unwrap();
        let hash = bcrypt::hash(SECRET, 4).unwrap();
        std::fs::write(users.join("htpasswd"), format!("alice:{hash}\n")).unwrap();
        let tls = Tls::new(dir.path().join("tls.crt"), dir.path().join("tls.key")).unwrap();
        let auth = AuthSettings {
            passwords_dir: dir.path().join("passwords"),
            failure_delay: Duration::ZERO,
            failure_limit: 1000,
            ..AuthSettings::default()
        };
        Fixture {
            cert: ck.cert.der().clone(),
            _dir: dir,
            tls,
            auth,
        }
    })
}

fn shared() -> Arc<Shared> {
    let f = fixture();
    let mut o = common::one_route("ann@example.com.invalid", "[127.0.0.1]:1");
    o.grants.push(grant(
        "users",
        vec![password_secret("users")],
        &["*"],
        &["alice@example.com"],
        Some(1000),
    ));
    let tables = Arc::new(relay::table::Tables::default());
    tables.set(common::table_of(&o));
    let mut config = common::config();
    config.relay_networks = Vec::new();
    config.auth = f.auth.clone();
    Shared::build(config, tables, Some(f.tls.clone()), None)
}

fn b64(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .encode(s)
        .into_bytes()
}

fn arb_input() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"EHLO x\r\n".to_vec()),
        Just(b"AUTH PLAIN\r\n".to_vec()),
        Just(b"AUTH LOGIN\r\n".to_vec()),
        Just(b"AUTH LOGIN YWxpY2U=\r\n".to_vec()),
        Just(
            [
                b"AUTH PLAIN ".to_vec(),
                b64(&format!("\0alice\0{SECRET}")),
                b"\r\n".to_vec()
            ]
            .concat()
        ),
        Just([b64(SECRET), b"\r\n".to_vec()].concat()),
        Just([b64(&format!("alice\0alice\0{SECRET}")), b"\r\n".to_vec()].concat()),
        Just(b"AUTH PLAIN =\r\n".to_vec()),
        Just(b"*\r\n".to_vec()),
        Just(b"=\r\n".to_vec()),
        Just(b"MAIL FROM:<alice@example.com>\r\n".to_vec()),
        Just(b"MAIL FROM:<mallory@example.com>\r\n".to_vec()),
        Just(b"RCPT TO:<x@elsewhere.test>\r\n".to_vec()),
        Just(b"RSET\r\n".to_vec()),
        Just(vec![b'A'; 13_000]),
        prop::collection::vec(any::<u8>(), 0..64),
    ];
    prop::collection::vec(piece, 0..16).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn arbitrary_auth_exchanges_never_panic_the_session(input in arb_input()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let output = rt.block_on(async {
            let (client, server) = tokio::io::duplex(1 << 20);
            let task = tokio::spawn(session::run_on(server, "192.0.2.7".parse().unwrap(), shared(), Port::Submissions));
            let mut roots = RootCertStore::empty();
            roots.add(fixture().cert.clone()).unwrap();
            let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
            let config = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions().unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = ServerName::try_from("relay.test").unwrap();
            let mut tls = TlsConnector::from(Arc::new(config)).connect(name, client).await.unwrap();
            let _ = tls.write_all(&input).await;
            let _ = tls.shutdown().await;
            let mut out = Vec::new();
            let _ = tls.read_to_end(&mut out).await;
            task.await.expect("session does not panic");
            out
        });
        let text = String::from_utf8(output).expect("replies are UTF-8");
        prop_assert!(!text.contains(SECRET));
        for line in text.split_terminator("\r\n") {
            let code = line.get(..3).unwrap_or("");
            prop_assert!(code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()), "bad reply line {:?}", line);
            prop_assert!(matches!(line.as_bytes().get(3), None | Some(b' ') | Some(b'-')), "bad reply line {:?}", line);
        }
    }
}
