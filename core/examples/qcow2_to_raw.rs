//! Converts a qcow2 image to a raw one with `stratus_core::qcow2`, the way the volume import
//! does, for timing against `qemu-img convert -f qcow2 -O raw IN OUT`.
//!
//! `cargo build --release -p stratus-core --example qcow2_to_raw`, then
//! `target/release/examples/qcow2_to_raw [--dense] [--threads N] IN OUT`: by default OUT is
//! written sparse (holes for zeros, as qemu-img writes it); `--dense` streams every byte
//! through `copy_to_raw` instead; `--threads` sets how many threads inflate compressed
//! clusters (default: the processors, at most 4). Neither syncs (qemu-img does not either).

use std::fs::File;
use std::io::BufWriter;
use std::process::ExitCode;

use stratus_core::qcow2::Qcow2;

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut dense = false;
    let mut threads = None;
    while args.len() > 2 {
        match args[0].as_str() {
            "--dense" => dense = true,
            "--threads" if args.len() > 3 => match args.remove(1).parse() {
                Ok(n) => threads = Some(n),
                Err(_) => args.clear(),
            },
            _ => args.clear(),
        }
        if !args.is_empty() {
            args.remove(0);
        }
    }
    let [input, output] = args.as_slice() else {
        eprintln!("usage: qcow2_to_raw [--dense] [--threads N] IN OUT");
        return ExitCode::from(2);
    };
    let run = || -> std::io::Result<(u64, u64)> {
        let mut image = Qcow2::open(File::open(input)?)?;
        if let Some(n) = threads {
            image.set_inflate_threads(n);
        }
        // A new file, as the import's temporary file is (see `write_sparse`).
        match std::fs::remove_file(output) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let out = File::create_new(output)?;
        let written = if dense {
            image.copy_to_raw(BufWriter::with_capacity(1 << 20, out))?
        } else {
            image.write_sparse(&out)?
        };
        Ok((image.virtual_size(), written))
    };
    match run() {
        Ok((size, written)) => {
            println!("{output}: virtual size {size} bytes, {written} bytes written");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("qcow2_to_raw: {input}: {e}");
            ExitCode::FAILURE
        }
    }
}
