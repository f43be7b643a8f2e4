//! Compiles the .proto files with a vendored `protoc`, so a fresh machine needs no system one.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto");
    tonic_build::configure()
        .build_server(true)
        .build_client(true)
        // Object data is passed along without copying (one buffer shared by every replica).
        .bytes([".stratus.storage.v1"])
        .compile_protos(&["proto/meta.proto", "proto/storage.proto"], &["proto"])?;
    Ok(())
}
