//! The image config, manifest and index readers alone (issue 22), fast enough for many runs a
//! second: nothing may panic; a config that parses survives its canonical serialization and its
//! form as a base unchanged; a manifest or index that parses survives its own serialization.
//! The `manifest` target covers the same readers through the store's `load` path, slowly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild::image::manifest::{Index, Manifest};
use rbuild::image::ImageConfig;

fuzz_target!(|data: &[u8]| {
    match ImageConfig::from_bytes(data) {
        Ok(c) => {
            let canon = c.to_bytes().expect("a parsed config serializes");
            let again = ImageConfig::from_bytes(&canon).expect("canonical config parses");
            assert_eq!(
                c, again,
                "config changed across its canonical serialization"
            );
            let base = c.into_base().to_bytes().expect("a base serializes");
            let again = ImageConfig::from_bytes(&base).expect("a base's bytes parse");
            assert_eq!(
                again.to_bytes().expect("serializes"),
                base,
                "base form unstable"
            );
        }
        Err(e) => drop(e.to_string()),
    }
    match Manifest::from_bytes(data) {
        Ok(m) => {
            let text = serde_json::to_vec(&m).expect("manifest serializes");
            assert_eq!(Manifest::from_bytes(&text).ok(), Some(m));
        }
        Err(e) => drop(e.to_string()),
    }
    match Index::from_bytes(data) {
        Ok(i) => {
            let text = serde_json::to_vec(&i).expect("index serializes");
            assert_eq!(Index::from_bytes(&text).ok(), Some(i));
        }
        Err(e) => drop(e.to_string()),
    }
});
