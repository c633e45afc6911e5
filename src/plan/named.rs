//! `--build-context NAME=…`: named contexts, looked up before any stage or image of that name
//! (BuildKit's dockerfile2llb: a named context replaces a stage of the same name, and an image
//! name is matched in its familiar form without `:latest`; docs/compat.md "CLI flags").

use std::collections::BTreeMap;

/// The key a name is looked up under: an image reference in its familiar form without
/// `:latest` (`docker.io/library/alpine:latest` → `alpine`), anything else lower-cased.
pub fn context_key(name: &str) -> String {
    match crate::image::Reference::parse(name) {
        Ok(r) => {
            let f = r.familiar();
            f.strip_suffix(":latest").map(str::to_string).unwrap_or(f)
        }
        Err(_) => name.to_lowercase(),
    }
}

/// What `name` (a FROM word or `--from` value) resolves to among the named contexts: the image
/// reference (a store name or id) the context was turned into.
pub fn lookup<'a>(contexts: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    if contexts.is_empty() {
        return None;
    }
    contexts
        .get(&context_key(name))
        .or_else(|| contexts.get(name))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_match_in_familiar_form() {
        let m = BTreeMap::from([
            (context_key("alpine"), "sha256:aa".to_string()),
            (context_key("Base"), "img:1".to_string()),
        ]);
        assert_eq!(
            lookup(&m, "docker.io/library/alpine:latest"),
            Some("sha256:aa")
        );
        assert_eq!(lookup(&m, "alpine:latest"), Some("sha256:aa"));
        assert_eq!(lookup(&m, "alpine:3"), None);
        assert_eq!(lookup(&m, "base"), Some("img:1"));
        assert_eq!(lookup(&m, "BASE"), Some("img:1"));
    }
}
