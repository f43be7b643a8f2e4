//! Storage hot paths: hashing on the PUT path (MD5 for the ETag in the proxy, BLAKE3 and
//! CRC32 blocks on every replica), a storage device's write path for a 4 KiB object
//! (record with the body inline, one synced RocksDB write) and a 1 MiB object (direct-I/O
//! body file, fsync, rename, directory fsync, then the synced record), and listing a
//! 10,000-object container.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use md5::Digest;
use rocksdb::WriteBatch;
use stratus_proto::storage as pb;
use stratus_storage_node::bodyfile::TmpBody;
use stratus_storage_node::db::{self, Kind, Target};
use stratus_storage_node::device::{write_sync, Device, CF_OBJECTS};
use stratus_storage_node::diskfile::{body_file, name_hash, object_key, BodyHasher, ObjectRecord};

fn hashing(c: &mut Criterion) {
    let data = vec![7u8; 1 << 20];
    let mut g = c.benchmark_group("hash_1MiB");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("md5", |b| b.iter(|| black_box(md5::Md5::digest(&data))));
    g.bench_function("blake3", |b| b.iter(|| black_box(blake3::hash(&data))));
    g.bench_function("crc32", |b| b.iter(|| black_box(crc32fast::hash(&data))));
    g.bench_function("replica_blake3_and_block_crcs", |b| {
        b.iter(|| {
            let mut h = BodyHasher::new();
            h.update(&data);
            black_box(h.finish())
        })
    });
    g.finish();
}

fn record(name: &str, body: &[u8], inline: bool) -> ObjectRecord {
    let mut h = BodyHasher::new();
    h.update(body);
    let size = h.size;
    let (blake3, block_crcs) = h.finish();
    ObjectRecord {
        name: name.to_string(),
        ts: rand::random::<u32>() as u64 + 1,
        size,
        etag: hex::encode(md5::Md5::digest(body)),
        blake3,
        block_crcs,
        inline: inline.then(|| body.to_vec()),
        ..Default::default()
    }
}

fn write_path(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // On the real disk (not tmpfs), where the fsyncs are real.
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let dev = Device::open("d1", dir.path(), 0).unwrap();
    let mut g = c.benchmark_group("device_write");
    g.sample_size(30);
    let small = vec![1u8; 4096];
    g.throughput(Throughput::Bytes(small.len() as u64));
    g.bench_function("4KiB_inline_synced", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            let name = format!("/a/c/small-{i}");
            let rec = record(&name, &small, true);
            let mut batch = WriteBatch::default();
            dev.batch_put(
                &mut batch,
                CF_OBJECTS,
                &object_key(1, &name_hash(&name)),
                &rec.encode(),
            );
            rt.block_on(write_sync(&dev, batch)).unwrap();
        })
    });
    let big = vec![2u8; 1 << 20];
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("1MiB_file_direct_fsync_rename_synced_record", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            let name = format!("/a/c/big-{i}");
            let hash = name_hash(&name);
            let rec = record(&name, &big, false);
            rt.block_on(async {
                let mut body = TmpBody::create(&dev).unwrap();
                body.push(&big).await.unwrap();
                body.finish(body_file(
                    &dev,
                    stratus_storage_node::device::Space::Object(0),
                    1,
                    &hash,
                    &rec,
                ))
                .await
                .unwrap();
                let mut batch = WriteBatch::default();
                dev.batch_put(&mut batch, CF_OBJECTS, &object_key(1, &hash), &rec.encode());
                write_sync(&dev, batch).await.unwrap();
            });
        })
    });
    g.finish();
}

fn listing(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let dev = Device::open("d1", dir.path(), 0).unwrap();
    let t = Target {
        kind: Kind::Container,
        part: 7,
        account: "AUTH_bench".into(),
        container: "c".into(),
    };
    rt.block_on(async {
        db::put(&dev, &t, 1, &[], None, 0).await.unwrap();
        for i in 0..10_000u64 {
            let row = pb::ObjectRow {
                name: format!("dir{}/object-{i:06}", i % 10),
                ts: 10 + i,
                size: 4096,
                content_type: "application/octet-stream".into(),
                etag: "0123456789abcdef0123456789abcdef".into(),
                deleted: false,
                ct_ts: 0,
            };
            db::object_update(&dev, &t, &row).await.unwrap();
        }
    });
    let mut g = c.benchmark_group("container_listing_10k");
    g.sample_size(20);
    g.bench_function("all_10000_rows", |b| {
        let q = pb::ListRequest {
            limit: 10_000,
            ..Default::default()
        };
        b.iter(|| assert_eq!(black_box(db::list(&dev, &t, &q).unwrap()).len(), 10_000))
    });
    g.bench_function("delimiter_10_subdirs", |b| {
        let q = pb::ListRequest {
            limit: 10_000,
            delimiter: "/".into(),
            ..Default::default()
        };
        b.iter(|| assert_eq!(black_box(db::list(&dev, &t, &q).unwrap()).len(), 10))
    });
    g.finish();
}

criterion_group!(benches, hashing, write_path, listing);
criterion_main!(benches);
