//! qcow2 images read as the raw disk the guest sees, for importing an image into a raw
//! volume: [`Qcow2::open`] checks the header, [`Qcow2::read_at`] gives the guest's bytes at
//! any offset, and [`Qcow2::copy_to_raw`] / [`Qcow2::write_sparse`] stream the whole disk.
//!
//! The layout follows QEMU's `docs/interop/qcow2.txt` (versions 2 and 3, big-endian): a
//! guest offset is split into an L1 index, an L2 index and an offset in the cluster; an L2
//! entry is unallocated (zeros, since a backing file is refused), a zero cluster (v3 bit 0),
//! a standard cluster at a cluster-aligned host offset, or a compressed cluster (bit 62)
//! whose descriptor holds a host byte offset and a count of 512-byte sectors, split at bit
//! `62 - (cluster_bits - 8)`, inflated as raw deflate. Extended L2 entries (32 subclusters a
//! cluster) are read too.
//!
//! Images come from users, so every number read from the file is checked before it is used:
//! refused with [`io::ErrorKind::Unsupported`] are a backing file, an external data file,
//! encryption, zstd compression and unknown incompatible feature bits; refused with
//! [`io::ErrorKind::InvalidData`] are a malformed header (cluster_bits outside 9..=21, an L1
//! table too small for the virtual size or larger than QEMU's 32 MiB limit, tables past the
//! end of the file, unaligned offsets) and any corrupt mapping met while reading. Memory is
//! bounded whatever the header says: the L1 table (at most 32 MiB, and never more than the
//! file holds), eight cached L2 tables, one inflated cluster, and for each inflating thread
//! at most two clusters of compressed bytes (clusters are at most 2 MiB).
//!
//! Images are read through [`ReadAt`], positional reads that [`std::fs::File`], byte slices
//! and `Vec<u8>` implement; nothing here opens a file itself. The whole-disk copies read 4 MiB
//! at a time, one call for each run of contiguous host bytes, and inflate the compressed
//! clusters of a chunk on up to 4 threads.
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! use stratus_core::qcow2::Qcow2;
//! let mut image = Qcow2::open(std::fs::File::open("image.qcow2")?)?;
//! let size = image.virtual_size(); // check it against the volume's size first
//! let written = image.write_sparse(&std::fs::File::create_new("volume.raw")?)?;
//! # let _ = (size, written);
//! # Ok(())
//! # }
//! ```

use std::cmp::min;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

use flate2::{Decompress, FlushDecompress};

/// The largest L1 table accepted, in entries (QEMU's limit of 32 MiB).
pub const MAX_L1_ENTRIES: u64 = (32 << 20) / 8;

const MAGIC: &[u8; 4] = b"QFI\xfb";
const MIN_CLUSTER_BITS: u32 = 9;
const MAX_CLUSTER_BITS: u32 = 21;
/// Bits 9..=55 of an L1 entry or a standard L2 entry: the host offset.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const L2_COMPRESSED: u64 = 1 << 62;
const L2_ZERO: u64 = 1;
/// How many L2 tables are cached (each one cluster: at most 16 MiB in all).
const L2_CACHE_TABLES: usize = 8;
/// The buffer of [`Qcow2::copy_to_raw`] and [`Qcow2::write_sparse`].
const COPY_CHUNK: u64 = 4 << 20;
/// The granularity at which [`Qcow2::write_sparse`] leaves zeros as holes.
const SPARSE_BLOCK: usize = 4096;
/// The most threads [`Qcow2::copy_to_raw`] and [`Qcow2::write_sparse`] inflate with.
const MAX_INFLATE_THREADS: usize = 4;

const INCOMPAT_DIRTY: u64 = 1 << 0;
const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
const INCOMPAT_COMPRESSION_TYPE: u64 = 1 << 3;
const INCOMPAT_EXTENDED_L2: u64 = 1 << 4;
const INCOMPAT_KNOWN: u64 = INCOMPAT_DIRTY
    | INCOMPAT_CORRUPT
    | INCOMPAT_DATA_FILE
    | INCOMPAT_COMPRESSION_TYPE
    | INCOMPAT_EXTENDED_L2;

/// Positional reads of an image's bytes.
pub trait ReadAt {
    /// Reads up to `buf.len()` bytes at `offset`, returning how many (0 at or past the end).
    /// A short read before the end is allowed; the caller reads again.
    fn pread(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// The length in bytes.
    fn size(&self) -> io::Result<u64>;
}

impl ReadAt for File {
    fn pread(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

impl ReadAt for [u8] {
    fn pread(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        let Some(rest) = self.get(start..) else {
            return Ok(0);
        };
        let n = min(rest.len(), buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
}

impl ReadAt for Vec<u8> {
    fn pread(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.as_slice().pread(buf, offset)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn pread(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        (**self).pread(buf, offset)
    }
    fn size(&self) -> io::Result<u64> {
        (**self).size()
    }
}

fn invalid(msg: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("qcow2: {msg}"))
}

fn refused(msg: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, format!("qcow2: {msg}"))
}

/// Reads until `buf` is full or the end; returns how many bytes were read.
fn read_full<S: ReadAt + ?Sized>(src: &S, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let at = offset
            .checked_add(done as u64)
            .ok_or_else(|| invalid("offset overflows"))?;
        match src.pread(&mut buf[done..], at) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

fn be32(h: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(h[at..at + 4].try_into().expect("4 bytes"))
}

fn be64(h: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(h[at..at + 8].try_into().expect("8 bytes"))
}

/// True when every byte is zero.
fn is_zero(b: &[u8]) -> bool {
    // Or-folding fixed chunks vectorises; `iter().all` stops early and does not.
    let mut chunks = b.chunks_exact(64);
    for c in &mut chunks {
        if c.iter().fold(0u8, |a, &x| a | x) != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&x| x == 0)
}

/// Writes the 4 KiB blocks of `buf` that are not all zeros into `file`, `buf` standing at
/// `off`; returns the bytes written.
fn write_nonzero(file: &File, buf: &[u8], off: u64) -> io::Result<u64> {
    let mut written = 0;
    let mut i = 0;
    while i < buf.len() {
        let end = min(i + SPARSE_BLOCK, buf.len());
        if is_zero(&buf[i..end]) {
            i = end;
            continue;
        }
        let start = i;
        i = end;
        while i < buf.len() {
            let end = min(i + SPARSE_BLOCK, buf.len());
            if is_zero(&buf[i..end]) {
                break;
            }
            i = end;
        }
        file.write_all_at(&buf[start..i], off + start as u64)?;
        written += (i - start) as u64;
    }
    Ok(written)
}

/// What a run of guest bytes is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Reads as zeros (unallocated, a zero cluster or zero subclusters).
    Zero,
    /// Stored at this host offset.
    Data(u64),
    /// In the compressed cluster with this descriptor (bits 0..=61 of the L2 entry).
    Compressed(u64),
}

struct L2Table {
    /// Host offset of the table.
    offset: u64,
    /// When it was last used (for eviction).
    used: u64,
    /// The entries, decoded (two words per entry with extended L2 entries).
    words: Vec<u64>,
}

/// An open qcow2 image.
pub struct Qcow2<S: ReadAt> {
    src: S,
    file_len: u64,
    version: u32,
    cluster_bits: u32,
    /// log2 of the entries in an L2 table.
    l2_bits: u32,
    extended_l2: bool,
    size: u64,
    /// The L1 entries that map the virtual disk (those past it are not read).
    l1: Vec<u64>,
    l2_cache: Vec<L2Table>,
    tick: u64,
    /// Where a compressed descriptor splits: offset below, sector count above.
    csize_shift: u32,
    inflater: Inflater,
    /// Inflaters of the other threads of [`Qcow2::copy_to_raw`] and [`Qcow2::write_sparse`].
    spare: Vec<Inflater>,
    threads: usize,
    /// The last cluster inflated, and its descriptor, for reads of part of one.
    cluster: Vec<u8>,
    cluster_desc: Option<u64>,
}

/// What inflating a compressed cluster needs to know of the image.
#[derive(Clone, Copy)]
struct Geometry {
    file_len: u64,
    cluster_bits: u32,
    csize_shift: u32,
}

/// Inflates compressed clusters: a raw-deflate state and a buffer for compressed bytes.
struct Inflater {
    state: Decompress,
    cbuf: Vec<u8>,
}

impl Inflater {
    fn new() -> Inflater {
        Inflater {
            state: Decompress::new(false),
            cbuf: Vec::new(),
        }
    }

    /// Inflates the compressed cluster `desc` into `out` (one cluster).
    fn inflate<S: ReadAt + ?Sized>(
        &mut self,
        src: &S,
        g: Geometry,
        desc: u64,
        out: &mut [u8],
    ) -> io::Result<()> {
        let host = desc & ((1u64 << g.csize_shift) - 1);
        let sectors = ((desc >> g.csize_shift) & ((1u64 << (g.cluster_bits - 8)) - 1)) + 1;
        // At most two clusters: 2^(cluster_bits - 8) sectors of 512 bytes.
        let csize = sectors * 512 - (host & 511);
        if host >= 1 << 56 || host >= g.file_len {
            return Err(invalid(format!(
                "the compressed cluster at {host:#x} lies past the end of the file ({} bytes)",
                g.file_len
            )));
        }
        // The last sector may be cut short by the end of the file.
        let avail = min(csize, g.file_len - host) as usize;
        self.cbuf.resize(avail, 0);
        let got = read_full(src, &mut self.cbuf, host)?;
        self.state.reset(false);
        let status = self
            .state
            .decompress(&self.cbuf[..got], out, FlushDecompress::Finish);
        match status {
            Ok(_) if self.state.total_out() == out.len() as u64 => Ok(()),
            Ok(_) => Err(invalid(format!(
                "the compressed cluster at {host:#x} inflates to {} bytes, not {}",
                self.state.total_out(),
                out.len()
            ))),
            Err(e) => Err(invalid(format!(
                "the compressed cluster at {host:#x} does not inflate: {e}"
            ))),
        }
    }
}

impl<S: ReadAt> std::fmt::Debug for Qcow2<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qcow2")
            .field("version", &self.version)
            .field("cluster_bits", &self.cluster_bits)
            .field("extended_l2", &self.extended_l2)
            .field("virtual_size", &self.size)
            .field("file_len", &self.file_len)
            .finish_non_exhaustive()
    }
}

impl<S: ReadAt> Qcow2<S> {
    /// Reads and checks the header and the L1 table.
    ///
    /// Errors: [`io::ErrorKind::Unsupported`] for an image that is well-formed but may not be
    /// imported (backing file, external data file, encryption, zstd, unknown incompatible
    /// features), [`io::ErrorKind::InvalidData`] for one that is not a sound qcow2 image,
    /// and the source's own errors.
    pub fn open(src: S) -> io::Result<Self> {
        let file_len = src.size()?;
        let mut h = [0u8; 112];
        let got = read_full(&src, &mut h, 0)?;
        if got < 4 || &h[..4] != MAGIC {
            return Err(invalid("not a qcow2 image (bad magic)"));
        }
        if got < 72 {
            return Err(invalid(format!(
                "the header is truncated ({file_len} bytes)"
            )));
        }
        let version = be32(&h, 4);
        if !(2..=3).contains(&version) {
            return Err(refused(format!("version {version} is not supported")));
        }
        let backing_offset = be64(&h, 8);
        if backing_offset != 0 {
            let name_len = min(be32(&h, 16), 1023) as usize;
            let mut name = vec![0u8; name_len];
            let n = read_full(&src, &mut name, backing_offset).unwrap_or(0);
            return Err(refused(format!(
                "the image has a backing file ({:?}); only self-contained images can be imported",
                String::from_utf8_lossy(&name[..n])
            )));
        }
        let cluster_bits = be32(&h, 20);
        if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
            return Err(invalid(format!(
                "cluster_bits {cluster_bits} is outside {MIN_CLUSTER_BITS}..={MAX_CLUSTER_BITS}"
            )));
        }
        let cluster_size = 1u64 << cluster_bits;
        let size = be64(&h, 24);
        match be32(&h, 32) {
            0 => {}
            1 => return Err(refused("the image is encrypted (AES)")),
            2 => return Err(refused("the image is encrypted (LUKS)")),
            m => return Err(refused(format!("the image is encrypted (method {m})"))),
        }
        let l1_size = u64::from(be32(&h, 36));
        let l1_offset = be64(&h, 40);

        let mut extended_l2 = false;
        if version >= 3 {
            if got < 104 {
                return Err(invalid(format!(
                    "the version 3 header is truncated ({file_len} bytes)"
                )));
            }
            let incompatible = be64(&h, 72);
            let unknown = incompatible & !INCOMPAT_KNOWN;
            if unknown != 0 {
                return Err(refused(format!(
                    "unknown incompatible feature bits {unknown:#x}"
                )));
            }
            if incompatible & INCOMPAT_DATA_FILE != 0 {
                return Err(refused(
                    "the image keeps its data in an external data file; only self-contained images can be imported",
                ));
            }
            if incompatible & INCOMPAT_CORRUPT != 0 {
                return Err(invalid("the image is marked corrupt"));
            }
            let refcount_order = be32(&h, 96);
            if refcount_order > 6 {
                return Err(invalid(format!(
                    "refcount_order {refcount_order} exceeds 6"
                )));
            }
            let header_length = u64::from(be32(&h, 100));
            if header_length < 104 || header_length & 7 != 0 || header_length > cluster_size {
                return Err(invalid(format!("header_length {header_length} is invalid")));
            }
            // compression_type (byte 104) is present when the header reaches past it.
            let compression_type = if header_length > 104 {
                if got < 105 {
                    return Err(invalid(format!(
                        "the header is truncated ({file_len} bytes)"
                    )));
                }
                h[104]
            } else {
                0
            };
            match (
                incompatible & INCOMPAT_COMPRESSION_TYPE != 0,
                compression_type,
            ) {
                (false, 0) => {}
                (true, 1) => {
                    return Err(refused(
                        "compressed clusters use zstd; only zlib is supported",
                    ))
                }
                (true, t) if t != 0 => {
                    return Err(refused(format!("unknown compression type {t}")))
                }
                (_, t) => {
                    return Err(invalid(format!(
                        "compression type {t} disagrees with the compression type feature bit"
                    )))
                }
            }
            extended_l2 = incompatible & INCOMPAT_EXTENDED_L2 != 0;
            if extended_l2 && cluster_bits < 14 {
                return Err(invalid(
                    "extended L2 entries need clusters of at least 16 KiB",
                ));
            }
        }

        // One L2 table is one cluster of 8-byte entries (16-byte ones when extended).
        let l2_bits = cluster_bits - if extended_l2 { 4 } else { 3 };
        let l1_span = 1u64 << (cluster_bits + l2_bits); // at most 2^39
        let l1_needed = size.div_ceil(l1_span);
        if l1_size > MAX_L1_ENTRIES {
            return Err(invalid(format!(
                "the L1 table of {l1_size} entries exceeds the limit of {MAX_L1_ENTRIES}"
            )));
        }
        if l1_size < l1_needed {
            return Err(invalid(format!(
                "the L1 table of {l1_size} entries cannot map the virtual size of {size} bytes ({l1_needed} needed)"
            )));
        }
        let mut l1 = Vec::new();
        if l1_needed > 0 {
            if l1_offset & (cluster_size - 1) != 0 {
                return Err(invalid(format!(
                    "the L1 table offset {l1_offset:#x} is not cluster-aligned"
                )));
            }
            let bytes = l1_needed * 8; // at most 32 MiB (checked above)
            match l1_offset.checked_add(bytes) {
                Some(end) if end <= file_len => {}
                _ => {
                    return Err(invalid(format!(
                        "the L1 table ({bytes} bytes at {l1_offset:#x}) lies past the end of the file ({file_len} bytes)"
                    )))
                }
            }
            // Now bounded by the file's own length: read it a piece at a time.
            l1.reserve_exact(l1_needed as usize);
            let mut piece = vec![0u8; min(bytes, 64 << 10) as usize];
            let mut at = 0u64;
            while at < bytes {
                let n = min(piece.len() as u64, bytes - at) as usize;
                if read_full(&src, &mut piece[..n], l1_offset + at)? < n {
                    return Err(invalid("the L1 table is truncated"));
                }
                l1.extend(piece[..n].chunks_exact(8).map(|e| be64(e, 0)));
                at += n as u64;
            }
        }

        Ok(Qcow2 {
            src,
            file_len,
            version,
            cluster_bits,
            l2_bits,
            extended_l2,
            size,
            l1,
            l2_cache: Vec::new(),
            tick: 0,
            csize_shift: 62 - (cluster_bits - 8),
            inflater: Inflater::new(),
            spare: Vec::new(),
            threads: std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(MAX_INFLATE_THREADS),
            cluster: Vec::new(),
            cluster_desc: None,
        })
    }

    /// The size of the disk the guest sees, in bytes.
    pub fn virtual_size(&self) -> u64 {
        self.size
    }

    /// The qcow2 version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Gives back the source.
    pub fn into_inner(self) -> S {
        self.src
    }

    /// Fills `buf` with the guest's bytes at `offset`; returns how many, which is
    /// `buf.len()` unless the disk ends first (0 at or past its end).
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.read_inner(offset, buf, None)?.0)
    }

    /// [`Self::read_at`], also saying whether any of the bytes came from data (and not
    /// from unallocated or zero clusters). With `deferred`, whole compressed clusters are
    /// not inflated but listed there (descriptor, start in `buf`) for the caller to inflate.
    fn read_inner(
        &mut self,
        offset: u64,
        buf: &mut [u8],
        mut deferred: Option<&mut Vec<(u64, usize)>>,
    ) -> io::Result<(usize, bool)> {
        if offset >= self.size {
            return Ok((0, false));
        }
        let n = min(buf.len() as u64, self.size - offset) as usize;
        let cluster_mask = (1u64 << self.cluster_bits) - 1;
        let mut any_data = false;
        // A run of data whose host bytes are contiguous, read with one call:
        // (host offset, start in buf, length).
        let mut pending: Option<(u64, usize, usize)> = None;
        let mut done = 0;
        while done < n {
            let off = offset + done as u64;
            let (kind, len) = self.extent(off)?;
            let len = min(len, (n - done) as u64) as usize;
            match kind {
                Kind::Zero => buf[done..done + len].fill(0),
                Kind::Data(host) => {
                    any_data = true;
                    if let Some((h, s, l)) = pending {
                        if s + l == done && h + l as u64 == host {
                            pending = Some((h, s, l + len));
                            done += len;
                            continue;
                        }
                        self.read_data(h, &mut buf[s..s + l])?;
                    }
                    pending = Some((host, done, len));
                }
                Kind::Compressed(desc) => {
                    any_data = true;
                    let whole = off & cluster_mask == 0 && len as u64 == cluster_mask + 1;
                    match deferred.as_deref_mut() {
                        Some(jobs) if whole => jobs.push((desc, done)),
                        _ => self.read_compressed(
                            desc,
                            off & cluster_mask,
                            &mut buf[done..done + len],
                        )?,
                    }
                }
            }
            done += len;
        }
        if let Some((h, s, l)) = pending {
            self.read_data(h, &mut buf[s..s + l])?;
        }
        Ok((n, any_data))
    }

    /// What the guest byte at `off` (below the virtual size) is, and for how many bytes from
    /// there that holds (at least one; at most to the end of its cluster, or of its L1
    /// entry's span when that has no L2 table).
    fn extent(&mut self, off: u64) -> io::Result<(Kind, u64)> {
        let cluster_size = 1u64 << self.cluster_bits;
        let in_cluster = off & (cluster_size - 1);
        let left = self.size - off;
        let cluster = off >> self.cluster_bits;
        // In range: the L1 table holds every entry the virtual size needs.
        let l1_entry = self.l1[(cluster >> self.l2_bits) as usize];
        let l2_offset = l1_entry & OFFSET_MASK;
        if l2_offset == 0 {
            let span = 1u64 << (self.cluster_bits + self.l2_bits);
            return Ok((Kind::Zero, min(span - (off & (span - 1)), left)));
        }
        let index = (cluster & ((1 << self.l2_bits) - 1)) as usize;
        let (entry, bitmap) = self.l2_entry(l2_offset, index)?;
        let to_end = min(cluster_size - in_cluster, left);
        if entry & L2_COMPRESSED != 0 {
            return Ok((Kind::Compressed(entry & (L2_COMPRESSED - 1)), to_end));
        }
        let host = entry & OFFSET_MASK;
        let check_host = |host: u64| {
            if host & (cluster_size - 1) != 0 {
                Err(invalid(format!(
                    "the data cluster offset {host:#x} is not cluster-aligned"
                )))
            } else {
                Ok(Kind::Data(host + in_cluster))
            }
        };
        if !self.extended_l2 {
            if entry & L2_ZERO != 0 {
                if self.version < 3 {
                    return Err(invalid("a zero cluster in a version 2 image"));
                }
                return Ok((Kind::Zero, to_end));
            }
            if host == 0 {
                return Ok((Kind::Zero, to_end));
            }
            return Ok((check_host(host)?, to_end));
        }
        // 32 subclusters: bits 0..=31 allocated, 32..=63 reads as zeros.
        let alloc = bitmap as u32;
        let zero = (bitmap >> 32) as u32;
        if alloc & zero != 0 {
            return Err(invalid("a subcluster is both allocated and zero"));
        }
        let sub_bits = self.cluster_bits - 5;
        let sub = (in_cluster >> sub_bits) as u32;
        let allocated = (alloc >> sub) & 1 == 1;
        let same = if allocated { alloc } else { !alloc };
        let run = (same >> sub).trailing_ones();
        let len = min((u64::from(sub + run) << sub_bits) - in_cluster, left);
        if !allocated {
            return Ok((Kind::Zero, len));
        }
        if host == 0 {
            return Err(invalid("an allocated subcluster has no host offset"));
        }
        Ok((check_host(host)?, len))
    }

    /// Entry `index` of the L2 table at `offset` (and its subcluster bitmap, 0 when the
    /// entries are not extended).
    fn l2_entry(&mut self, offset: u64, index: usize) -> io::Result<(u64, u64)> {
        self.tick += 1;
        let tick = self.tick;
        let ext = self.extended_l2;
        let pick = |t: &L2Table| {
            if ext {
                (t.words[2 * index], t.words[2 * index + 1])
            } else {
                (t.words[index], 0)
            }
        };
        if let Some(t) = self.l2_cache.iter_mut().find(|t| t.offset == offset) {
            t.used = tick;
            return Ok(pick(t));
        }
        let cluster_size = 1u64 << self.cluster_bits;
        if offset & (cluster_size - 1) != 0 {
            return Err(invalid(format!(
                "the L2 table offset {offset:#x} is not cluster-aligned"
            )));
        }
        if !matches!(offset.checked_add(cluster_size), Some(end) if end <= self.file_len) {
            return Err(invalid(format!(
                "the L2 table at {offset:#x} lies past the end of the file ({} bytes)",
                self.file_len
            )));
        }
        let mut bytes = vec![0u8; cluster_size as usize];
        if read_full(&self.src, &mut bytes, offset)? < bytes.len() {
            return Err(invalid(format!("the L2 table at {offset:#x} is truncated")));
        }
        let words: Vec<u64> = bytes.chunks_exact(8).map(|w| be64(w, 0)).collect();
        let table = L2Table {
            offset,
            used: tick,
            words,
        };
        let entry = pick(&table);
        if self.l2_cache.len() < L2_CACHE_TABLES {
            self.l2_cache.push(table);
        } else if let Some(oldest) = self.l2_cache.iter_mut().min_by_key(|t| t.used) {
            *oldest = table;
        }
        Ok(entry)
    }

    /// Reads stored guest bytes at `host`, all of which must be in the file.
    fn read_data(&self, host: u64, dst: &mut [u8]) -> io::Result<()> {
        if read_full(&self.src, dst, host)? < dst.len() {
            return Err(invalid(format!(
                "data at {host:#x} (+{} bytes) lies past the end of the file ({} bytes)",
                dst.len(),
                self.file_len
            )));
        }
        Ok(())
    }

    /// Reads `dst.len()` bytes at `in_cluster` of the compressed cluster `desc`.
    fn read_compressed(&mut self, desc: u64, in_cluster: u64, dst: &mut [u8]) -> io::Result<()> {
        let cluster_size = 1usize << self.cluster_bits;
        if in_cluster == 0 && dst.len() == cluster_size {
            return self.inflate_cluster(desc, dst);
        }
        if self.cluster_desc != Some(desc) {
            let mut cluster = std::mem::take(&mut self.cluster);
            cluster.resize(cluster_size, 0);
            self.cluster_desc = None;
            let r = self.inflate_cluster(desc, &mut cluster);
            self.cluster = cluster;
            r?;
            self.cluster_desc = Some(desc);
        }
        let start = in_cluster as usize;
        dst.copy_from_slice(&self.cluster[start..start + dst.len()]);
        Ok(())
    }

    /// Inflates the compressed cluster `desc` into `out` (one cluster).
    fn inflate_cluster(&mut self, desc: u64, out: &mut [u8]) -> io::Result<()> {
        let g = self.geometry();
        self.inflater.inflate(&self.src, g, desc, out)
    }

    fn geometry(&self) -> Geometry {
        Geometry {
            file_len: self.file_len,
            cluster_bits: self.cluster_bits,
            csize_shift: self.csize_shift,
        }
    }
}

impl<S: ReadAt + Sync> Qcow2<S> {
    /// Sets how many threads [`Self::copy_to_raw`] and [`Self::write_sparse`] inflate
    /// compressed clusters with (1 to 64; by default the processors, at most 4).
    pub fn set_inflate_threads(&mut self, threads: usize) {
        self.threads = threads.clamp(1, 64);
    }

    /// Streams the whole disk to `out` in order, zeros written out; returns the bytes
    /// written (the virtual size).
    pub fn copy_to_raw(&mut self, mut out: impl Write) -> io::Result<u64> {
        let mut buf = vec![0u8; min(COPY_CHUNK, self.size) as usize];
        let mut jobs = Vec::new();
        let mut off = 0;
        while off < self.size {
            let (n, _) = self.read_chunk(off, &mut buf, &mut jobs)?;
            out.write_all(&buf[..n])?;
            off += n as u64;
        }
        out.flush()?;
        Ok(off)
    }

    /// Writes the whole disk into `file` as a sparse raw image: the file is set to the
    /// virtual size, and only 4 KiB blocks that are not all zeros are written (holes read as
    /// zeros). Returns the bytes written. Does not sync.
    ///
    /// Give it a new, empty file: one that holds data is first truncated to nothing, and
    /// ext4 then flushes everything written to it when it is closed (its `auto_da_alloc`
    /// heuristic for replace-by-truncate), which costs seconds a gigabyte.
    pub fn write_sparse(&mut self, file: &File) -> io::Result<u64> {
        if file.metadata()?.len() != 0 {
            file.set_len(0)?;
        }
        file.set_len(self.size)?;
        let mut buf = vec![0u8; min(COPY_CHUNK, self.size) as usize];
        let mut jobs = Vec::new();
        let mut off = 0;
        let mut written = 0;
        while off < self.size {
            let (n, any_data) = self.read_chunk(off, &mut buf, &mut jobs)?;
            if any_data {
                written += write_nonzero(file, &buf[..n], off)?;
            }
            off += n as u64;
        }
        Ok(written)
    }

    /// [`Self::read_inner`] for a chunk of the whole-disk copies: the whole compressed
    /// clusters in it are inflated on up to `threads` threads.
    fn read_chunk(
        &mut self,
        offset: u64,
        buf: &mut [u8],
        jobs: &mut Vec<(u64, usize)>,
    ) -> io::Result<(usize, bool)> {
        jobs.clear();
        let r = self.read_inner(offset, buf, Some(jobs))?;
        if jobs.is_empty() {
            return Ok(r);
        }
        let cluster_size = 1usize << self.cluster_bits;
        // The jobs are in order and do not overlap: cut `buf` into their clusters.
        let mut work: Vec<(u64, &mut [u8])> = Vec::with_capacity(jobs.len());
        let mut rest = &mut buf[..];
        let mut base = 0;
        for &(desc, start) in jobs.iter() {
            let (_, tail) = rest.split_at_mut(start - base);
            let (dst, tail) = tail.split_at_mut(cluster_size);
            work.push((desc, dst));
            rest = tail;
            base = start + cluster_size;
        }
        let g = self.geometry();
        let threads = min(self.threads, work.len());
        if threads <= 1 {
            for (desc, dst) in work {
                self.inflater.inflate(&self.src, g, desc, dst)?;
            }
            return Ok(r);
        }
        while self.spare.len() < threads - 1 {
            self.spare.push(Inflater::new());
        }
        let src = &self.src;
        let own = &mut self.inflater;
        let per = work.len().div_ceil(threads);
        let mut groups = work.chunks_mut(per);
        let first = groups.next().unwrap_or_default();
        std::thread::scope(|scope| {
            let others: Vec<_> = groups
                .zip(self.spare.iter_mut())
                .map(|(group, inflater)| {
                    scope.spawn(move || {
                        group
                            .iter_mut()
                            .try_for_each(|(desc, dst)| inflater.inflate(src, g, *desc, dst))
                    })
                })
                .collect();
            let mut result = first
                .iter_mut()
                .try_for_each(|(desc, dst)| own.inflate(src, g, *desc, dst));
            for t in others {
                let r = t
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("an inflating thread panicked")));
                if result.is_ok() {
                    result = r;
                }
            }
            result
        })?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, RngCore, SeedableRng};
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::path::PathBuf;
    use std::process::Command;
    use std::sync::atomic::{AtomicU32, Ordering};

    // The largest single allocation made by this thread, to show that a hostile header
    // does not make `open` allocate what it claims.
    struct Counting;
    thread_local! {
        static LARGEST: Cell<usize> = const { Cell::new(0) };
    }
    fn note(n: usize) {
        let _ = LARGEST.try_with(|c| c.set(c.get().max(n)));
    }
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            note(l.size());
            System.alloc(l)
        }
        unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
            note(l.size());
            System.alloc_zeroed(l)
        }
        unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
            note(new);
            System.realloc(p, l, new)
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            System.dealloc(p, l)
        }
    }
    #[global_allocator]
    static ALLOC: Counting = Counting;

    const QEMU_IMG: &str = "/usr/bin/qemu-img";
    const QEMU_IO: &str = "/usr/bin/qemu-io";

    /// A directory removed when dropped.
    struct Dir(PathBuf);
    impl Dir {
        fn new() -> Dir {
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "stratus-qcow2-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
        fn path(&self, name: &str) -> String {
            self.0.join(name).to_str().unwrap().to_string()
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Runs a QEMU tool; a missing tool fails the test (CI has qemu-utils).
    fn run(tool: &str, args: &[&str]) -> String {
        let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
            panic!("{tool} must be installed (Debian: qemu-utils) for these tests: {e}")
        });
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A raw disk of random and compressible data, zero runs (aligned to clusters and not)
    /// and holes, whose size is not a multiple of any cluster size. Written to `path`,
    /// leaving 64 KiB blocks of zeros as holes.
    fn sample_raw(path: &str, seed: u64) -> Vec<u8> {
        let mut rng = StdRng::seed_from_u64(seed);
        let size = (8 << 20) + 7680;
        let mut d = vec![0u8; size];
        let mib = 1 << 20;
        let text = |rng: &mut StdRng, b: &mut [u8]| {
            let mut i = 0;
            while i < b.len() {
                let word = format!("stratus-{} qcow2 ", rng.gen_range(0..1000));
                let n = min(word.len(), b.len() - i);
                b[i..i + n].copy_from_slice(&word.as_bytes()[..n]);
                i += n;
            }
        };
        rng.fill_bytes(&mut d[..mib]);
        // [1 MiB, 1 MiB + 64 KiB + 100) zeros
        rng.fill_bytes(&mut d[mib + (64 << 10) + 100..2 * mib]);
        text(&mut rng, &mut d[2 * mib..3 * mib]);
        rng.fill_bytes(&mut d[3 * mib..3 * mib + 300]);
        // [4 MiB, 5 MiB) zeros: a hole
        text(&mut rng, &mut d[5 * mib..6 * mib]);
        for c in (6 * mib..8 * mib).step_by(128 << 10) {
            rng.fill_bytes(&mut d[c..c + (64 << 10)]);
            d[c + 1000..c + 3000].fill(0);
        }
        rng.fill_bytes(&mut d[8 * mib + 512..]);
        let f = File::create(path).unwrap();
        f.set_len(size as u64).unwrap();
        for (i, block) in d.chunks(64 << 10).enumerate() {
            if !is_zero(block) {
                f.write_all_at(block, (i as u64) << 16).unwrap();
            }
        }
        d
    }

    fn open_file(path: &str) -> Qcow2<File> {
        Qcow2::open(File::open(path).unwrap()).unwrap()
    }

    /// Everything the reader gives for `img` equals `raw`: the whole stream, the sparse
    /// file, and reads at random offsets and lengths.
    fn assert_reads_as(img: &str, raw: &[u8], dir: &Dir, seed: u64) {
        let mut q = open_file(img);
        assert_eq!(q.virtual_size(), raw.len() as u64, "{img}");
        // Inflating on three threads here, on one in write_sparse below.
        q.set_inflate_threads(3);
        let mut out = Vec::new();
        assert_eq!(q.copy_to_raw(&mut out).unwrap(), raw.len() as u64);
        assert!(out == raw, "{img}: copy_to_raw differs");
        q.set_inflate_threads(1);

        let sparse = dir.path("sparse.raw");
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&sparse)
            .unwrap();
        f.write_all_at(&[0xee; 1 << 16], 0).unwrap(); // stale bytes must go
        let written = q.write_sparse(&f).unwrap();
        drop(f);
        assert!(
            std::fs::read(&sparse).unwrap() == raw,
            "{img}: sparse differs"
        );
        let nonzero_blocks = raw.chunks(SPARSE_BLOCK).filter(|b| !is_zero(b)).count();
        assert!(written <= (nonzero_blocks * SPARSE_BLOCK) as u64, "{img}");

        let mut rng = StdRng::seed_from_u64(seed);
        let mut buf = vec![0u8; 160 << 10];
        for _ in 0..50 {
            let off = rng.gen_range(0..raw.len() as u64 + 10);
            let len = rng.gen_range(0..buf.len());
            let n = q.read_at(off, &mut buf[..len]).unwrap();
            let want = raw.get(off as usize..).unwrap_or(&[]);
            let want = &want[..min(len, want.len())];
            assert_eq!(n, want.len(), "{img} at {off}");
            assert!(&buf[..n] == want, "{img}: read_at({off}, {len}) differs");
        }
    }

    #[test]
    fn qemu_img_conversions_read_back_byte_for_byte() {
        let dir = Dir::new();
        let raw_path = dir.path("disk.raw");
        let raw = sample_raw(&raw_path, 1);
        let variants: &[&[&str]] = &[
            &[],
            &["-c"],
            &["-o", "compat=0.10"],
            &["-c", "-o", "compat=0.10"],
            &["-o", "cluster_size=512"],
            &["-c", "-o", "cluster_size=512"],
            &["-c", "-o", "cluster_size=4096"],
            &["-o", "cluster_size=2M"],
            &["-c", "-o", "cluster_size=2M"],
            &["-o", "extended_l2=on"],
            &["-c", "-o", "extended_l2=on,cluster_size=16k"],
        ];
        for (i, opts) in variants.iter().enumerate() {
            let img = dir.path(&format!("v{i}.qcow2"));
            let mut args = vec!["convert", "-f", "raw", "-O", "qcow2"];
            args.extend_from_slice(opts);
            args.extend_from_slice(&[&raw_path, &img]);
            run(QEMU_IMG, &args);
            if opts.contains(&"-c") {
                let map = run(QEMU_IMG, &["map", "--output=json", &img]);
                assert!(map.contains("\"compressed\": true"), "{opts:?}: {map}");
            }
            let q = open_file(&img);
            let v2 = opts.contains(&"compat=0.10");
            assert_eq!(q.version(), if v2 { 2 } else { 3 }, "{opts:?}");
            assert_reads_as(&img, &raw, &dir, i as u64);
        }
    }

    #[test]
    fn zero_clusters_and_subclusters_read_as_zeros() {
        let dir = Dir::new();
        // v3 zero flag, with and without a preallocated host cluster.
        let img = dir.path("zero.qcow2");
        run(QEMU_IMG, &["create", "-q", "-f", "qcow2", &img, "4M"]);
        run(
            QEMU_IO,
            &[
                "-c",
                "write -P 0xaa 0 4M",
                "-c",
                "write -z 1M 1M",
                "-c",
                "write -z -u 3M 64k",
                &img,
            ],
        );
        let map = run(QEMU_IMG, &["map", "--output=json", &img]);
        assert!(map.contains("\"zero\": true, \"data\": false"), "{map}");
        let mut want = vec![0xaau8; 4 << 20];
        want[1 << 20..2 << 20].fill(0);
        want[3 << 20..(3 << 20) + (64 << 10)].fill(0);
        assert_reads_as(&img, &want, &dir, 7);

        // Extended L2 entries: allocated, zero and unallocated subclusters of 2 KiB.
        let img = dir.path("sub.qcow2");
        run(
            QEMU_IMG,
            &[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-o",
                "extended_l2=on",
                &img,
                "1M",
            ],
        );
        run(
            QEMU_IO,
            &[
                "-c",
                "write -P 0x11 0 6k",
                "-c",
                "write -z 2k 2k",
                "-c",
                "write -P 0x22 64k 2k",
                "-c",
                "write -P 0x33 70k 4k",
                "-c",
                "write -P 0x44 200k 100k",
                "-c",
                "write -z 220k 10k",
                &img,
            ],
        );
        let mut want = vec![0u8; 1 << 20];
        want[..6 << 10].fill(0x11);
        want[2 << 10..4 << 10].fill(0);
        want[64 << 10..66 << 10].fill(0x22);
        want[70 << 10..74 << 10].fill(0x33);
        want[200 << 10..300 << 10].fill(0x44);
        want[220 << 10..230 << 10].fill(0);
        assert_reads_as(&img, &want, &dir, 8);
    }

    fn refusal(path: &str) -> io::Error {
        Qcow2::open(File::open(path).unwrap()).unwrap_err()
    }

    #[test]
    fn backing_files_external_data_encryption_and_zstd_are_refused() {
        let dir = Dir::new();
        let base = dir.path("base.raw");
        run(QEMU_IMG, &["create", "-q", "-f", "raw", &base, "1M"]);
        let child = dir.path("child.qcow2");
        run(
            QEMU_IMG,
            &[
                "create", "-q", "-f", "qcow2", "-b", &base, "-F", "raw", &child,
            ],
        );
        let e = refusal(&child);
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        assert!(e.to_string().contains("backing file"), "{e}");
        assert!(e.to_string().contains("base.raw"), "{e}");

        let ext = dir.path("ext.qcow2");
        let data = format!("data_file={}", dir.path("ext.data"));
        run(
            QEMU_IMG,
            &["create", "-q", "-f", "qcow2", "-o", &data, &ext, "1M"],
        );
        let e = refusal(&ext);
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        assert!(e.to_string().contains("external data file"), "{e}");

        let enc = dir.path("enc.qcow2");
        run(
            QEMU_IMG,
            &[
                "create",
                "-q",
                "-f",
                "qcow2",
                "--object",
                "secret,id=s0,data=abc",
                "-o",
                "encrypt.format=aes,encrypt.key-secret=s0",
                &enc,
                "1M",
            ],
        );
        let e = refusal(&enc);
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        assert!(e.to_string().contains("encrypted"), "{e}");

        let zstd = dir.path("zstd.qcow2");
        run(
            QEMU_IMG,
            &[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-o",
                "compression_type=zstd",
                &zstd,
                "1M",
            ],
        );
        let e = refusal(&zstd);
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        assert!(e.to_string().contains("zstd"), "{e}");
    }

    /// A small qcow2 image (v3, compressed and plain clusters) and the raw disk it holds.
    fn small_image(dir: &Dir) -> (Vec<u8>, Vec<u8>) {
        let raw_path = dir.path("small.raw");
        let mut rng = StdRng::seed_from_u64(3);
        let mut raw = vec![0u8; 1 << 20];
        rng.fill_bytes(&mut raw[..200 << 10]);
        for b in raw[400 << 10..600 << 10].iter_mut() {
            *b = b"qcow2"[rng.gen_range(0..5)];
        }
        std::fs::write(&raw_path, &raw).unwrap();
        let img = dir.path("small.qcow2");
        run(
            QEMU_IMG,
            &["convert", "-c", "-f", "raw", "-O", "qcow2", &raw_path, &img],
        );
        (std::fs::read(&img).unwrap(), raw)
    }

    fn set32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }
    fn set64(b: &mut [u8], at: usize, v: u64) {
        b[at..at + 8].copy_from_slice(&v.to_be_bytes());
    }

    fn open_err(bytes: Vec<u8>) -> io::Error {
        Qcow2::open(bytes).unwrap_err()
    }

    #[test]
    fn truncated_and_corrupt_headers_are_errors() {
        let dir = Dir::new();
        let (img, raw) = small_image(&dir);
        let mut q = Qcow2::open(img.clone()).unwrap();
        let mut out = Vec::new();
        q.copy_to_raw(&mut out).unwrap();
        assert!(out == raw);

        for cut in [0, 3, 4, 40, 71, 72, 100, 103, 104, 4096, 65536] {
            let e = open_err(img[..cut].to_vec());
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "cut at {cut}: {e}");
        }
        // Cut after the L1 table: the header opens, reading the disk fails.
        let l1_end = be64(&img, 40) as usize + 8;
        let mut q = Qcow2::open(img[..l1_end].to_vec()).unwrap();
        let e = q.copy_to_raw(io::sink()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");

        let edit = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = img.clone();
            f(&mut b);
            b
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (edit(&|b| b[0] = b'X'), "bad magic"),
            (edit(&|b| set32(b, 4, 4)), "version 4"),
            (edit(&|b| set32(b, 20, 8)), "cluster_bits 8"),
            (edit(&|b| set32(b, 20, 22)), "cluster_bits 22"),
            (edit(&|b| set64(b, 24, 1 << 40)), "cannot map"),
            (edit(&|b| set64(b, 40, 0x30001)), "not cluster-aligned"),
            (edit(&|b| set64(b, 72, 1 << 10)), "unknown incompatible"),
            (edit(&|b| set64(b, 72, 2)), "marked corrupt"),
            (edit(&|b| set32(b, 100, 100)), "header_length"),
            (edit(&|b| set32(b, 96, 7)), "refcount_order"),
            (edit(&|b| set64(b, 72, 8)), "disagrees"),
        ];
        for (bytes, want) in cases {
            let e = open_err(bytes);
            assert!(e.to_string().contains(want), "want {want:?}: {e}");
        }
        // A dirty image (lazy refcounts) reads normally.
        let mut q = Qcow2::open(edit(&|b| set64(b, 72, 1))).unwrap();
        let mut out = Vec::new();
        q.copy_to_raw(&mut out).unwrap();
        assert!(out == raw);
    }

    #[test]
    fn a_huge_l1_table_is_refused_without_allocating_it() {
        // A 512-byte file claiming 2^61 bytes with 2 MiB clusters: 4 Mi L1 entries (32 MiB).
        let mut h = vec![0u8; 512];
        h[..4].copy_from_slice(MAGIC);
        set32(&mut h, 4, 3);
        set32(&mut h, 20, 21);
        set64(&mut h, 24, 1 << 61);
        set32(&mut h, 36, MAX_L1_ENTRIES as u32);
        set64(&mut h, 40, 2 << 20);
        set32(&mut h, 96, 4);
        set32(&mut h, 100, 104);
        let mut too_many = h.clone();
        set32(&mut too_many, 36, u32::MAX);
        let mut unaligned = h.clone();
        set64(&mut unaligned, 40, u64::MAX - 7);
        set32(&mut unaligned, 20, 9);
        set32(&mut unaligned, 36, 1);
        set64(&mut unaligned, 24, 512);

        LARGEST.with(|c| c.set(0));
        let past_end = open_err(h);
        let limit = open_err(too_many);
        let overflow = open_err(unaligned);
        let largest = LARGEST.with(|c| c.get());
        assert!(past_end.to_string().contains("past the end"), "{past_end}");
        assert!(limit.to_string().contains("exceeds the limit"), "{limit}");
        assert!(
            overflow.to_string().contains("not cluster-aligned"),
            "{overflow}"
        );
        assert!(largest < 64 << 10, "open allocated {largest} bytes at once");
    }

    #[test]
    fn flipped_bytes_never_panic() {
        let dir = Dir::new();
        let (img, _) = small_image(&dir);
        let mut rng = StdRng::seed_from_u64(42);
        let mut buf = vec![0u8; 1 << 20];
        let mut opened = 0;
        for i in 0..500 {
            let mut b = img.clone();
            for _ in 0..rng.gen_range(1..=4) {
                // Mostly the header; every fourth round anywhere (L1, L2, data).
                let at = if i % 4 == 3 {
                    rng.gen_range(0..b.len())
                } else {
                    rng.gen_range(0..112)
                };
                b[at] ^= 1 << rng.gen_range(0..8);
            }
            LARGEST.with(|c| c.set(0));
            let Ok(mut q) = Qcow2::open(b) else { continue };
            opened += 1;
            // Read at most 8 MiB of whatever size the header now claims.
            let mut off = 0;
            while off < min(q.virtual_size(), 8 << 20) {
                match q.read_at(off, &mut buf) {
                    Ok(n) => off += n as u64,
                    Err(_) => break,
                }
            }
            if q.virtual_size() <= 8 << 20 {
                q.set_inflate_threads(2);
                let _ = q.copy_to_raw(io::sink());
            }
            let largest = LARGEST.with(|c| c.get());
            assert!(
                largest <= 8 << 20,
                "round {i}: allocated {largest} bytes at once"
            );
        }
        assert!(
            opened > 50,
            "only {opened} of 500 opened: the flips are too harsh"
        );
    }

    #[test]
    fn sources_read_at_offsets() {
        let v = vec![1u8, 2, 3];
        let mut b = [0u8; 4];
        assert_eq!(v.pread(&mut b, 1).unwrap(), 2);
        assert_eq!(&b[..2], &[2, 3]);
        assert_eq!(v.pread(&mut b, 3).unwrap(), 0);
        assert_eq!(v.pread(&mut b, u64::MAX).unwrap(), 0);
        assert!(is_zero(&[0u8; 200]));
        let mut z = [0u8; 200];
        z[199] = 1;
        assert!(!is_zero(&z));
    }
}
