//! License strings from package databases → SPDX license expressions (docs/sbom.md, "Licenses").
//!
//! Databases write licenses in their own vocabularies: DEP-5 short names in Debian copyright files
//! (`GPL-2+`, `Expat`, `GPL-2+ or Artistic`), mostly-SPDX strings in apk and npm, free text or
//! trove classifiers in Python metadata. A name that maps to an SPDX license id becomes that id;
//! anything else becomes a `LicenseRef-…` (declared in the document's extracted licenses by
//! `spdx.rs`), so the expression stays valid SPDX.

/// SPDX ids that databases commonly name (matched case-insensitively, written canonically).
const SPDX_IDS: &[&str] = &[
    "0BSD",
    "AFL-2.1",
    "AFL-3.0",
    "AGPL-3.0-only",
    "AGPL-3.0-or-later",
    "Apache-1.1",
    "Apache-2.0",
    "APSL-2.0",
    "Artistic-1.0",
    "Artistic-1.0-Perl",
    "Artistic-2.0",
    "Beerware",
    "BlueOak-1.0.0",
    "BSD-1-Clause",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "BSD-4-Clause",
    "BSD-4-Clause-UC",
    "BSD-4.3TAHOE",
    "BSL-1.0",
    "bzip2-1.0.6",
    "CC-BY-3.0",
    "CC-BY-4.0",
    "CC-BY-SA-3.0",
    "CC-BY-SA-4.0",
    "CC0-1.0",
    "CDDL-1.0",
    "CDDL-1.1",
    "curl",
    "EPL-1.0",
    "EPL-2.0",
    "EUPL-1.2",
    "FSFAP",
    "FSFUL",
    "FSFULLR",
    "FTL",
    "GFDL-1.2-only",
    "GFDL-1.2-or-later",
    "GFDL-1.3-only",
    "GFDL-1.3-or-later",
    "GFDL-1.3-no-invariants-only",
    "GFDL-1.3-no-invariants-or-later",
    "GPL-1.0-only",
    "GPL-1.0-or-later",
    "GPL-2.0-only",
    "GPL-2.0-or-later",
    "GPL-3.0-only",
    "GPL-3.0-or-later",
    "HPND",
    "ICU",
    "IJG",
    "ISC",
    "LGPL-2.0-only",
    "LGPL-2.0-or-later",
    "LGPL-2.1-only",
    "LGPL-2.1-or-later",
    "LGPL-3.0-only",
    "LGPL-3.0-or-later",
    "Latex2e",
    "Libpng",
    "libtiff",
    "MIT",
    "MIT-0",
    "MPL-1.1",
    "MPL-2.0",
    "NCSA",
    "OFL-1.1",
    "OpenSSL",
    "PHP-3.01",
    "PostgreSQL",
    "PSF-2.0",
    "Python-2.0",
    "Ruby",
    "Sleepycat",
    "SMAIL-GPL",
    "Unicode-3.0",
    "Unicode-DFS-2016",
    "Unlicense",
    "Vim",
    "W3C",
    "WTFPL",
    "X11",
    "Zlib",
    "ZPL-2.1",
];

/// Names databases use for SPDX ids (DEP-5 short names, deprecated SPDX ids, Python classifiers).
const ALIASES: &[(&str, &str)] = &[
    ("Expat", "MIT"),
    ("MIT License", "MIT"),
    ("Artistic", "Artistic-1.0-Perl"),
    ("Apache-2", "Apache-2.0"),
    ("Apache 2.0", "Apache-2.0"),
    ("Apache License 2.0", "Apache-2.0"),
    ("Apache License, Version 2.0", "Apache-2.0"),
    ("Apache Software License", "Apache-2.0"),
    ("BSD", "BSD-3-Clause"),
    ("BSD License", "BSD-3-Clause"),
    ("new BSD", "BSD-3-Clause"),
    ("CC0", "CC0-1.0"),
    ("PSF", "PSF-2.0"),
    ("PSF-2", "PSF-2.0"),
    ("Python Software Foundation License", "PSF-2.0"),
    ("ISC License (ISCL)", "ISC"),
    ("Mozilla Public License 2.0 (MPL 2.0)", "MPL-2.0"),
    ("The Unlicense (Unlicense)", "Unlicense"),
    ("zlib/libpng", "Zlib"),
    ("SIL-OFL-1.1", "OFL-1.1"),
    ("GFDL-NIV-1.3", "GFDL-1.3-no-invariants-only"),
    ("GFDL-NIV-1.3+", "GFDL-1.3-no-invariants-or-later"),
    ("public-domain", "LicenseRef-public-domain"),
    ("GPL", "GPL-1.0-or-later"),
    ("LGPL", "LGPL-2.0-or-later"),
];

/// A Python trove classifier's license part (`License :: OSI Approved :: MIT License`).
pub(crate) fn from_classifier(classifier: &str) -> Option<String> {
    let last = classifier
        .strip_prefix("License ::")?
        .rsplit("::")
        .next()?
        .trim();
    let gnu = [
        ("GNU General Public License v2 (GPLv2)", "GPL-2.0-only"),
        (
            "GNU General Public License v2 or later (GPLv2+)",
            "GPL-2.0-or-later",
        ),
        ("GNU General Public License v3 (GPLv3)", "GPL-3.0-only"),
        (
            "GNU General Public License v3 or later (GPLv3+)",
            "GPL-3.0-or-later",
        ),
        (
            "GNU Lesser General Public License v2 (LGPLv2)",
            "LGPL-2.0-only",
        ),
        (
            "GNU Lesser General Public License v2 or later (LGPLv2+)",
            "LGPL-2.0-or-later",
        ),
        (
            "GNU Lesser General Public License v3 (LGPLv3)",
            "LGPL-3.0-only",
        ),
        (
            "GNU Lesser General Public License v3 or later (LGPLv3+)",
            "LGPL-3.0-or-later",
        ),
    ];
    if let Some((_, id)) = gnu.iter().find(|(n, _)| *n == last) {
        return Some((*id).to_owned());
    }
    canonical(last)
}

/// The SPDX id for one license name, if it is (or is an alias of) one.
fn canonical(name: &str) -> Option<String> {
    if let Some((_, id)) = ALIASES.iter().find(|(a, _)| a.eq_ignore_ascii_case(name)) {
        return Some((*id).to_owned());
    }
    if let Some(id) = SPDX_IDS.iter().find(|id| id.eq_ignore_ascii_case(name)) {
        return Some((*id).to_owned());
    }
    // GNU-style names: `GPL-2`, `GPL-2+`, `LGPL-2.1+`, `GPL-2.0+` (deprecated SPDX), `GFDL-1.3`.
    let (base, later) = match name.strip_suffix('+') {
        Some(b) => (b, true),
        None => (name, false),
    };
    let base = base.trim_end_matches("-only").trim_end_matches("-or-later");
    let (family, ver) = base.split_once('-')?;
    let family = ["GPL", "LGPL", "AGPL", "GFDL"]
        .iter()
        .find(|f| f.eq_ignore_ascii_case(family))?;
    let ver = if ver.contains('.') {
        ver.to_owned()
    } else {
        format!("{ver}.0")
    };
    let id = format!("{family}-{ver}-{}", if later { "or-later" } else { "only" });
    SPDX_IDS.iter().find(|k| **k == id).map(|k| (*k).to_owned())
}

/// A `LicenseRef-` id for a name SPDX does not know (idstring: letters, digits, `.`, `-`).
pub(crate) fn license_ref(name: &str) -> String {
    let mut id = String::from("LicenseRef-");
    let mut dash = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '.' {
            id.push(c);
            dash = false;
        } else if !dash {
            id.push('-');
            dash = true;
        }
    }
    let id = id.trim_end_matches('-').to_owned();
    if id == "LicenseRef" {
        "LicenseRef-unknown".to_owned()
    } else {
        id
    }
}

/// Normalizes a license field (DEP-5, apk, npm, Python) to an SPDX expression. `None` when the
/// field is empty or says nothing (`UNKNOWN`, `NOASSERTION`).
pub(crate) fn normalize(raw: &str) -> Option<String> {
    let raw = raw.lines().next().unwrap_or("").trim();
    if raw.is_empty()
        || [
            "unknown",
            "noassertion",
            "none",
            "see license",
            "see license file",
        ]
        .iter()
        .any(|s| raw.eq_ignore_ascii_case(s))
    {
        return None;
    }
    if let Some(id) = canonical(raw) {
        return Some(id);
    }
    expression(raw).or_else(|| Some(license_ref(raw)))
}

/// Translates `A or B and C` / `(A OR B)` with each name mapped; `None` when it is not an
/// expression (two names in a row: free text like "MIT License" handled above, or prose).
fn expression(raw: &str) -> Option<String> {
    let spaced = raw
        .replace('(', " ( ")
        .replace(')', " ) ")
        .replace(',', " ");
    let mut out: Vec<String> = Vec::new();
    let mut depth = 0i32;
    let mut expect_name = true;
    let mut words = spaced.split_whitespace().peekable();
    while let Some(w) = words.next() {
        let op = ["and", "or"].iter().find(|o| o.eq_ignore_ascii_case(w));
        match (w, op) {
            ("(", _) if expect_name => {
                depth += 1;
                out.push("(".into());
            }
            (")", _) if !expect_name && depth > 0 => {
                depth -= 1;
                out.push(")".into());
            }
            (_, Some(op)) if !expect_name => {
                out.push(op.to_ascii_uppercase());
                expect_name = true;
            }
            _ if expect_name && w != "(" && w != ")" && op.is_none() => {
                // `GPL-3+ with Bison exception`: `… WITH Bison-exception-2.2` when SPDX lists
                // the exception, else the whole phrase folds into one LicenseRef.
                let mut name = w.to_owned();
                if words.peek().is_some_and(|n| n.eq_ignore_ascii_case("with")) {
                    let mut phrase: Vec<&str> = Vec::new();
                    while let Some(n) = words.peek() {
                        if ["and", "or", ")"].iter().any(|o| o.eq_ignore_ascii_case(n)) {
                            break;
                        }
                        phrase.push(n);
                        words.next();
                    }
                    let id = canonical(&name);
                    match (&id, exception(id.as_deref().unwrap_or(""), &phrase[1..])) {
                        (Some(id), Some(exc)) => out.push(format!("{id} WITH {exc}")),
                        _ => {
                            name.push(' ');
                            name.push_str(&phrase.join(" "));
                            out.push(license_ref(&name));
                        }
                    }
                } else {
                    out.push(canonical(&name).unwrap_or_else(|| license_ref(&name)));
                }
                expect_name = false;
            }
            _ => return None,
        }
    }
    if expect_name || depth != 0 {
        return None;
    }
    Some(out.join(" ").replace("( ", "(").replace(" )", ")"))
}

/// The SPDX exception id for a DEP-5 `with X exception` phrase (`X` = `words`, `exception`
/// dropped), for the license `id` it modifies.
fn exception(id: &str, words: &[&str]) -> Option<&'static str> {
    let key = words
        .iter()
        .filter(|w| !w.eq_ignore_ascii_case("exception"))
        .map(|w| w.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(" ");
    let gpl3 = id.starts_with("GPL-3.0");
    Some(match key.as_str() {
        "bison" => "Bison-exception-2.2",
        "autoconf" if gpl3 => "Autoconf-exception-3.0",
        "autoconf" => "Autoconf-exception-2.0",
        "libtool" => "Libtool-exception",
        "font" => "Font-exception-2.0",
        "classpath" => "Classpath-exception-2.0",
        "gcc-3.1" | "gcc 3.1" | "gcc-exception-3.1" => "GCC-exception-3.1",
        "llvm" => "LLVM-exception",
        "texinfo" => "Texinfo-exception",
        _ => return None,
    })
}

/// Joins several expressions with AND (distinct, sorted; an OR inside is parenthesized).
pub(crate) fn all_of(exprs: impl IntoIterator<Item = String>) -> Option<String> {
    let mut v: Vec<String> = exprs.into_iter().collect();
    v.sort();
    v.dedup();
    if v.len() <= 1 {
        return v.pop();
    }
    Some(
        v.into_iter()
            .map(|e| {
                if e.contains(" OR ") {
                    format!("({e})")
                } else {
                    e
                }
            })
            .collect::<Vec<_>>()
            .join(" AND "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep5_names_become_spdx_ids() {
        assert_eq!(normalize("GPL-2+").as_deref(), Some("GPL-2.0-or-later"));
        assert_eq!(normalize("GPL-3").as_deref(), Some("GPL-3.0-only"));
        assert_eq!(normalize("LGPL-2.1+").as_deref(), Some("LGPL-2.1-or-later"));
        assert_eq!(normalize("Expat").as_deref(), Some("MIT"));
        assert_eq!(normalize("BSD-3-clause").as_deref(), Some("BSD-3-Clause"));
        assert_eq!(
            normalize("GPL-2+ or Artistic").as_deref(),
            Some("GPL-2.0-or-later OR Artistic-1.0-Perl")
        );
        assert_eq!(
            normalize("GPL-2+ with OpenSSL exception").as_deref(),
            Some("LicenseRef-GPL-2-with-OpenSSL-exception")
        );
        assert_eq!(
            normalize("GPL-3+ with Bison exception").as_deref(),
            Some("GPL-3.0-or-later WITH Bison-exception-2.2")
        );
        assert_eq!(
            normalize("GPL-2+ with Autoconf exception or MIT").as_deref(),
            Some("GPL-2.0-or-later WITH Autoconf-exception-2.0 OR MIT")
        );
        assert_eq!(
            normalize("permissive-fsf").as_deref(),
            Some("LicenseRef-permissive-fsf")
        );
    }

    #[test]
    fn spdx_expressions_and_free_text() {
        assert_eq!(
            normalize("(MIT OR Apache-2.0) AND Zlib").as_deref(),
            Some("(MIT OR Apache-2.0) AND Zlib")
        );
        assert_eq!(normalize("MIT License").as_deref(), Some("MIT"));
        assert_eq!(
            normalize("Some custom text here").as_deref(),
            Some("LicenseRef-Some-custom-text-here")
        );
        assert_eq!(normalize("UNKNOWN"), None);
        assert_eq!(normalize(""), None);
        assert_eq!(normalize("MIT AND"), Some("LicenseRef-MIT-AND".into()));
    }

    #[test]
    fn classifiers_and_joins() {
        assert_eq!(
            from_classifier("License :: OSI Approved :: MIT License").as_deref(),
            Some("MIT")
        );
        assert_eq!(
            from_classifier("License :: OSI Approved :: GNU General Public License v2 (GPLv2)")
                .as_deref(),
            Some("GPL-2.0-only")
        );
        assert_eq!(from_classifier("Programming Language :: Python"), None);
        assert_eq!(
            all_of([
                "Zlib".to_owned(),
                "MIT OR ISC".to_owned(),
                "Zlib".to_owned()
            ])
            .as_deref(),
            Some("(MIT OR ISC) AND Zlib")
        );
    }
}
