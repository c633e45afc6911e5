//! Prints the SPDX 2.3 SBOM rbuild generates for a rootfs directory (docs/sbom.md):
//! `cargo run --example sbom -- DIR [NAME]`. SOURCE_DATE_EPOCH, when set, is the creation time.
//! scripts/sbom-compare uses it to compare rbuild's SBOM with a peer generator's.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: sbom DIR [NAME]");
        return ExitCode::from(2);
    };
    let mut opts = rbuild::sbom::SbomOptions::default();
    if let Some(name) = args.next() {
        opts.name = name.to_string_lossy().into_owned();
    }
    if let Ok(epoch) = std::env::var("SOURCE_DATE_EPOCH") {
        match epoch.parse() {
            Ok(s) => opts.created = Some(s),
            Err(_) => {
                eprintln!("SOURCE_DATE_EPOCH is not a number: {epoch:?}");
                return ExitCode::from(2);
            }
        }
    }
    match rbuild::sbom::generate(std::path::Path::new(&dir), &opts) {
        Ok(doc) => match serde_json::to_string_pretty(&doc) {
            Ok(s) => {
                println!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
