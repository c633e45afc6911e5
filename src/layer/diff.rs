//! Layer diff writer: an overlay upper dir -> an OCI layer blob, in one streaming pass.
//!
//! Pipeline: tar bytes -> 1 MiB blocks -> sha256 (diffID) -> compressor -> sha256 (digest) ->
//! 1 MiB `BufWriter` -> `out`. Nothing is held in memory beyond those buffers.
//!
//! The tar is ustar + PAX like BuildKit/containerd write it: entries in walk order (each
//! directory's children sorted bytewise by name, a directory before its contents), names relative
//! without `./`, directories ending in `/`, numeric uid/gid with empty uname/gname, mtime in whole
//! seconds (clamped to `clamp_mtime` when set), no atime/ctime, PAX records only where ustar
//! cannot hold a value (long names, big sizes/ids) or for xattrs (`SCHILY.xattr.*`).
//! Overlay whiteouts (char device 0/0) become `.wh.NAME` and opaque directories become the
//! directory entry followed by `DIR/.wh..wh..opq`; both markers get mode 0, owner 0:0 and
//! mtime 0 (1970, as containerd >= 2 and BuildKit >= 0.12 write whiteouts) so they never carry
//! host data.

use crate::digest::{Digest, HashingWriter};
use crate::layer::block_writer::BlockWriter;
use crate::layer::compression::{Compression, Encoder, LayerInfo, Profile};
use crate::layer::error::LayerError;
use crate::layer::whiteout::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::layer::xattrs::{is_opaque, read_file_xattrs, read_xattrs, Xattrs};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use tar::{EntryType, Header};

/// Options of [`write_layer`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerOptions {
    pub compression: Compression,
    /// BuildKit `rewrite-timestamp`: every mtime later than this epoch is lowered to it.
    pub clamp_mtime: Option<i64>,
    /// Output profile: which compressor scheme makes the blob bytes.
    #[serde(default)]
    pub profile: Profile,
}

/// ustar numeric field limits (octal digits that fit the field, leaving room for the NUL).
const MAX_OCTAL_SIZE: u64 = 0o77777777777;
const MAX_OCTAL_ID: u64 = 0o7777777;
const NAME_LEN: usize = 100;
const PREFIX_LEN: usize = 155;

/// Walks `upper` (only it) and writes the layer blob to `out`.
pub fn write_layer<W: Write>(
    upper: &Path,
    out: W,
    opts: &LayerOptions,
) -> Result<(W, LayerInfo), LayerError> {
    let media_type = opts.compression.media_type().to_string();
    if opts.compression == Compression::Uncompressed {
        // The blob is the tar: one hash serves as diffID and digest (sha256 is a sizeable share
        // of writing a layer).
        let (buffered, diff_id, size) =
            write_tar(upper, BufWriter::with_capacity(1 << 20, out), opts)?;
        let out = buffered
            .into_inner()
            .map_err(|e| LayerError::Write(e.into_error()))?;
        let info = LayerInfo {
            digest: diff_id.clone(),
            diff_id,
            size,
            uncompressed_size: size,
            media_type,
        };
        return Ok((out, info));
    }
    let blob = HashingWriter::new(BufWriter::with_capacity(1 << 20, out));
    let encoder = Encoder::new(opts.compression, opts.profile, blob).map_err(LayerError::Write)?;
    let (encoder, diff_id, uncompressed_size) = write_tar(upper, encoder, opts)?;
    let (buffered, info) = crate::layer::compression::finish_blob(
        encoder,
        diff_id,
        uncompressed_size,
        opts.compression,
    )?;
    let out = buffered
        .into_inner()
        .map_err(|e| LayerError::Write(e.into_error()))?;
    Ok((out, info))
}

/// Walks `upper` and writes its tar to `out` in fixed blocks; returns `out`, the tar's sha256
/// (the diffID) and its size.
///
/// Two stages on two threads, joined by a short queue of blocks: a producer walks the tree and
/// reads the files into tar blocks; this thread hashes the blocks and writes them to `out` (and
/// whatever `out` does: compress, store, report). On 2 cores the walk and the sha256 pass overlap
/// instead of adding up. A failed write drops the queue, which stops the producer.
fn write_tar<W: Write>(
    upper: &Path,
    out: W,
    opts: &LayerOptions,
) -> Result<(W, Digest, u64), LayerError> {
    let (hashed, ()) = write_tar_blocks(upper, HashingWriter::new(out), opts)?;
    Ok(hashed.finish())
}

/// The uncompressed tar of `upper` into `out`, which hashes it itself (the store's blob writer):
/// returns `out` and the tar's size, and hashes nothing, so the one sha256 pass is the sink's.
/// The caller takes the diffID (= the blob digest) from `out`.
pub fn write_layer_tar<W: Write>(
    upper: &Path,
    out: W,
    opts: &LayerOptions,
) -> Result<(W, u64), LayerError> {
    let counted = crate::digest::CountingWriter::new(BufWriter::with_capacity(1 << 20, out));
    let (counted, ()) = write_tar_blocks(upper, counted, opts)?;
    let (buffered, size) = counted.finish();
    let out = buffered
        .into_inner()
        .map_err(|e| LayerError::Write(e.into_error()))?;
    Ok((out, size))
}

/// The two-thread tar pipeline of [`write_tar`], writing the blocks to `out` as they come.
fn write_tar_blocks<W: Write>(
    upper: &Path,
    out: W,
    opts: &LayerOptions,
) -> Result<(W, ()), LayerError> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(QUEUED_BLOCKS);
    std::thread::scope(|s| {
        let producer = s.spawn(move || produce_tar(upper, BlockWriter::new(BlockSender(tx)), opts));
        let mut hashed = out;
        let mut write_err = None;
        for block in rx.iter() {
            if let Err(e) = hashed.write_all(&block) {
                write_err = Some(e);
                break;
            }
        }
        drop(rx);
        let produced = producer
            .join()
            .unwrap_or_else(|_| Err(LayerError::Write(io::Error::other("tar writer panicked"))));
        if let Some(e) = write_err {
            return Err(LayerError::Write(e));
        }
        produced?;
        Ok((hashed, ()))
    })
}

/// Blocks in flight between the tar producer and the hashing writer (1 MiB each).
const QUEUED_BLOCKS: usize = 4;

/// Hands each block to the writing thread; fails once that thread has stopped.
struct BlockSender(std::sync::mpsc::SyncSender<Vec<u8>>);

impl Write for BlockSender {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .send(buf.to_vec())
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "layer writer stopped"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The producer half of [`write_tar`]: the tar of `upper`, in fixed blocks, into `out`.
fn produce_tar(
    upper: &Path,
    out: BlockWriter<BlockSender>,
    opts: &LayerOptions,
) -> Result<(), LayerError> {
    let mut writer = TarWriter {
        builder: tar::Builder::new(out),
        clamp: opts.clamp_mtime,
        links: HashMap::new(),
    };

    let walk = walkdir::WalkDir::new(upper)
        .follow_links(false)
        .sort_by_file_name();
    for item in walk {
        let item = item.map_err(|source| LayerError::Walk {
            path: upper.to_path_buf(),
            source,
        })?;
        if item.depth() == 0 {
            continue;
        }
        let rel = item.path().strip_prefix(upper).map_err(|_| {
            LayerError::io(
                item.path(),
                "strip upper prefix",
                io::ErrorKind::InvalidData.into(),
            )
        })?;
        writer.add(item.path(), rel.as_os_str().as_bytes(), item.file_type())?;
    }

    let blocks = writer.builder.into_inner().map_err(LayerError::Write)?;
    blocks.finish().map_err(LayerError::Write)?;
    Ok(())
}

struct TarWriter<W: Write> {
    builder: tar::Builder<W>,
    clamp: Option<i64>,
    /// (dev, inode) of regular files with several links -> first name written.
    links: HashMap<(u64, u64), Vec<u8>>,
}

/// A header under construction plus the PAX records it needs.
struct Entry {
    header: Header,
    pax: BTreeMap<String, Vec<u8>>,
}

impl<W: Write> TarWriter<W> {
    fn add(
        &mut self,
        path: &Path,
        rel: &[u8],
        walked: std::fs::FileType,
    ) -> Result<(), LayerError> {
        if walked.is_file() {
            // The walk's d_type says regular file: open it (O_NOFOLLOW refuses a swapped-in
            // symlink) and take type, metadata and xattrs from the descriptor, one path lookup
            // instead of three (lstat, llistxattr, open) per file.
            return self.add_file(path, rel, None);
        }
        let md = std::fs::symlink_metadata(path).map_err(|e| LayerError::io(path, "lstat", e))?;
        let ft = md.file_type();
        if ft.is_char_device() && md.rdev() == 0 {
            return self.add_marker(&whiteout_name(rel), path);
        }
        if ft.is_socket() {
            return Ok(()); // sockets cannot be archived; every builder skips them
        }
        let xattrs = read_xattrs(path)?;

        if ft.is_dir() {
            let mut name = rel.to_vec();
            name.push(b'/');
            let mut e = self.entry(&md, EntryType::Directory, 0);
            self.set_name(&mut e, &name);
            add_xattrs(&mut e, &xattrs);
            self.append(e, path, io::empty())?;
            if is_opaque(path)? {
                let mut marker = rel.to_vec();
                marker.push(b'/');
                marker.extend_from_slice(OPAQUE_MARKER.as_bytes());
                self.add_marker(&marker, path)?;
            }
        } else if ft.is_file() {
            self.add_file(path, rel, Some(xattrs))?;
        } else if ft.is_symlink() {
            let target =
                std::fs::read_link(path).map_err(|e| LayerError::io(path, "readlink", e))?;
            let mut e = self.entry(&md, EntryType::Symlink, 0);
            self.set_name(&mut e, rel);
            set_link_name(&mut e, target.as_os_str().as_bytes());
            add_xattrs(&mut e, &xattrs);
            self.append(e, path, io::empty())?;
        } else if ft.is_char_device() || ft.is_block_device() {
            let kind = if ft.is_char_device() {
                EntryType::Char
            } else {
                EntryType::Block
            };
            let mut e = self.entry(&md, kind, 0);
            self.set_name(&mut e, rel);
            let rdev = md.rdev();
            let (major, minor) = (libc::major(rdev), libc::minor(rdev));
            e.header
                .set_device_major(major)
                .and_then(|_| e.header.set_device_minor(minor))
                .map_err(|err| LayerError::io(path, "device numbers", err))?;
            add_xattrs(&mut e, &xattrs);
            self.append(e, path, io::empty())?;
        } else if ft.is_fifo() {
            let mut e = self.entry(&md, EntryType::Fifo, 0);
            self.set_name(&mut e, rel);
            add_xattrs(&mut e, &xattrs);
            self.append(e, path, io::empty())?;
        }
        Ok(())
    }

    /// A regular file; `xattrs` when already read, else read from the opened file.
    fn add_file(
        &mut self,
        path: &Path,
        rel: &[u8],
        xattrs: Option<Xattrs>,
    ) -> Result<(), LayerError> {
        // Open first and describe the opened file, so the header matches the bytes we stream
        // even if the path was swapped after the walk's lstat.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| LayerError::io(path, "open", e))?;
        let md = file
            .metadata()
            .map_err(|e| LayerError::io(path, "fstat", e))?;
        if !md.is_file() {
            // Not what the walk saw (replaced since): take the general path.
            return self.add(path, rel, md.file_type());
        }
        let xattrs = match xattrs {
            Some(x) => x,
            None => read_file_xattrs(&file, path)?,
        };
        let xattrs = &xattrs;
        if md.nlink() > 1 {
            let key = (md.dev(), md.ino());
            if let Some(first) = self.links.get(&key).cloned() {
                let mut e = self.entry(&md, EntryType::Link, 0);
                self.set_name(&mut e, rel);
                set_link_name(&mut e, &first);
                add_xattrs(&mut e, xattrs);
                return self.append(e, path, io::empty());
            }
            self.links.insert(key, rel.to_vec());
        }
        let mut e = self.entry(&md, EntryType::Regular, md.len());
        self.set_name(&mut e, rel);
        add_xattrs(&mut e, xattrs);
        self.append(e, path, ExactReader::new(file, md.len(), path))
    }

    /// A `.wh.NAME` or `.wh..wh..opq` entry: empty regular file, no host metadata.
    fn add_marker(&mut self, name: &[u8], path: &Path) -> Result<(), LayerError> {
        let mut header = Header::new_ustar();
        header.set_entry_type(EntryType::Regular);
        header.set_mode(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(0);
        let _ = header.set_device_major(0);
        let _ = header.set_device_minor(0);
        let mut e = Entry {
            header,
            pax: BTreeMap::new(),
        };
        self.set_name(&mut e, name);
        self.append(e, path, io::empty())
    }

    fn entry(&self, md: &Metadata, kind: EntryType, size: u64) -> Entry {
        let mut header = Header::new_ustar();
        let mut pax = BTreeMap::new();
        header.set_entry_type(kind);
        header.set_mode(md.mode() & 0o7777);
        let (uid, gid) = (u64::from(md.uid()), u64::from(md.gid()));
        header.set_uid(if uid > MAX_OCTAL_ID { 0 } else { uid });
        header.set_gid(if gid > MAX_OCTAL_ID { 0 } else { gid });
        if uid > MAX_OCTAL_ID {
            pax.insert("uid".to_string(), uid.to_string().into_bytes());
        }
        if gid > MAX_OCTAL_ID {
            pax.insert("gid".to_string(), gid.to_string().into_bytes());
        }
        let mut mtime = md.mtime();
        if let Some(clamp) = self.clamp {
            mtime = mtime.min(clamp);
        }
        // Pre-1970 and post-2242 times do not fit ustar; such trees are not worth a PAX record.
        header.set_mtime(mtime.clamp(0, MAX_OCTAL_SIZE as i64) as u64);
        if size > MAX_OCTAL_SIZE {
            header.set_size(0);
            pax.insert("size".to_string(), size.to_string().into_bytes());
        } else {
            header.set_size(size);
        }
        // Go's archive/tar writes zero device numbers on every ustar entry; so do we.
        let _ = header.set_device_major(0);
        let _ = header.set_device_minor(0);
        Entry { header, pax }
    }

    /// Puts `name` in the ustar name (or prefix+name) fields, or in a PAX `path` record.
    fn set_name(&self, e: &mut Entry, name: &[u8]) {
        let Some(ustar) = e.header.as_ustar_mut() else {
            return;
        };
        ustar.name = [0; NAME_LEN];
        ustar.prefix = [0; PREFIX_LEN];
        if name.len() <= NAME_LEN {
            ustar.name[..name.len()].copy_from_slice(name);
        } else if let Some((prefix, rest)) = split_ustar_path(name) {
            ustar.prefix[..prefix.len()].copy_from_slice(prefix);
            ustar.name[..rest.len()].copy_from_slice(rest);
        } else {
            ustar.name.copy_from_slice(&name[..NAME_LEN]);
            e.pax.insert("path".to_string(), name.to_vec());
        }
    }

    fn append<R: Read>(&mut self, mut e: Entry, path: &Path, data: R) -> Result<(), LayerError> {
        if !e.pax.is_empty() {
            let name = e.header.as_ustar().map(|u| u.name).unwrap_or([0; NAME_LEN]);
            self.append_pax(&e.pax, &name)
                .map_err(|err| LayerError::io(path, "write PAX header", err))?;
        }
        e.header.set_cksum();
        self.builder
            .append(&e.header, data)
            .map_err(|err| match err.kind() {
                io::ErrorKind::UnexpectedEof => LayerError::io(path, "read (file shrank)", err),
                _ => LayerError::Write(err),
            })
    }

    /// Writes a PAX extended header entry, named `PaxHeaders.0/<base>` as Go's archive/tar does.
    fn append_pax(
        &mut self,
        records: &BTreeMap<String, Vec<u8>>,
        name: &[u8; NAME_LEN],
    ) -> io::Result<()> {
        let mut data = Vec::new();
        for (key, value) in records {
            // A record is "<len> <key>=<value>\n" where <len> counts its own digits.
            let rest = key.len() + value.len() + 3;
            let mut len = rest + 1;
            while len != rest + len.to_string().len() {
                len = rest + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        let real = &name[..name.iter().position(|b| *b == 0).unwrap_or(NAME_LEN)];
        let trimmed = real.strip_suffix(b"/").unwrap_or(real);
        let base = trimmed.rsplit(|b| *b == b'/').next().unwrap_or(trimmed);
        let mut pax_name = b"PaxHeaders.0/".to_vec();
        pax_name.extend_from_slice(base);
        pax_name.truncate(NAME_LEN);

        let mut header = Header::new_ustar();
        header.set_entry_type(EntryType::XHeader);
        header.set_mode(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(data.len() as u64);
        let _ = header.set_device_major(0);
        let _ = header.set_device_minor(0);
        if let Some(u) = header.as_ustar_mut() {
            u.name = [0; NAME_LEN];
            u.name[..pax_name.len()].copy_from_slice(&pax_name);
        }
        header.set_cksum();
        self.builder.append(&header, &data[..])
    }
}

/// Go's `splitUSTARPath`: split a long name at a `/` into prefix (<=155) and name (<=100).
fn split_ustar_path(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if name.len() <= NAME_LEN || !name.is_ascii() {
        return None;
    }
    let mut length = name.len();
    if length > PREFIX_LEN + 1 {
        length = PREFIX_LEN + 1;
    } else if name[length - 1] == b'/' {
        length -= 1;
    }
    let i = name[..length].iter().rposition(|b| *b == b'/')?;
    let nlen = name.len() - i - 1;
    if i == 0 || nlen > NAME_LEN || nlen == 0 || i > PREFIX_LEN {
        return None;
    }
    Some((&name[..i], &name[i + 1..]))
}

fn set_link_name(e: &mut Entry, target: &[u8]) {
    let Some(ustar) = e.header.as_ustar_mut() else {
        return;
    };
    ustar.linkname = [0; NAME_LEN];
    if target.len() <= NAME_LEN {
        ustar.linkname[..target.len()].copy_from_slice(target);
    } else {
        ustar.linkname.copy_from_slice(&target[..NAME_LEN]);
        e.pax.insert("linkpath".to_string(), target.to_vec());
    }
}

fn add_xattrs(e: &mut Entry, xattrs: &[(Vec<u8>, Vec<u8>)]) {
    for (name, value) in xattrs {
        let key = format!("SCHILY.xattr.{}", String::from_utf8_lossy(name));
        e.pax.insert(key, value.clone());
    }
}

/// `dir/name` -> `dir/.wh.name`
fn whiteout_name(rel: &[u8]) -> Vec<u8> {
    let (dir, base) = match rel.iter().rposition(|b| *b == b'/') {
        Some(i) => (&rel[..=i], &rel[i + 1..]),
        None => (&b""[..], rel),
    };
    let mut out = dir.to_vec();
    out.extend_from_slice(WHITEOUT_PREFIX.as_bytes());
    out.extend_from_slice(base);
    out
}

/// Reads exactly `len` bytes from a file: errors if it shrank, stops if it grew, so the data
/// always matches the size already written in the header.
struct ExactReader<'a> {
    file: File,
    left: u64,
    path: &'a Path,
}

impl<'a> ExactReader<'a> {
    fn new(file: File, len: u64, path: &'a Path) -> Self {
        ExactReader {
            file,
            left: len,
            path,
        }
    }
}

impl Read for ExactReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.file.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while being archived", self.path.display()),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteout_names() {
        assert_eq!(whiteout_name(b"a"), b".wh.a");
        assert_eq!(whiteout_name(b"d/e/f"), b"d/e/.wh.f");
    }

    #[test]
    fn split_long_paths_like_go() {
        let long = format!("{}/{}", "p".repeat(120), "n".repeat(50));
        let (p, n) = split_ustar_path(long.as_bytes()).unwrap();
        assert_eq!(p.len(), 120);
        assert_eq!(n.len(), 50);
        // A last component over 100 bytes cannot be split.
        let no = format!("a/{}", "n".repeat(120));
        assert!(split_ustar_path(no.as_bytes()).is_none());
    }
}
