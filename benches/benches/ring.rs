//! Ring hot paths: rebalancing 2^18 partitions × 3 replicas over 100 devices in 5 zones
//! (first build and after adding 5 devices), loading the binary ring, and lookups.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use stratus_benches::{add_five_devices, hundred_device_builder, T0};
use stratus_core::ring::{object_path, Ring};

fn rebalance(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring_rebalance");
    g.sample_size(10);
    let fresh = hundred_device_builder();
    g.bench_function("first_build_2^18x3_100dev", |b| {
        b.iter_batched(
            || fresh.clone(),
            |mut rb| black_box(rb.rebalance(T0).unwrap()),
            BatchSize::LargeInput,
        )
    });
    let mut built = fresh.clone();
    built.rebalance(T0).unwrap();
    add_five_devices(&mut built);
    g.bench_function("add_5_devices_2^18x3", |b| {
        b.iter_batched(
            || built.clone(),
            |mut rb| black_box(rb.rebalance(T0 + 7200).unwrap()),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn load_and_lookup(c: &mut Criterion) {
    let mut b = hundred_device_builder();
    b.rebalance(T0).unwrap();
    let ring = b.ring().unwrap();
    let bytes = ring.to_bytes();
    let mut g = c.benchmark_group("ring");
    g.sample_size(20);
    g.bench_function("load_2^18x3", |bn| {
        bn.iter(|| black_box(Ring::from_bytes(&bytes).unwrap()))
    });
    let paths: Vec<String> = (0..1024)
        .map(|i| {
            object_path(
                "AUTH_bench",
                Some("photos"),
                Some(&format!("2026/11/img_{i:06}.jpg")),
            )
        })
        .collect();
    g.throughput(Throughput::Elements(paths.len() as u64));
    g.bench_function("lookup_partition_and_primaries", |bn| {
        bn.iter(|| {
            let mut acc = 0u32;
            for p in &paths {
                let part = ring.partition(p);
                acc ^= ring.primary_ids(part)[0];
            }
            black_box(acc)
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("first_two_handoffs", |bn| {
        let mut part = 0u32;
        bn.iter(|| {
            part = (part + 7919) % (1 << 18);
            black_box(ring.handoffs(part).take(2).count())
        })
    });
    g.finish();
}

criterion_group!(benches, rebalance, load_and_lookup);
criterion_main!(benches);
