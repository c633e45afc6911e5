//! Go: the build info the Go linker writes into `.go.buildinfo` (docs/sbom.md, "Go"). Since
//! Go 1.18 the 32-byte header (`\xff Go buildinf:`, pointer size, flags with bit 2 = inline
//! strings) is followed by two varint-length strings: the Go version and the module info, whose
//! lines are `path`, `mod` (main module), `dep` and `=>` (replacement of the previous dep).
//! Older binaries point at their strings through data pointers and are not read.

use super::elf::Binary;
use super::model::{Package, Source};
use super::purl::purl;

const MAGIC: &[u8] = b"\xff Go buildinf:";

/// What a binary's build info says.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct BuildInfo {
    pub go_version: String,
    /// (module path, version): the main module first, then the dependencies.
    pub modules: Vec<(String, String)>,
}

pub(crate) fn packages(binaries: &[Binary]) -> Vec<Package> {
    let mut out = Vec::new();
    for b in binaries {
        let Some(info) = b.go_buildinfo.as_deref().and_then(parse) else {
            continue;
        };
        let mut push = |name: &str, version: &str, purl: String| {
            out.push(Package {
                source: Source::Go,
                name: name.to_owned(),
                version: version.to_owned(),
                purl,
                license: None,
                location: b.path.clone(),
                files: Vec::new(),
            });
        };
        for (path, version) in &info.modules {
            let (ns, name) = match path.rsplit_once('/') {
                Some((ns, name)) => (Some(ns), name),
                None => (None, path.as_str()),
            };
            push(path, version, purl("golang", ns, name, version, &[]));
        }
        // The standard library compiled in, as its own package (vulnerability databases list it).
        if let Some(v) = info.go_version.strip_prefix("go") {
            let v = v.split_whitespace().next().unwrap_or(v);
            push("stdlib", v, purl("golang", None, "stdlib", v, &[]));
        }
    }
    out
}

/// Reads the build info blob (the section's bytes); `None` when it is not the inline-string form.
pub(crate) fn parse(blob: &[u8]) -> Option<BuildInfo> {
    if !blob.starts_with(MAGIC) || blob.len() < 32 || blob[15] & 2 == 0 {
        return None;
    }
    let mut rest = &blob[32..];
    let version = read_string(&mut rest)?;
    let modinfo = read_string(&mut rest)?;
    // The module info is framed by 16 sentinel bytes on each side.
    let modinfo = if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        &modinfo[16..modinfo.len() - 16]
    } else {
        modinfo
    };
    let mut info = BuildInfo {
        go_version: String::from_utf8_lossy(version).into_owned(),
        modules: Vec::new(),
    };
    for line in String::from_utf8_lossy(modinfo).lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        match cols.as_slice() {
            ["mod" | "dep", path, version, ..] => info
                .modules
                .push(((*path).to_owned(), (*version).to_owned())),
            ["=>", path, version, ..] => {
                if let Some(last) = info.modules.last_mut() {
                    *last = ((*path).to_owned(), (*version).to_owned());
                }
            }
            _ => {}
        }
    }
    Some(info)
}

fn read_string<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let mut len: u64 = 0;
    let mut shift = 0;
    loop {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        len |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    let len = usize::try_from(len).ok()?;
    if len > buf.len() {
        return None;
    }
    let (s, rest) = buf.split_at(len);
    *buf = rest;
    Some(s)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn varint(mut n: usize, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }

    /// A Go 1.18+ build info blob for `version` and `modinfo` (sentinels added).
    pub(crate) fn blob(version: &str, modinfo: &str) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.extend([8u8, 2]);
        b.resize(32, 0);
        varint(version.len(), &mut b);
        b.extend(version.as_bytes());
        let framed = format!("{}{modinfo}{}", "S".repeat(16), "E".repeat(16));
        varint(framed.len(), &mut b);
        b.extend(framed.as_bytes());
        b
    }

    #[test]
    fn parses_modules_with_replacements() {
        let modinfo = "path\texample.com/cmd/app\nmod\texample.com/app\t(devel)\t\n\
dep\tgolang.org/x/sys\tv0.15.0\th1:abc=\n\
dep\tgithub.com/old/mod\tv1.0.0\th1:x=\n=>\tgithub.com/new/mod\tv1.1.0\th1:y=\n\
build\t-compiler=gc\n";
        let info = parse(&blob("go1.21.5", modinfo)).unwrap();
        assert_eq!(info.go_version, "go1.21.5");
        assert_eq!(
            info.modules,
            [
                ("example.com/app".to_owned(), "(devel)".to_owned()),
                ("golang.org/x/sys".to_owned(), "v0.15.0".to_owned()),
                ("github.com/new/mod".to_owned(), "v1.1.0".to_owned()),
            ]
        );
        let b = Binary {
            path: "usr/bin/app".into(),
            dep_v0: None,
            go_buildinfo: Some(blob("go1.21.5", modinfo)),
        };
        let purls: Vec<_> = packages(&[b]).into_iter().map(|p| p.purl).collect();
        assert_eq!(
            purls,
            [
                "pkg:golang/example.com/app@%28devel%29",
                "pkg:golang/golang.org/x/sys@v0.15.0",
                "pkg:golang/github.com/new/mod@v1.1.0",
                "pkg:golang/stdlib@1.21.5",
            ]
        );
    }

    #[test]
    fn rejects_old_format_and_truncation() {
        let mut old = blob("go1.16", "");
        old[15] = 0;
        assert_eq!(parse(&old), None);
        let b = blob("go1.21.5", "mod\tx\tv1\t\n");
        assert_eq!(parse(&b[..40]), None);
        assert_eq!(parse(b"short"), None);
    }
}
