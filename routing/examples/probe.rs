use routing::fixtures::organisation;
use routing::{CompileOptions, compile};
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
fn main() {
    let o = organisation(100_000, 100, 1000);
    for _ in 0..8 {
        let t = std::time::Instant::now();
        let c = compile(&o, &CompileOptions::default());
        let e = routing::table::encode(c.table());
        eprintln!("{:?}", t.elapsed());
        drop((c, e));
    }
}
