//! Lenient readers for image JSON as Go programs write it.
//!
//! Go's `encoding/json` writes a nil slice or map as `null` (Docker's `"OnBuild": null`,
//! BuildKit's `"Volumes": null`), and reads `null` into any field as its zero value. These
//! wrappers do the same: `null` or an absent field is the empty list/map/string, `false` or `0`.
//! A value of the wrong kind is an error saying what was expected and what was found
//! (`expected a list, got a number`); `serde_path_to_error` adds where (`config.OnBuild`).

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

/// The JSON kind of a value, as an error names it.
fn got<E: de::Error>(want: &str, kind: &str) -> E {
    E::custom(format!("expected {want}, got {kind}"))
}

/// Visitor methods that refuse the listed scalar kinds with an "expected X, got Y" error.
macro_rules! refuse {
    ($want:expr; $($kind:ident),*) => { $(refuse!(@ $want; $kind);)* };
    (@ $want:expr; bool) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> { Err(got($want, "a boolean")) }
    };
    (@ $want:expr; i64) => {
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> { Err(got($want, "a number")) }
    };
    (@ $want:expr; u64) => {
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> { Err(got($want, "a number")) }
    };
    (@ $want:expr; f64) => {
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> { Err(got($want, "a number")) }
    };
    (@ $want:expr; str) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> { Err(got($want, "a string")) }
    };
}

/// A JSON list; `null` or absent is empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct List<T>(pub Vec<T>);

/// A JSON list where `null`/absent (`None`) differs from `[]` (`Cmd`, `Entrypoint`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OptList<T>(pub Option<Vec<T>>);

/// A JSON object; `null` or absent is empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Map<V>(pub BTreeMap<String, V>);

/// A JSON object used as a set (`ExposedPorts`, `Volumes`): only the keys count, whatever the
/// values are (Docker writes `{}`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Set(pub Vec<String>);

/// A string; `null` or absent is `""`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Str(pub String);

/// A boolean; `null` or absent is `false`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bool(pub bool);

/// A whole number (Go `int64`, e.g. a `time.Duration`); `null` or absent is 0.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Int(pub i64);

struct ListVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
    type Value = Option<Vec<T>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Some(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(got("a list", "an object"))
    }
    refuse!("a list"; bool, i64, u64, f64, str);
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OptList<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ListVisitor(PhantomData)).map(OptList)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ListVisitor(PhantomData))
            .map(|v| List(v.unwrap_or_default()))
    }
}

struct MapVisitor<V>(PhantomData<V>);

impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
    type Value = BTreeMap<String, V>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(BTreeMap::new())
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(BTreeMap::new())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some((k, v)) = map.next_entry::<String, V>()? {
            out.insert(k, v);
        }
        Ok(out)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(got("an object", "a list"))
    }
    refuse!("an object"; bool, i64, u64, f64, str);
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Map<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MapVisitor(PhantomData)).map(Map)
    }
}

impl<'de> Deserialize<'de> for Set {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = d.deserialize_any(MapVisitor::<de::IgnoredAny>(PhantomData))?;
        Ok(Set(m.into_keys().collect()))
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }
    fn visit_none<E: de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<String, A::Error> {
        Err(got("a string", "a list"))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<String, A::Error> {
        Err(got("a string", "an object"))
    }
    refuse!("a string"; bool, i64, u64, f64);
}

impl<'de> Deserialize<'de> for Str {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrVisitor).map(Str)
    }
}

struct BoolVisitor;

impl<'de> Visitor<'de> for BoolVisitor {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a boolean")
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_none<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        Ok(v)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<bool, A::Error> {
        Err(got("a boolean", "a list"))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<bool, A::Error> {
        Err(got("a boolean", "an object"))
    }
    refuse!("a boolean"; i64, u64, f64, str);
}

impl<'de> Deserialize<'de> for Bool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(BoolVisitor).map(Bool)
    }
}

struct IntVisitor;

impl<'de> Visitor<'de> for IntVisitor {
    type Value = i64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a whole number")
    }
    fn visit_unit<E: de::Error>(self) -> Result<i64, E> {
        Ok(0)
    }
    fn visit_none<E: de::Error>(self) -> Result<i64, E> {
        Ok(0)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::custom(format!("number {v} is too large")))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<i64, A::Error> {
        Err(got("a whole number", "a list"))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<i64, A::Error> {
        Err(got("a whole number", "an object"))
    }
    refuse!("a whole number"; bool, f64, str);
}

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IntVisitor).map(Int)
    }
}

/// `deserialize_with` forms of the wrappers, for derived structs.
pub fn list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    List::deserialize(d).map(|l| l.0)
}

pub fn map<'de, D: Deserializer<'de>, V: Deserialize<'de>>(
    d: D,
) -> Result<BTreeMap<String, V>, D::Error> {
    Map::deserialize(d).map(|m| m.0)
}

pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Str::deserialize(d).map(|s| s.0)
}

/// `null`/absent is `None`; `""` stays `Some("")`.
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(got("a string", "a list"))
        }
        fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(got("a string", "an object"))
        }
        refuse!("a string"; bool, i64, u64, f64);
    }
    d.deserialize_any(V)
}

pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Bool::deserialize(d).map(|b| b.0)
}

pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Int::deserialize(d).map(|i| i.0)
}

/// Where a parse failed, as `document: json.path: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// `image config`, `manifest`, `index`.
    pub document: &'static str,
    /// `config.OnBuild`, `layers[2].digest`; empty at the top level.
    pub path: String,
    pub message: String,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            write!(f, "{}: {}", self.document, self.message)
        } else {
            write!(f, "{}: {}: {}", self.document, self.path, self.message)
        }
    }
}

impl std::error::Error for JsonError {}

/// Parses `bytes` as `T`, tracking the JSON path of a failure.
pub fn parse<'de, T: Deserialize<'de>>(
    document: &'static str,
    bytes: &'de [u8],
) -> Result<T, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = serde_path_to_error::deserialize(&mut de).map_err(|e| JsonError {
        document,
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })?;
    de.end().map_err(|e| JsonError {
        document,
        path: String::new(),
        message: e.to_string(),
    })?;
    Ok(v)
}

/// [`parse`] from an already parsed value (no line numbers then).
pub fn from_value<T: de::DeserializeOwned>(
    document: &'static str,
    v: serde_json::Value,
) -> Result<T, JsonError> {
    serde_path_to_error::deserialize(v).map_err(|e| JsonError {
        document,
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })
}
