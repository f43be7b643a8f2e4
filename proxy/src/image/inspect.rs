//! Disk image format inspection from the first bytes of an upload, as Glance's own
//! `format_inspector` does: the bytes must be of the declared `disk_format`, a qcow2 may not
//! name a backing file or an external data file (either would make a hypervisor read a file
//! of the host), and a VMDK must be a self-contained sparse extent, not a descriptor that
//! names other files. The check runs on the stream as it passes, so a bad upload is refused
//! before it is stored, with no temporary copy.

/// How many leading bytes the inspection needs (an ISO 9660 volume descriptor is at 32 KiB).
pub const HEADER_BYTES: usize = 64 * 1024;

/// What the header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    /// The format the bytes are in (`raw` when no other is recognised).
    pub format: &'static str,
    /// The disk size the guest sees, when the header states it (raw: the byte size).
    pub virtual_size: Option<u64>,
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}
fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Recognises the format of `head` (the first [`HEADER_BYTES`] bytes, or all of a smaller
/// image); `Err` says why the image must be refused whatever was declared.
pub fn detect(head: &[u8]) -> Result<Detected, String> {
    if head.starts_with(b"QFI\xfb") {
        let version = be32(head, 4).ok_or("qcow2 header is truncated")?;
        if !(2..=3).contains(&version) {
            return Err(format!("qcow2 version {version} is not supported"));
        }
        if be64(head, 8).ok_or("qcow2 header is truncated")? != 0 {
            return Err("a qcow2 image with a backing file is not allowed".into());
        }
        if version == 3 {
            let incompatible = be64(head, 72).ok_or("qcow2 header is truncated")?;
            if incompatible & (1 << 2) != 0 {
                return Err("a qcow2 image with an external data file is not allowed".into());
            }
        }
        return Ok(Detected {
            format: "qcow2",
            virtual_size: be64(head, 24),
        });
    }
    if head.starts_with(b"KDMV") {
        return Ok(Detected {
            format: "vmdk",
            virtual_size: le64(head, 12).and_then(|s| s.checked_mul(512)),
        });
    }
    if head.starts_with(b"# Disk DescriptorFile") {
        return Err("a VMDK descriptor file (which names other files) is not allowed".into());
    }
    if head.starts_with(b"vhdxfile") {
        return Ok(Detected {
            format: "vhdx",
            virtual_size: None,
        });
    }
    if head.starts_with(b"conectix") {
        return Ok(Detected {
            format: "vhd",
            virtual_size: be64(head, 48),
        });
    }
    if le32(head, 64) == Some(0xbeda_107f) {
        return Ok(Detected {
            format: "vdi",
            virtual_size: le64(head, 368),
        });
    }
    if head.get(0x8001..0x8006) == Some(b"CD001") {
        return Ok(Detected {
            format: "iso",
            virtual_size: None,
        });
    }
    Ok(Detected {
        format: "raw",
        virtual_size: None,
    })
}

/// Checks `head` against the declared `disk_format`: `Err` is the reason for a 400.
pub fn check(declared: &str, head: &[u8]) -> Result<Detected, String> {
    let d = detect(head)?;
    let ok = match declared {
        // Formats with no header worth checking take any bytes a hypervisor would read as
        // raw; a recognised container format under them would be read as such elsewhere.
        "raw" | "ami" | "ari" | "aki" | "ploop" => d.format == "raw" || d.format == "iso",
        // An ISO is raw bytes with a volume descriptor; accept it when it has one.
        "iso" => d.format == "iso" || d.format == "raw",
        other => d.format == other,
    };
    if !ok {
        return Err(format!(
            "Image format detected ({}) does not match the disk_format ({declared}).",
            d.format
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qcow2(version: u32, backing: u64, incompatible: u64, size: u64) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..4].copy_from_slice(b"QFI\xfb");
        h[4..8].copy_from_slice(&version.to_be_bytes());
        h[8..16].copy_from_slice(&backing.to_be_bytes());
        h[24..32].copy_from_slice(&size.to_be_bytes());
        h[72..80].copy_from_slice(&incompatible.to_be_bytes());
        h
    }

    #[test]
    fn qcow2_is_recognised_and_its_dangerous_forms_refused() {
        let d = check("qcow2", &qcow2(3, 0, 0, 1 << 30)).unwrap();
        assert_eq!(d.virtual_size, Some(1 << 30));
        assert!(check("qcow2", &qcow2(2, 0, 0, 1)).is_ok());
        assert!(check("qcow2", &qcow2(3, 512, 0, 1))
            .unwrap_err()
            .contains("backing file"));
        assert!(check("qcow2", &qcow2(3, 0, 4, 1))
            .unwrap_err()
            .contains("external data file"));
        // Declared raw, but a qcow2 (refused: another host would read it as qcow2).
        assert!(check("raw", &qcow2(3, 0, 0, 1)).is_err());
        // Declared qcow2, but not one.
        assert!(check("qcow2", &[7u8; 4096])
            .unwrap_err()
            .contains("does not match"));
        assert!(check("qcow2", b"QFI").is_err());
    }

    #[test]
    fn other_formats_by_their_magic() {
        assert_eq!(check("raw", &[0u8; 100]).unwrap().format, "raw");
        assert_eq!(check("raw", &[]).unwrap().format, "raw");
        let mut vmdk = vec![0u8; 512];
        vmdk[..4].copy_from_slice(b"KDMV");
        vmdk[12..20].copy_from_slice(&2048u64.to_le_bytes());
        assert_eq!(check("vmdk", &vmdk).unwrap().virtual_size, Some(1 << 20));
        assert!(check(
            "vmdk",
            b"# Disk DescriptorFile\nRW 1 FLAT \"/etc/passwd\" 0"
        )
        .is_err());
        let mut iso = vec![0u8; 0x9000];
        iso[0x8001..0x8006].copy_from_slice(b"CD001");
        assert_eq!(check("iso", &iso).unwrap().format, "iso");
        assert!(check("vhdx", &[0u8; 64]).is_err());
    }
}
