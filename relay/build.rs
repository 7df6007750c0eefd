//! Finds the real MTA tools the interop tests drive (Postfix's smtp-source
//! and smtp-sink, swaks). A test whose tool is missing is compiled as
//! ignored with a reason naming the Debian package, so `cargo test` shows
//! the skip instead of passing silently; `MAILROUTE_REQUIRE_INTEROP=1`
//! (set by .ci/run) turns a missing tool into a build failure.

use std::path::Path;

const TOOLS: &[(&str, &str, &[&str])] = &[
    (
        "has_postfix_tools",
        "postfix",
        &["smtp-source", "smtp-sink"],
    ),
    ("has_swaks", "swaks", &["swaks"]),
];

fn find(tool: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/usr/bin"])
        .any(|dir| Path::new(dir).join(tool).is_file())
}

fn main() {
    let require = std::env::var("MAILROUTE_REQUIRE_INTEROP").is_ok_and(|v| v == "1");
    println!("cargo::rerun-if-env-changed=MAILROUTE_REQUIRE_INTEROP");
    println!("cargo::rerun-if-env-changed=PATH");
    // Installing a package changes these directories.
    for dir in ["/usr/sbin", "/usr/bin"] {
        if Path::new(dir).is_dir() {
            println!("cargo::rerun-if-changed={dir}");
        }
    }
    for (cfg, package, tools) in TOOLS {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if tools.iter().all(|t| find(t)) {
            println!("cargo::rustc-cfg={cfg}");
        } else if require {
            panic!(
                "MAILROUTE_REQUIRE_INTEROP=1 but {tools:?} not found: apt-get install {package}"
            );
        }
    }
}
