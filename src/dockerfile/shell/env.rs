//! Where the lexer reads variables from: ordered `(key, value)` pairs, `KEY=VALUE` lists (as an
//! image config's Env) or a map.

use std::collections::BTreeMap;

/// Variables visible to an expansion.
pub trait Env {
    fn get(&self, key: &str) -> Option<String>;
    fn keys(&self) -> Vec<String>;
}

impl Env for Vec<(String, String)> {
    fn get(&self, key: &str) -> Option<String> {
        Env::get(self.as_slice(), key)
    }
    fn keys(&self) -> Vec<String> {
        Env::keys(self.as_slice())
    }
}

impl Env for [(String, String)] {
    /// The last definition wins, as with BuildKit's `EnvsFromSlice`.
    fn get(&self, key: &str) -> Option<String> {
        self.iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }
    fn keys(&self) -> Vec<String> {
        self.iter().map(|(k, _)| k.clone()).collect()
    }
}

impl Env for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        BTreeMap::get(self, key).cloned()
    }
    fn keys(&self) -> Vec<String> {
        BTreeMap::keys(self).cloned().collect()
    }
}

/// `K=V` strings (a value-less `K` is set to the empty string).
impl Env for [String] {
    fn get(&self, key: &str) -> Option<String> {
        self.iter().rev().find_map(|e| {
            let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
            (k == key).then(|| v.to_string())
        })
    }
    fn keys(&self) -> Vec<String> {
        self.iter()
            .map(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k).to_string())
            .collect()
    }
}

impl Env for Vec<String> {
    fn get(&self, key: &str) -> Option<String> {
        Env::get(self.as_slice(), key)
    }
    fn keys(&self) -> Vec<String> {
        Env::keys(self.as_slice())
    }
}
