//! Whether KVM really runs guests here, found out by trying: `/dev/kvm` can exist on a
//! host whose virtualisation cannot run a real guest (nested or emulated), and a guest
//! started there crashes. The probe boots QEMU's firmware under KVM for a few seconds and
//! looks for SeaBIOS's first lines on the debug console; anything else means TCG.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// How long the probe's firmware gets to print.
const PROBE_TIME: Duration = Duration::from_secs(4);

/// `("kvm", None)` when KVM works, else `("qemu", Some(why))`.
pub async fn probe(qemu: &str, scratch: &Path) -> (String, Option<String>) {
    match try_kvm(qemu, scratch).await {
        Ok(()) => ("kvm".into(), None),
        Err(why) => ("qemu".into(), Some(why)),
    }
}

async fn try_kvm(qemu: &str, scratch: &Path) -> Result<(), String> {
    if !Path::new("/dev/kvm").exists() {
        return Err("no /dev/kvm".into());
    }
    let out = scratch.join("kvm-probe.debugcon");
    let _ = std::fs::remove_file(&out);
    let mut child = tokio::process::Command::new(qemu)
        .args([
            "-accel",
            "kvm",
            "-machine",
            "pc",
            "-m",
            "32",
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
            "-serial",
            "null",
            "-monitor",
            "none",
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
    let exited = tokio::time::timeout(PROBE_TIME, child.wait()).await;
    let stderr = match exited {
        Ok(_) => {
            let mut s = String::new();
            if let Some(mut e) = child.stderr.take() {
                use tokio::io::AsyncReadExt;
                let _ = e.read_to_string(&mut s).await;
            }
            s
        }
        Err(_) => {
            let _ = child.kill().await;
            String::new()
        }
    };
    let printed = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    // SeaBIOS prints its banner, then finds the (absent) boot devices: a guest that got
    // that far ran real code under KVM.
    if printed.contains("SeaBIOS") && printed.contains("Booting from")
        || printed.contains("No bootable device")
    {
        return Ok(());
    }
    let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    Err(if printed.contains("SeaBIOS") {
        format!("a guest under KVM stopped early ({})", first.trim())
    } else if first.is_empty() {
        "a guest under KVM printed nothing".to_string()
    } else {
        format!("a guest under KVM failed: {}", first.trim())
    })
}
