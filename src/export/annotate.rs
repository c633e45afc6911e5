//! `--annotation` (buildx's syntax, BuildKit's `annotation-<type>` exporter options):
//! `[TYPE[,TYPE…]][\[PLATFORM\]]:KEY=VALUE` with TYPE one of `manifest` (the default: each image
//! manifest), `manifest-descriptor` (the manifest's descriptor in an index or `index.json`),
//! `index` (the image index itself) and `index-descriptor` (the index's descriptor in
//! `index.json`). A `[os/arch[/variant]]` qualifier limits it to that platform's manifest.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnotationKind {
    Manifest,
    ManifestDescriptor,
    Index,
    IndexDescriptor,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    pub kind: AnnotationKind,
    /// `os/arch[/variant]`: only the manifest of that platform.
    pub platform: Option<String>,
    pub key: String,
    pub value: String,
}

/// Parses one `--annotation` value into one annotation per type it names.
pub fn parse(s: &str) -> Result<Vec<Annotation>, String> {
    let (k, value) = s
        .split_once('=')
        .ok_or_else(|| format!("invalid annotation {s:?}: expected [TYPE:]KEY=VALUE"))?;
    let (types, key) = match k.split_once(':') {
        Some((t, key)) => (t, key),
        None => ("", k),
    };
    if key.is_empty() {
        return Err(format!("invalid annotation {s:?}: empty key"));
    }
    let mut out = Vec::new();
    for t in types.split(',') {
        let (name, platform) = match t.split_once('[') {
            Some((n, rest)) => {
                let p = rest
                    .strip_suffix(']')
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| format!("invalid annotation {s:?}: bad platform in {t:?}"))?;
                (n, Some(p.to_string()))
            }
            None => (t, None),
        };
        let kind = match name {
            "" | "manifest" => AnnotationKind::Manifest,
            "manifest-descriptor" => AnnotationKind::ManifestDescriptor,
            "index" => AnnotationKind::Index,
            "index-descriptor" => AnnotationKind::IndexDescriptor,
            other => {
                return Err(format!(
                    "invalid annotation {s:?}: unknown type {other:?} (manifest, \
                     manifest-descriptor, index, index-descriptor)"
                ))
            }
        };
        if platform.is_some()
            && matches!(
                kind,
                AnnotationKind::Index | AnnotationKind::IndexDescriptor
            )
        {
            return Err(format!(
                "invalid annotation {s:?}: a platform only qualifies manifest annotations"
            ));
        }
        out.push(Annotation {
            kind,
            platform,
            key: key.to_string(),
            value: value.to_string(),
        });
    }
    Ok(out)
}

/// The annotations of `kind` for a manifest of `platform` (`os/arch[/variant]`; None for the
/// index kinds). A later annotation of the same key wins.
pub fn select(
    all: &[Annotation],
    kind: AnnotationKind,
    platform: Option<&str>,
) -> BTreeMap<String, String> {
    all.iter()
        .filter(|a| a.kind == kind)
        .filter(|a| match (&a.platform, platform) {
            (None, _) => true,
            (Some(want), Some(p)) => platform_matches(want, p),
            (Some(_), None) => false,
        })
        .map(|a| (a.key.clone(), a.value.clone()))
        .collect()
}

/// `linux/amd64` matches `linux/amd64` and `linux/amd64/v1`; a qualifier with a variant needs it.
fn platform_matches(want: &str, have: &str) -> bool {
    let w: Vec<&str> = want.split('/').collect();
    let h: Vec<&str> = have.split('/').collect();
    w.len() >= 2 && h.len() >= 2 && w[..2] == h[..2] && (w.len() == 2 || w.get(2) == h.get(2))
}

/// Whether any annotation needs an image index (BuildKit fails such a build without one).
pub fn needs_index(all: &[Annotation]) -> bool {
    all.iter().any(|a| {
        matches!(
            a.kind,
            AnnotationKind::Index | AnnotationKind::IndexDescriptor
        )
    })
}

/// Sets the annotations of one image output (its manifest and that manifest's descriptor).
pub fn annotate_image(img: &mut super::ExportImage, all: &[Annotation], platform: &str) {
    img.manifest_annotations = select(all, AnnotationKind::Manifest, Some(platform));
    img.descriptor_annotations = select(all, AnnotationKind::ManifestDescriptor, Some(platform));
}

/// Sets the annotations of an index output: the index, its descriptor, and each platform's
/// manifest and manifest descriptor.
pub fn annotate_index(idx: &mut super::ExportIndex, all: &[Annotation]) {
    idx.annotations
        .extend(select(all, AnnotationKind::Index, None));
    idx.descriptor_annotations = select(all, AnnotationKind::IndexDescriptor, None);
    for e in &mut idx.entries {
        let (super::ExportContent::Image(img), Some(p)) = (&mut e.content, &e.platform) else {
            continue;
        };
        let mut platform = format!("{}/{}", p.os, p.architecture);
        if let Some(v) = &p.variant {
            platform = format!("{platform}/{v}");
        }
        annotate_image(img, all, &platform);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildx_syntax() {
        let a = parse("org.opencontainers.image.url=https://x.example/a=b").unwrap();
        assert_eq!(a[0].kind, AnnotationKind::Manifest);
        assert_eq!(a[0].key, "org.opencontainers.image.url");
        assert_eq!(a[0].value, "https://x.example/a=b");
        let a = parse("index,manifest-descriptor:k=v").unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].kind, AnnotationKind::Index);
        assert_eq!(a[1].kind, AnnotationKind::ManifestDescriptor);
        let a = parse("manifest[linux/arm64]:k=v").unwrap();
        assert_eq!(a[0].platform.as_deref(), Some("linux/arm64"));
        assert!(parse("blob:k=v").is_err());
        assert!(parse("index[linux/amd64]:k=v").is_err());
        assert!(parse("novalue").is_err());
        let all = [
            parse("manifest[linux/arm64]:a=1").unwrap(),
            parse("b=2").unwrap(),
        ]
        .concat();
        let m = select(&all, AnnotationKind::Manifest, Some("linux/amd64"));
        assert_eq!(m.len(), 1);
        assert_eq!(
            select(&all, AnnotationKind::Manifest, Some("linux/arm64/v8")).len(),
            2
        );
    }
}
