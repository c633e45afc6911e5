//! `--squash`: several layer tars merged into one with the same effect when applied on the same
//! parent (classic Docker's squash, docs/compat.md "CLI flags"). A later layer's entry replaces an
//! earlier one at its path (a non-directory also drops what an earlier layer put below it); a
//! whiteout or opaque marker drops what earlier merged layers put there and is kept, since it may
//! hide files of the parent. Entries are copied with their PAX records (xattrs) and full names.

use super::error::LayerError;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::Path;

/// Which entry (layer, index in that layer) a path ends up as.
type Winner = (usize, usize);

fn normalize(p: &[u8]) -> String {
    let s = String::from_utf8_lossy(p);
    let s = s.trim_start_matches("./").trim_start_matches('/');
    s.trim_end_matches('/').to_string()
}

fn open(path: &Path) -> Result<tar::Archive<Box<dyn Read + Send>>, LayerError> {
    let f = std::fs::File::open(path).map_err(|source| LayerError::Io {
        path: path.to_path_buf(),
        op: "open",
        source,
    })?;
    let (reader, _) = super::compress::decompress(std::io::BufReader::new(f))?;
    Ok(tar::Archive::new(reader))
}

/// Drops the winners strictly below `dir` that come from layers before `layer`.
fn drop_below(winners: &mut BTreeMap<String, Winner>, dir: &str, layer: usize) {
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    let gone: Vec<String> = winners
        .range(prefix.clone()..)
        .take_while(|(p, _)| p.starts_with(&prefix))
        .filter(|(p, w)| w.0 < layer && p.as_str() != dir)
        .map(|(p, _)| p.clone())
        .collect();
    for p in gone {
        winners.remove(&p);
    }
}

/// Merges the layer blobs at `layers` (bottom first; any compression) into one tar on `out`.
pub fn merge_layers<W: Write>(layers: &[&Path], out: W) -> Result<W, LayerError> {
    let read = LayerError::Read;
    let mut winners: BTreeMap<String, Winner> = BTreeMap::new();
    let mut markers: BTreeSet<Winner> = BTreeSet::new();
    for (k, path) in layers.iter().enumerate() {
        let mut ar = open(path)?;
        for (i, e) in ar.entries().map_err(read)?.enumerate() {
            let e = e.map_err(read)?;
            let p = normalize(&e.path_bytes());
            let (dir, base) = p.rsplit_once('/').unwrap_or(("", p.as_str()));
            if base == ".wh..wh..opq" {
                drop_below(&mut winners, dir, k);
                markers.insert((k, i));
            } else if let Some(name) = base.strip_prefix(".wh.") {
                let target = if dir.is_empty() {
                    name.to_string()
                } else {
                    format!("{dir}/{name}")
                };
                drop_below(&mut winners, &target, k);
                if winners.get(&target).is_some_and(|w| w.0 < k) {
                    winners.remove(&target);
                }
                markers.insert((k, i));
            } else {
                if e.header().entry_type() != tar::EntryType::Directory {
                    drop_below(&mut winners, &p, k);
                }
                winners.insert(p, (k, i));
            }
        }
    }
    let keep: BTreeSet<Winner> = winners.into_values().chain(markers).collect();
    let mut b = tar::Builder::new(out);
    for (k, path) in layers.iter().enumerate() {
        let mut ar = open(path)?;
        for (i, e) in ar.entries().map_err(read)?.enumerate() {
            let mut e = e.map_err(read)?;
            if keep.contains(&(k, i)) {
                copy_entry(&mut b, &mut e).map_err(read)?;
            }
        }
    }
    b.into_inner().map_err(read)
}

/// One PAX record: `"<len> <key>=<value>\n"`, the length counting itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len.to_string().len() + rest != len {
        len += 1;
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

/// Writes `e` with a PAX header carrying its records and its full path and link name.
fn copy_entry<W: Write, R: Read>(
    b: &mut tar::Builder<W>,
    e: &mut tar::Entry<R>,
) -> std::io::Result<()> {
    let mut records = Vec::new();
    if let Some(exts) = e.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            let key = ext.key().map_err(std::io::Error::other)?;
            if !matches!(key, "path" | "linkpath") {
                records.extend(pax_record(key, ext.value_bytes()));
            }
        }
    }
    records.extend(pax_record("path", &e.path_bytes()));
    if let Some(l) = e.link_name_bytes() {
        records.extend(pax_record("linkpath", &l));
    }
    let mut x = tar::Header::new_ustar();
    x.set_entry_type(tar::EntryType::XHeader);
    x.set_path("PaxHeaders/entry")?;
    x.set_mode(0o644);
    x.set_size(records.len() as u64);
    x.set_cksum();
    b.append(&x, records.as_slice())?;
    let header = e.header().clone();
    b.append(&header, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(dir: &Path, name: &str, entries: &[(&str, Option<&[u8]>)]) -> std::path::PathBuf {
        let mut b = tar::Builder::new(Vec::new());
        for (p, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_mtime(1);
            match data {
                Some(d) => {
                    h.set_size(d.len() as u64);
                    b.append_data(&mut h, p, *d).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    b.append_data(&mut h, p, std::io::empty()).unwrap();
                }
            }
        }
        let path = dir.join(name);
        std::fs::write(&path, b.into_inner().unwrap()).unwrap();
        path
    }

    #[test]
    fn later_layers_win_and_markers_stay() {
        let d = tempfile::tempdir().unwrap();
        let long = format!("d/{}", "n".repeat(150));
        let l1 = layer(
            d.path(),
            "1",
            &[
                ("d", None),
                ("d/a", Some(b"1")),
                ("d/b", Some(b"1")),
                (&long, Some(b"L")),
                ("x/y", Some(b"1")),
            ],
        );
        let l2 = layer(
            d.path(),
            "2",
            &[
                ("d/a", Some(b"2")),
                ("d/.wh.b", Some(b"")),
                (".wh.base", Some(b"")),
                ("x", Some(b"file")),
            ],
        );
        let out = merge_layers(&[&l1, &l2], Vec::new()).unwrap();
        let mut ar = tar::Archive::new(out.as_slice());
        let mut got = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let p = e.path().unwrap().to_string_lossy().to_string();
            let mut s = String::new();
            e.read_to_string(&mut s).unwrap();
            got.push(format!("{p}={s}"));
        }
        got.sort();
        let want = [
            ".wh.base=",
            "d=",
            "d/.wh.b=",
            "d/a=2",
            &format!("{long}=L"),
            "x=file",
        ];
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(got, want);
    }
}
