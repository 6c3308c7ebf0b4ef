//! Seeds a database with many real keys for benchmarks:
//! `cargo run --release -p gatehouse-store --features testing --example seed_keys -- DB_URL_OR_SQLITE_PATH COUNT [OUT_FILE]`
//! Writes the secrets, one per line, to OUT_FILE when given (bench scripts pick keys from it).

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().expect("usage: seed_keys DB COUNT [OUT_FILE]");
    let count: usize = args.next().and_then(|c| c.parse().ok()).expect("COUNT must be a number");
    let out = args.next();
    let start = std::time::Instant::now();
    let secrets = gatehouse_store::testing::seed_keys(&url, count, gatehouse_core::Environment::Live).await;
    eprintln!("seeded {count} keys in {:.1}s", start.elapsed().as_secs_f64());
    if let Some(path) = out {
        std::fs::write(path, secrets.join("\n")).expect("write secrets");
    }
}
