//! Integration tests of the `stratus` binary and the cluster it starts: real meta, storage
//! and proxy processes on loopback, driven over HTTP and by the real `swift` client.

mod common;
mod t10_cli;
mod t20_swift_api;
mod t30_swift_client;
mod t40_failures;
mod t50_concurrency;
mod t60_bench;
mod t70_durability;
mod t71_data_safety;
mod t80_swift_client_extras;
mod t81_swift_extras_http;
mod t82_static_web;
mod t83_symlinks;
mod t84_object_versioning;
mod t85_storage_policies;
mod t90_service;
mod t92_tls;
mod t95_identity;
mod t96_images;
mod t97_volume_io;
mod t98_cinder;
mod t99_compute;
