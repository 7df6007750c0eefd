//! Finds the real MTAs and mail libraries the interop tests drive:
//! Postfix's smtp-source and smtp-sink and swaks; a private Postfix and
//! Exim (each needs root); JavaMail (Jakarta Mail) with a JDK. A test whose
//! peer is missing is compiled as ignored with a reason naming what to
//! install, so `cargo test` shows the skip instead of passing silently;
//! `MAILROUTE_REQUIRE_INTEROP=1` (set by .ci/run) turns a missing one into
//! a build failure.
//!
//! Exim: Debian's exim4 conflicts with postfix as a package, so its binary
//! is taken from `MAILROUTE_EXIM`, the PATH, or where `./test.sh` puts it
//! (`interop/exim/usr/sbin/exim4` under cargo's target directory, see
//! relay/tests/peers/fetch-exim.sh); the tests get its path as
//! `MAILROUTE_EXIM_BIN`.

use std::path::{Path, PathBuf};

fn find(tool: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/usr/bin"])
        .map(|dir| Path::new(dir).join(tool))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

/// The Exim binary: MAILROUTE_EXIM, the PATH, or the one ./test.sh
/// extracted under the target directory (an ancestor of OUT_DIR).
fn exim() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MAILROUTE_EXIM") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    find("exim4").or_else(|| find("exim")).or_else(|| {
        let out = PathBuf::from(std::env::var_os("OUT_DIR")?);
        out.ancestors()
            .map(|dir| dir.join("interop/exim/usr/sbin/exim4"))
            .find(|p| p.is_file())
    })
}

/// The user Debian's Exim binary runs its deliveries as.
fn has_exim_user() -> bool {
    std::fs::read_to_string("/etc/passwd")
        .is_ok_and(|p| p.lines().any(|l| l.starts_with("Debian-exim:")))
}

const JAKARTA: [&str; 2] = [
    "/usr/share/java/jakarta-mail.jar",
    "/usr/share/java/jakarta-activation.jar",
];

fn main() {
    let require = std::env::var("MAILROUTE_REQUIRE_INTEROP").is_ok_and(|v| v == "1");
    println!("cargo::rerun-if-env-changed=MAILROUTE_REQUIRE_INTEROP");
    println!("cargo::rerun-if-env-changed=MAILROUTE_EXIM");
    println!("cargo::rerun-if-env-changed=PATH");
    // Installing a package changes these directories.
    for dir in ["/usr/sbin", "/usr/bin", "/usr/share/java", "/etc/passwd"] {
        if Path::new(dir).is_dir() {
            println!("cargo::rerun-if-changed={dir}");
        }
    }
    let exim = exim();
    if let Some(e) = &exim {
        println!("cargo::rerun-if-changed={}", e.display());
        println!("cargo::rustc-env=MAILROUTE_EXIM_BIN={}", e.display());
    }
    let has = |tools: &[&str]| tools.iter().all(|t| find(t).is_some());
    // swaks speaks TLS through Perl's IO::Socket::SSL (only recommended
    // by Debian's swaks package).
    let perl_tls = std::process::Command::new("perl")
        .args(["-MIO::Socket::SSL", "-e", "1"])
        .status()
        .is_ok_and(|s| s.success());
    // Postfix's SMTP client logs in with Cyrus SASL's plugins.
    let sasl_plugins = [
        "/usr/lib/x86_64-linux-gnu/sasl2",
        "/usr/lib/aarch64-linux-gnu/sasl2",
    ]
    .iter()
    .any(|d| Path::new(d).join("libplain.so").is_file());
    let checks: [(&str, bool, &str); 7] = [
        (
            "has_postfix_tools",
            has(&["smtp-source", "smtp-sink"]),
            "smtp-source and smtp-sink: apt-get install postfix",
        ),
        ("has_swaks", has(&["swaks"]), "swaks: apt-get install swaks"),
        (
            "has_swaks_tls",
            has(&["swaks"]) && perl_tls,
            "swaks with TLS: apt-get install swaks libio-socket-ssl-perl",
        ),
        (
            "has_postfix_instance",
            has(&["postfix", "postmap"]) && is_root(),
            "a private Postfix: apt-get install postfix, and root",
        ),
        (
            "has_postfix_sasl",
            has(&["postfix", "postmap"]) && is_root() && sasl_plugins,
            "a private Postfix with SASL: apt-get install postfix libsasl2-modules, and root",
        ),
        (
            "has_exim",
            exim.is_some() && has_exim_user() && is_root(),
            "a private Exim: relay/tests/peers/fetch-exim.sh (./test.sh runs it), and root",
        ),
        (
            "has_javamail",
            has(&["javac", "java"]) && JAKARTA.iter().all(|j| Path::new(j).is_file()),
            "JavaMail: apt-get install default-jdk-headless libjakarta-mail-java",
        ),
    ];
    for (cfg, found, what) in checks {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if found {
            println!("cargo::rustc-cfg={cfg}");
        } else if require {
            panic!("MAILROUTE_REQUIRE_INTEROP=1 but the interop tests cannot run: {what}");
        }
    }
}
