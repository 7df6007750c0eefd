//! Finds what the Postfix differential test needs: Postfix itself (the
//! Debian package postfix) and root, to start a private instance. Without
//! them that test is compiled as ignored with the reason;
//! `MAILROUTE_REQUIRE_INTEROP=1` (set by .ci/run) makes a missing one a
//! build failure instead.

use std::path::Path;

fn find(tool: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/usr/bin"])
        .any(|dir| Path::new(dir).join(tool).is_file())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

fn main() {
    let require = std::env::var("MAILROUTE_REQUIRE_INTEROP").is_ok_and(|v| v == "1");
    println!("cargo::rerun-if-env-changed=MAILROUTE_REQUIRE_INTEROP");
    println!("cargo::rerun-if-env-changed=PATH");
    for dir in ["/usr/sbin", "/usr/bin"] {
        if Path::new(dir).is_dir() {
            println!("cargo::rerun-if-changed={dir}");
        }
    }
    println!("cargo::rustc-check-cfg=cfg(has_postfix_instance)");
    let tools = ["postfix", "postmap"].iter().all(|t| find(t));
    if tools && is_root() {
        println!("cargo::rustc-cfg=has_postfix_instance");
    } else if require {
        panic!(
            "MAILROUTE_REQUIRE_INTEROP=1 but the Postfix differential test cannot run: {}",
            if tools {
                "it needs root"
            } else {
                "apt-get install postfix"
            }
        );
    }
}
