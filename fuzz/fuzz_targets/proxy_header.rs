//! The PROXY protocol v2 header parser must refuse, never panic on, any
//! bytes a client sends first.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = relay::proxy::client_of(data);
});
