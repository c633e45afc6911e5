//! The SPDX 2.3 JSON document (docs/sbom.md, "Document").
//!
//! Own serde structs rather than a crate: the SPDX crate on the registry (`spdx-rs` 0.5) models
//! SPDX 2.2.1, stamps a random UUID namespace and `Utc::now()`, and pulls chrono/nom/uuid; we need
//! 2.3 fields and a document that is a pure function of its input. Only the fields we fill are
//! modelled. Serialized through `serde_json::Value`, whose maps are sorted (no `preserve_order`),
//! so key order is fixed too.

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::model::Package;
use super::{SbomError, SbomOptions};

const DOCUMENT_ID: &str = "SPDXRef-DOCUMENT";
const ROOT_ID: &str = "SPDXRef-RootFs";
const NOASSERTION: &str = "NOASSERTION";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    spdx_version: &'static str,
    data_license: &'static str,
    #[serde(rename = "SPDXID")]
    spdx_id: &'static str,
    name: String,
    document_namespace: String,
    creation_info: CreationInfo,
    packages: Vec<SpdxPackage>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    files: Vec<SpdxFile>,
    relationships: Vec<Relationship>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    has_extracted_licensing_infos: Vec<ExtractedLicense>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreationInfo {
    created: String,
    creators: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpdxPackage {
    #[serde(rename = "SPDXID")]
    spdx_id: String,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_info: Option<String>,
    download_location: &'static str,
    /// Files are listed as elements with CONTAINS relationships, not analyzed for a
    /// verification code (which would need every file's bytes read).
    files_analyzed: bool,
    license_concluded: &'static str,
    license_declared: String,
    copyright_text: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_info: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    external_refs: Vec<ExternalRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    primary_package_purpose: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExternalRef {
    reference_category: &'static str,
    reference_type: &'static str,
    reference_locator: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpdxFile {
    #[serde(rename = "SPDXID")]
    spdx_id: String,
    file_name: String,
    checksums: Vec<Checksum>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Checksum {
    algorithm: &'static str,
    checksum_value: String,
}

#[derive(Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
struct Relationship {
    spdx_element_id: String,
    relationship_type: &'static str,
    related_spdx_element: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExtractedLicense {
    license_id: String,
    extracted_text: String,
    name: String,
}

/// Builds the document for `packages` (already sorted by the caller).
pub(crate) fn document(
    packages: &[Package],
    opts: &SbomOptions,
) -> Result<serde_json::Value, SbomError> {
    let created = created(opts.created)?;
    let mut spdx_packages = vec![SpdxPackage {
        spdx_id: ROOT_ID.into(),
        name: opts.name.clone(),
        version_info: None,
        download_location: NOASSERTION,
        files_analyzed: false,
        license_concluded: NOASSERTION,
        license_declared: NOASSERTION.into(),
        copyright_text: NOASSERTION,
        source_info: None,
        external_refs: Vec::new(),
        primary_package_purpose: Some("CONTAINER"),
    }];
    let mut files = Vec::new();
    let mut relationships = vec![Relationship {
        spdx_element_id: DOCUMENT_ID.into(),
        relationship_type: "DESCRIBES",
        related_spdx_element: ROOT_ID.into(),
    }];
    let mut used_ids = std::collections::BTreeSet::new();
    let mut refs = std::collections::BTreeSet::new();
    for p in packages {
        let key = format!("{}\0{}\0{}", p.purl, p.location.display(), p.name);
        let mut id = format!(
            "SPDXRef-Package-{}-{}-{}",
            p.source.as_str(),
            idstring(&p.name),
            &short_hash(&key)
        );
        // Two identical entries (the same purl found twice at one place) keep distinct ids.
        let mut n = 1;
        while !used_ids.insert(id.clone()) {
            n += 1;
            id = format!("{id}-{n}");
        }
        let declared = p.license.clone().unwrap_or_else(|| NOASSERTION.into());
        refs.extend(
            declared
                .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
                .filter(|t| t.starts_with("LicenseRef-"))
                .map(str::to_owned),
        );
        relationships.push(Relationship {
            spdx_element_id: ROOT_ID.into(),
            relationship_type: "CONTAINS",
            related_spdx_element: id.clone(),
        });
        for f in &p.files {
            let fid = format!("SPDXRef-File-{}", short_hash(&format!("{id}\0{}", f.path)));
            relationships.push(Relationship {
                spdx_element_id: id.clone(),
                relationship_type: "CONTAINS",
                related_spdx_element: fid.clone(),
            });
            files.push(SpdxFile {
                spdx_id: fid,
                file_name: f.path.clone(),
                checksums: vec![Checksum {
                    algorithm: f.algorithm.spdx_name(),
                    checksum_value: f.digest.clone(),
                }],
            });
        }
        spdx_packages.push(SpdxPackage {
            spdx_id: id,
            name: p.name.clone(),
            version_info: (!p.version.is_empty()).then(|| p.version.clone()),
            download_location: NOASSERTION,
            files_analyzed: false,
            license_concluded: NOASSERTION,
            license_declared: declared,
            copyright_text: NOASSERTION,
            source_info: Some(format!(
                "{} metadata: /{}",
                p.source.as_str(),
                p.location.display()
            )),
            external_refs: vec![ExternalRef {
                reference_category: "PACKAGE-MANAGER",
                reference_type: "purl",
                reference_locator: p.purl.clone(),
            }],
            primary_package_purpose: None,
        });
    }
    files.sort_by(|a, b| a.spdx_id.cmp(&b.spdx_id));
    files.dedup_by(|a, b| a.spdx_id == b.spdx_id);
    relationships.sort();
    relationships.dedup();
    let extracted = refs
        .into_iter()
        .map(|id| ExtractedLicense {
            name: id.trim_start_matches("LicenseRef-").to_owned(),
            extracted_text: format!(
                "A license the package database names \"{}\"; its text is not extracted.",
                id.trim_start_matches("LicenseRef-")
            ),
            license_id: id,
        })
        .collect();
    let mut doc = Document {
        spdx_version: "SPDX-2.3",
        data_license: "CC0-1.0",
        spdx_id: DOCUMENT_ID,
        name: opts.name.clone(),
        document_namespace: String::new(),
        creation_info: CreationInfo {
            created,
            creators: vec![format!("Tool: {}", opts.tool)],
        },
        packages: spdx_packages,
        files,
        relationships,
        has_extracted_licensing_infos: extracted,
    };
    // The namespace is the digest of everything else, so it changes exactly when content does.
    let digest = hex::encode(Sha256::digest(serde_json::to_vec(&serde_json::to_value(
        &doc,
    )?)?));
    doc.document_namespace = format!(
        "{}/{}-{}",
        opts.namespace_base.trim_end_matches('/'),
        idstring(&opts.name),
        digest
    );
    Ok(serde_json::to_value(&doc)?)
}

/// SPDX wants `YYYY-MM-DDThh:mm:ssZ` (no fraction).
fn created(epoch: Option<i64>) -> Result<String, SbomError> {
    let ts = match epoch {
        Some(s) => jiff::Timestamp::from_second(s).map_err(|_| SbomError::Time(s))?,
        None => jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
            .map_err(|_| SbomError::Time(0))?,
    };
    Ok(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// Letters, digits, `.` and `-` (SPDX's idstring); everything else becomes `-`.
fn idstring(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn short_hash(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sbom::model::{Algorithm, FileRecord, Source};

    fn pkg(name: &str, license: Option<&str>) -> Package {
        Package {
            source: Source::Npm,
            name: name.into(),
            version: "1.0.0".into(),
            purl: format!("pkg:npm/{name}@1.0.0"),
            license: license.map(str::to_owned),
            location: format!("usr/lib/node_modules/{name}/package.json").into(),
            files: vec![FileRecord {
                path: format!("/usr/lib/node_modules/{name}/index.js"),
                algorithm: Algorithm::Sha256,
                digest: "ab".repeat(32),
            }],
        }
    }

    #[test]
    fn document_shape_and_namespace_from_content() {
        let opts = SbomOptions {
            created: Some(0),
            ..SbomOptions::default()
        };
        let d = document(&[pkg("a", Some("MIT OR LicenseRef-x"))], &opts).unwrap();
        assert_eq!(d["spdxVersion"], "SPDX-2.3");
        assert_eq!(d["creationInfo"]["created"], "1970-01-01T00:00:00Z");
        assert_eq!(d["packages"].as_array().unwrap().len(), 2);
        assert_eq!(
            d["packages"][1]["externalRefs"][0]["referenceLocator"],
            "pkg:npm/a@1.0.0"
        );
        assert_eq!(
            d["hasExtractedLicensingInfos"][0]["licenseId"],
            "LicenseRef-x"
        );
        let rel = d["relationships"].as_array().unwrap();
        assert_eq!(rel.len(), 3, "{rel:?}");
        assert!(rel.iter().any(|r| r["relationshipType"] == "DESCRIBES"));
        let ns = d["documentNamespace"].as_str().unwrap().to_owned();
        assert!(
            ns.starts_with("https://rbuild.invalid/spdx/rootfs-"),
            "{ns}"
        );
        // Same input → same namespace; other content → another one.
        let again = document(&[pkg("a", Some("MIT OR LicenseRef-x"))], &opts).unwrap();
        assert_eq!(again, d);
        let other = document(&[pkg("b", None)], &opts).unwrap();
        assert_ne!(other["documentNamespace"].as_str().unwrap(), ns);
        assert_eq!(other["packages"][1]["licenseDeclared"], "NOASSERTION");
    }
}
