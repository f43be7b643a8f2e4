//! Block volumes as the cluster stores them: fixed-size chunks placed by the `volume` ring.
//!
//! A volume of `size` bytes is `ceil(size / CHUNK_SIZE)` chunks. Chunk `i` of a volume is
//! placed by `(root, i)`, where `root` is the oldest ancestor of its clone chain (the volume
//! itself when it is not a clone), so a clone's chunk lives on the devices that hold its
//! parent's: copying a chunk up is a local copy on each replica.

/// Bytes in one chunk (the unit of placement, versioning and copy-up).
pub const CHUNK_SIZE: u64 = 4 << 20;

/// The smallest unit of a read or write: offsets and lengths are multiples of it.
pub const SECTOR: u64 = 512;

/// Bytes in a GiB (Cinder sizes volumes in GiB).
pub const GIB: u64 = 1 << 30;

/// The path the `volume` ring places chunk `chunk` of the lineage rooted at `root` by.
pub fn chunk_path(root: &str, chunk: u64) -> String {
    format!("/{root}/{chunk}")
}

/// How many chunks a volume of `size` bytes has.
pub fn chunks(size: u64) -> u64 {
    size.div_ceil(CHUNK_SIZE)
}

/// Whether `id` may name a volume: 1 to 64 ASCII letters, digits, `-`, `_` or `.`, not
/// starting with `.` (a storage node names files and directories by it).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Splits the byte range `offset .. offset + len` into per-chunk pieces:
/// `(chunk, offset inside the chunk, length)`.
pub fn split(offset: u64, len: u64) -> impl Iterator<Item = (u64, u32, u32)> {
    let end = offset.saturating_add(len);
    let mut at = offset;
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let chunk = at / CHUNK_SIZE;
        let inner = at % CHUNK_SIZE;
        let n = (CHUNK_SIZE - inner).min(end - at);
        at += n;
        Some((chunk, inner as u32, n as u32))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_crosses_chunk_boundaries() {
        let v: Vec<_> = split(CHUNK_SIZE - 512, 1024).collect();
        assert_eq!(v, vec![(0, (CHUNK_SIZE - 512) as u32, 512), (1, 0, 512)]);
        assert_eq!(split(0, 0).count(), 0);
        let v: Vec<_> = split(3 * CHUNK_SIZE, 2 * CHUNK_SIZE).collect();
        assert_eq!(
            v,
            vec![(3, 0, CHUNK_SIZE as u32), (4, 0, CHUNK_SIZE as u32)]
        );
    }

    #[test]
    fn ids_that_could_name_a_path_are_refused() {
        assert!(valid_id("3f2c9a1e-0b7d-4c55-9e2e-7a1b2c3d4e5f"));
        for bad in ["", "..", ".x", "a/b", "a\0", &"x".repeat(65)] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn chunk_count_rounds_up() {
        assert_eq!(chunks(0), 0);
        assert_eq!(chunks(1), 1);
        assert_eq!(chunks(GIB), 256);
    }
}
