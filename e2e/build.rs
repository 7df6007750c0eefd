//! The suite needs a cluster: its tests are compiled as ignored (with the
//! reason) unless `e2e/run.sh` says which cluster it prepared:
//! MAILROUTE_E2E=local (operator and relay as local processes) or
//! MAILROUTE_E2E=cluster (both in the cluster, from the Helm chart).
//! Tests for either mode carry cfg `e2e`; mode-specific ones `e2e_local` or
//! `e2e_cluster`.

fn main() {
    println!("cargo::rerun-if-env-changed=MAILROUTE_E2E");
    println!("cargo::rustc-check-cfg=cfg(e2e, e2e_local, e2e_cluster)");
    match std::env::var("MAILROUTE_E2E").as_deref() {
        Ok("local") => {
            println!("cargo::rustc-cfg=e2e");
            println!("cargo::rustc-cfg=e2e_local");
        }
        Ok("cluster") => {
            println!("cargo::rustc-cfg=e2e");
            println!("cargo::rustc-cfg=e2e_cluster");
        }
        _ => {}
    }
}
