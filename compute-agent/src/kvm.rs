//! Whether KVM really runs guests here, found out by trying: `/dev/kvm` can exist on a
//! host whose virtualisation cannot run a real guest well (nested or emulated — on a
//! Firecracker microVM, for one, a guest kernel under KVM hangs early and the firmware
//! runs about 17 times slower than under TCG).
//!
//! The probe runs QEMU's firmware (SeaBIOS, with no disk) under KVM and under TCG and
//! times how long each takes to finish its self-test (the `Booting from` / `No bootable
//! device` line on the debug console). KVM is used only if it got there and was not slower
//! than emulation: real hardware virtualisation is several times faster.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// How long the firmware gets to finish under each accelerator.
const PROBE_TIME: Duration = Duration::from_secs(3);

/// `("kvm", None)` when KVM works, else `("qemu", Some(why))`.
pub async fn probe(qemu: &str, scratch: &Path) -> (String, Option<String>) {
    if !Path::new("/dev/kvm").exists() {
        return ("qemu".into(), Some("no /dev/kvm".into()));
    }
    let kvm = post_time(qemu, "kvm", scratch).await;
    let tcg = post_time(qemu, "tcg", scratch).await;
    match (kvm, tcg) {
        (Ok(k), Ok(t)) if k <= t => ("kvm".into(), None),
        (Ok(k), Ok(t)) => (
            "qemu".into(),
            Some(format!(
                "KVM is slower than emulation here (firmware self-test {} ms under KVM, {} ms under TCG)",
                k.as_millis(),
                t.as_millis()
            )),
        ),
        (Ok(_), Err(e)) => ("kvm".into(), Some(format!("TCG probe failed: {e}"))),
        (Err(e), _) => ("qemu".into(), Some(format!("KVM probe: {e}"))),
    }
}

/// How long SeaBIOS takes to finish its self-test under `accel`.
async fn post_time(qemu: &str, accel: &str, scratch: &Path) -> Result<Duration, String> {
    let out = scratch.join(format!("probe-{accel}.debugcon"));
    let _ = std::fs::remove_file(&out);
    let start = Instant::now();
    let mut child = tokio::process::Command::new(qemu)
        .args([
            "-accel",
            accel,
            "-machine",
            "pc",
            "-m",
            "32",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-serial",
            "none",
            "-monitor",
            "none",
            "-boot",
            "strict=on",
            "-global",
            "isa-debugcon.iobase=0x402",
            "-debugcon",
        ])
        .arg(format!("file:{}", out.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("running {qemu}: {e}"))?;
    let result = loop {
        let printed = std::fs::read_to_string(&out).unwrap_or_default();
        if printed.contains("Booting from") || printed.contains("No bootable device") {
            break Ok(start.elapsed());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use tokio::io::AsyncReadExt;
                let _ = e.read_to_string(&mut err).await;
            }
            let line = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            break Err(format!("QEMU exited ({status}): {}", line.trim()));
        }
        if start.elapsed() > PROBE_TIME {
            break Err(format!(
                "the firmware did not finish in {} s",
                PROBE_TIME.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = child.kill().await;
    let _ = std::fs::remove_file(&out);
    result
}
