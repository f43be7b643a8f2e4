//! Compiles the subset of etcd's API the metadata benchmark's etcd side calls
//! (`examples/etcd_load.rs`), with the vendored `protoc` the proto crate uses too.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    println!("cargo:rerun-if-changed=proto");
    tonic_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_protos(&["proto/etcd.proto"], &["proto"])?;
    Ok(())
}
