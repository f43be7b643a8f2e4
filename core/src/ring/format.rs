//! The binary form of a [`Ring`], as stored in meta and handed to every node.
//!
//! ```text
//! magic      8 bytes  "STRRING\0"
//! format     u16      1, or 2 when a device names its disk
//! part_power u8
//! replicas   u8
//! version    u64      ring version
//! created_at u64      Unix seconds
//! hash_key   16 bytes
//! devices    u32      count, then per device:
//!              id u32, region u32, zone u32, weight f64,
//!              node (u16 length + UTF-8), name (u16 length + UTF-8),
//!              format 2: disk id (u16 length + UTF-8, empty when not known)
//! id_width   u8       2 or 4: bytes per device id below
//! slots      partitions × replicas ids, part-major
//! crc32      u32      over every byte before it
//! ```
//! All integers little-endian. A reader refuses a bad checksum, an unknown format version
//! and any inconsistency before it returns a ring.

use super::{Device, Ring, RingError};

const MAGIC: &[u8; 8] = b"STRRING\0";
/// The newest format version this build writes and reads. A ring whose devices name no
/// disk is written as format 1, which builds without disk ids read too.
pub const FORMAT_VERSION: u16 = 2;

impl Ring {
    /// Serializes the ring (see the module docs for the layout).
    pub fn to_bytes(&self) -> Vec<u8> {
        let wide = self
            .devices
            .last()
            .is_some_and(|d| d.id > u32::from(u16::MAX));
        let width = if wide { 4 } else { 2 };
        let mut out =
            Vec::with_capacity(64 + self.devices.len() * 64 + self.assignment.len() * width);
        let format = if self.devices.iter().any(|d| !d.disk.is_empty()) {
            FORMAT_VERSION
        } else {
            1
        };
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&format.to_le_bytes());
        out.push(self.part_power);
        out.push(self.replicas);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.created_at.to_le_bytes());
        out.extend_from_slice(&self.hash_key);
        out.extend_from_slice(&(self.devices.len() as u32).to_le_bytes());
        for d in &self.devices {
            out.extend_from_slice(&d.id.to_le_bytes());
            out.extend_from_slice(&d.region.to_le_bytes());
            out.extend_from_slice(&d.zone.to_le_bytes());
            out.extend_from_slice(&d.weight.to_le_bytes());
            let disk = (format >= 2).then_some(&d.disk);
            for s in [Some(&d.node), Some(&d.name), disk].into_iter().flatten() {
                out.extend_from_slice(&(s.len() as u16).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
        out.push(width as u8);
        if wide {
            for id in &self.assignment {
                out.extend_from_slice(&id.to_le_bytes());
            }
        } else {
            for &id in &self.assignment {
                out.extend_from_slice(&(id as u16).to_le_bytes());
            }
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses and verifies a ring written by [`Ring::to_bytes`].
    pub fn from_bytes(buf: &[u8]) -> Result<Ring, RingError> {
        if buf.len() < MAGIC.len() + 2 + 4 || &buf[..8] != MAGIC {
            return Err(RingError::Corrupt("not a Stratus ring (bad magic)".into()));
        }
        let (body, crc) = buf.split_at(buf.len() - 4);
        let want = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
        if crc32fast::hash(body) != want {
            return Err(RingError::Corrupt("checksum mismatch".into()));
        }
        let mut r = Reader { buf: body, pos: 8 };
        let format = u16::from_le_bytes(r.take()?);
        if !(1..=FORMAT_VERSION).contains(&format) {
            return Err(RingError::UnsupportedVersion(format));
        }
        let [part_power] = r.take()?;
        let [replicas] = r.take()?;
        let version = u64::from_le_bytes(r.take()?);
        let created_at = u64::from_le_bytes(r.take()?);
        let hash_key: [u8; 16] = r.take()?;
        let ndev = u32::from_le_bytes(r.take()?);
        let mut devices = Vec::with_capacity(ndev.min(1 << 16) as usize);
        for _ in 0..ndev {
            let id = u32::from_le_bytes(r.take()?);
            let region = u32::from_le_bytes(r.take()?);
            let zone = u32::from_le_bytes(r.take()?);
            let weight = f64::from_le_bytes(r.take()?);
            let node = r.string()?;
            let name = r.string()?;
            let disk = if format >= 2 {
                r.string()?
            } else {
                String::new()
            };
            devices.push(Device {
                id,
                region,
                zone,
                node,
                name,
                weight,
                disk,
            });
        }
        let [width] = r.take()?;
        if part_power == 0 || part_power > super::MAX_PART_POWER {
            return Err(RingError::Corrupt(format!("partition power {part_power}")));
        }
        let slots = (1usize << part_power) * usize::from(replicas);
        let rest = &r.buf[r.pos..];
        let assignment: Vec<u32> = match width {
            2 if rest.len() == slots * 2 => rest
                .chunks_exact(2)
                .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            4 if rest.len() == slots * 4 => rest
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            _ => {
                return Err(RingError::Corrupt(format!(
                    "{} bytes of {width}-byte ids for {slots} slots",
                    rest.len()
                )))
            }
        };
        Ring::new(
            version, part_power, replicas, hash_key, created_at, devices, assignment,
        )
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], RingError> {
        let end = self.pos + N;
        let b = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| RingError::Corrupt("truncated".into()))?;
        self.pos = end;
        Ok(b.try_into().expect("N bytes"))
    }

    fn string(&mut self) -> Result<String, RingError> {
        let n = usize::from(u16::from_le_bytes(self.take()?));
        let b = self
            .buf
            .get(self.pos..self.pos + n)
            .ok_or_else(|| RingError::Corrupt("truncated".into()))?;
        self.pos += n;
        String::from_utf8(b.to_vec()).map_err(|_| RingError::Corrupt("name is not UTF-8".into()))
    }
}
