//! Reading an image config as every producer writes it (docs/compat.md, "Image configs").
//!
//! Hand-written `Deserialize` for the two objects that keep unknown fields: serde's `flatten`
//! buffers the whole object, which loses the JSON path of an error, so the fields are matched
//! here one by one. Every modelled field goes through a `lenient` reader (`null` = empty);
//! anything else is kept verbatim in `extra`. A repeated key keeps its last value, as Go does.

use crate::image::config::{ContainerConfig, Empty, History, ImageConfig, RootFs};
use crate::image::lenient::{self, Bool, List, Map, OptList, Set, Str};
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use std::fmt;

fn set<T>(slot: &mut T, v: T) {
    *slot = v;
}

fn ports(s: Set) -> std::collections::BTreeMap<String, Empty> {
    s.0.into_iter().map(|k| (k, Empty {})).collect()
}

impl<'de> Deserialize<'de> for ContainerConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ContainerConfig;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(ContainerConfig::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(ContainerConfig::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut c = ContainerConfig::default();
                while let Some(k) = m.next_key::<String>()? {
                    match k.as_str() {
                        "User" => set(&mut c.user, m.next_value::<Str>()?.0),
                        "ExposedPorts" => set(&mut c.exposed_ports, ports(m.next_value()?)),
                        "Env" => set(&mut c.env, m.next_value::<List<String>>()?.0),
                        "Entrypoint" => set(&mut c.entrypoint, m.next_value::<OptList<_>>()?.0),
                        "Cmd" => set(&mut c.cmd, m.next_value::<OptList<_>>()?.0),
                        "Volumes" => set(&mut c.volumes, ports(m.next_value()?)),
                        "WorkingDir" => set(&mut c.working_dir, m.next_value::<Str>()?.0),
                        "Labels" => set(
                            &mut c.labels,
                            m.next_value::<Map<Str>>()?
                                .0
                                .into_iter()
                                .map(|(k, v)| (k, v.0))
                                .collect(),
                        ),
                        "StopSignal" => set(&mut c.stop_signal, m.next_value::<Str>()?.0),
                        "ArgsEscaped" => set(&mut c.args_escaped, m.next_value::<Bool>()?.0),
                        "Healthcheck" => set(&mut c.healthcheck, m.next_value()?),
                        "OnBuild" => set(&mut c.on_build, m.next_value::<List<String>>()?.0),
                        "Shell" => set(&mut c.shell, m.next_value::<List<String>>()?.0),
                        _ => {
                            let v: Value = m.next_value()?;
                            c.extra.insert(k, v);
                        }
                    }
                }
                Ok(c)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
                Err(de::Error::custom("expected an object, got a list"))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Err(E::custom("expected an object, got a string"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Err(E::custom("expected an object, got a boolean"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Err(E::custom("expected an object, got a number"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Err(E::custom("expected an object, got a number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Err(E::custom("expected an object, got a number"))
            }
        }
        d.deserialize_any(V)
    }
}

/// `rootfs` and `history`, where `null` is the empty value.
struct NullOr<T>(Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NullOr<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<T>::deserialize(d).map(NullOr)
    }
}

impl<'de> Deserialize<'de> for ImageConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ImageConfig;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut c = ImageConfig {
                    created: None,
                    author: None,
                    architecture: String::new(),
                    os: String::new(),
                    variant: None,
                    config: ContainerConfig::default(),
                    rootfs: RootFs::default(),
                    history: Vec::new(),
                    extra: Default::default(),
                };
                while let Some(k) = m.next_key::<String>()? {
                    match k.as_str() {
                        "created" => set(&mut c.created, m.next_value::<OptStr>()?.0),
                        // `""` is written as absent, so it reads as absent too.
                        "author" => set(&mut c.author, m.next_value::<OptStr>()?.non_empty()),
                        "architecture" => set(&mut c.architecture, m.next_value::<Str>()?.0),
                        "os" => set(&mut c.os, m.next_value::<Str>()?.0),
                        "variant" => set(&mut c.variant, m.next_value::<OptStr>()?.non_empty()),
                        "config" => set(&mut c.config, m.next_value()?),
                        "rootfs" => set(
                            &mut c.rootfs,
                            m.next_value::<NullOr<RootFs>>()?.0.unwrap_or_default(),
                        ),
                        "history" => set(&mut c.history, m.next_value::<List<History>>()?.0),
                        _ => {
                            let v: Value = m.next_value()?;
                            c.extra.insert(k, v);
                        }
                    }
                }
                Ok(c)
            }
        }
        d.deserialize_map(V)
    }
}

/// An optional string: `null`/absent is `None`.
struct OptStr(Option<String>);

impl OptStr {
    fn non_empty(self) -> Option<String> {
        self.0.filter(|s| !s.is_empty())
    }
}

impl<'de> Deserialize<'de> for OptStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        lenient::opt_string(d).map(OptStr)
    }
}

#[cfg(test)]
mod tests {
    use crate::image::manifest::{Index, Manifest};
    use crate::image::ImageConfig;

    #[test]
    fn nulls_read_as_empty_everywhere() {
        let src =
            br#"{"architecture":"amd64","os":"linux","author":null,"variant":null,"created":null,
            "config":{"User":null,"ExposedPorts":null,"Env":null,"Entrypoint":null,"Cmd":null,
              "Volumes":null,"WorkingDir":null,"Labels":null,"StopSignal":null,"ArgsEscaped":null,
              "Healthcheck":null,"OnBuild":null,"Shell":null,"Hostname":"","Image":"sha256:00"},
            "container_config":{"OnBuild":null},"rootfs":{"type":"layers","diff_ids":null},
            "history":null}"#;
        let c = ImageConfig::from_bytes(src).unwrap();
        assert!(c.config.env.is_empty() && c.config.on_build.is_empty());
        assert_eq!(
            (c.config.cmd.clone(), c.config.entrypoint.clone()),
            (None, None)
        );
        assert!(c.config.volumes.is_empty() && c.config.labels.is_empty());
        assert_eq!(c.config.extra["Image"], "sha256:00");
        // Unknown fields, nulls inside them included, are written back as they came.
        let out = String::from_utf8(c.to_bytes().unwrap()).unwrap();
        assert!(
            out.contains(r#""container_config":{"OnBuild":null}"#),
            "{out}"
        );
        let c2 = ImageConfig::from_bytes(
            br#"{"config":null,"rootfs":null,"history":[{"created_by":null,"empty_layer":null}]}"#,
        )
        .unwrap();
        assert_eq!(c2.history.len(), 1);
        assert!(c2.rootfs.diff_ids.is_empty() && c2.config.env.is_empty());
    }

    #[test]
    fn errors_name_the_json_path() {
        let err = |s: &str| {
            ImageConfig::from_bytes(s.as_bytes())
                .unwrap_err()
                .to_string()
        };
        let e = err(r#"{"config":{"OnBuild":5}}"#);
        assert!(
            e.contains("config.OnBuild: expected a list, got a number"),
            "{e}"
        );
        let e = err(r#"{"config":{"Env":["A=1",7]}}"#);
        assert!(e.contains("config.Env[1]"), "{e}");
        let e = err(r#"{"config":{"Labels":{"a":[]}}}"#);
        assert!(
            e.contains("config.Labels.a: expected a string, got a list"),
            "{e}"
        );
        let e = err(r#"{"rootfs":{"diff_ids":["nope"]}}"#);
        assert!(e.contains("rootfs.diff_ids[0]"), "{e}");
        let e = err(r#"{"history":[{},{"empty_layer":"yes"}]}"#);
        assert!(
            e.contains("history[1].empty_layer: expected a boolean, got a string"),
            "{e}"
        );
        let e = Manifest::from_bytes(br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1},"layers":[{"mediaType":"x","digest":"sha256:00","size":1}]}"#).unwrap_err().to_string();
        assert!(e.contains("manifest: layers[0].digest"), "{e}");
        let e = Index::from_bytes(br#"{"schemaVersion":2,"manifests":{}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("index: manifests: expected a list, got an object"),
            "{e}"
        );
    }

    #[test]
    fn schema1_is_named() {
        let e = Manifest::from_bytes(br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("schema 1"), "{e}");
    }
}

#[cfg(test)]
mod regressions {
    use crate::image::ImageConfig;

    /// fuzz `config` crash-1a436d37: a long mantissa in an unknown field read 1 ulp off, so the
    /// canonical bytes did not read back as the same config (serde_json `float_roundtrip`).
    #[test]
    fn numbers_in_unknown_fields_read_back_exactly() {
        let c = ImageConfig::from_bytes(b"{\"x\":\n5511111110E111}").unwrap();
        let again = ImageConfig::from_bytes(&c.to_bytes().unwrap()).unwrap();
        assert_eq!(c, again);
    }
}
