//! Sign + verify of a 1 KiB payload on one core (issue target ≥ 500,000/s), against HMAC-SHA256 of the
//! same bytes alone as the baseline. Two forms: with the secret string on each call (the key schedule
//! is recomputed every time), and with prepared `Key`s, as the delivery worker and a receiver holding its
//! secret use them. `cargo bench -p gatehouse-webhook`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hmac::{Hmac, Mac};
use sha2::Sha256;

fn bench(c: &mut Criterion) {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let body = vec![b'x'; 1024];
    let t = 1_767_225_600;
    let mut g = c.benchmark_group("webhook_1KiB");
    g.throughput(Throughput::Elements(1));
    g.bench_function("baseline_hmac", |b| {
        b.iter(|| {
            let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
            m.update(&body);
            std::hint::black_box(m.finalize().into_bytes())
        })
    });
    g.bench_function("sign_and_verify", |b| {
        b.iter(|| {
            let h = gatehouse_webhook::sign_header(&[secret], t, &body);
            std::hint::black_box(gatehouse_webhook::verify(&h, &body, &[secret], t, 300).is_ok())
        })
    });
    let keys = [gatehouse_webhook::Key::new(secret)];
    g.bench_function("sign_and_verify_prepared_key", |b| {
        b.iter(|| {
            let h = gatehouse_webhook::sign_header_with(&keys, t, &body);
            std::hint::black_box(gatehouse_webhook::verify_with(&h, &body, &keys, t, 300).is_ok())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
