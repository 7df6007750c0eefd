//! The suite needs a cluster: its tests are compiled as ignored (with the
//! reason) unless MAILROUTE_E2E=1, which `e2e/run.sh` sets.

fn main() {
    println!("cargo::rerun-if-env-changed=MAILROUTE_E2E");
    println!("cargo::rustc-check-cfg=cfg(e2e)");
    if std::env::var("MAILROUTE_E2E").is_ok_and(|v| v == "1") {
        println!("cargo::rustc-cfg=e2e");
    }
}
