//! Issue 15's list of semantic differences from BuildKit that the ported cases (tests/buildkit_*.rs)
//! do not already pin down: cached rebuilds keep the image id, cache keys ignore timestamps,
//! WORKDIR is a layer owned by USER, proxy args stay out of the image, `--from` must name an
//! earlier stage.

mod bk;
mod common;

use bk::*;
use std::os::unix::fs::MetadataExt;

fn image_count(b: &Bk) -> usize {
    ok(rbuild(&b.root, &["images", "-q"]))
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

#[test]
fn fully_cached_rebuild_gives_the_same_image_id() {
    let b = Bk::new();
    b.dockerfile("FROM busybox\nENV A=1\nRUN echo hi > /x\nLABEL l=v\nWORKDIR /app\nCOPY Dockerfile /d\nCMD [\"sh\"]\n");
    let first = b.build(&[]);
    let images = image_count(&b);
    let r = ok(b.run(&[]));
    let second = r.stdout.trim().to_string();
    assert!(r.stderr.contains("CACHED"), "{}", r.stderr);
    assert_eq!(first, second, "a no-op rebuild wrote a new image id");
    assert_eq!(image_count(&b), images, "a no-op rebuild left a new image");
}

#[test]
fn cache_keys_ignore_the_base_images_timestamps() {
    // Two stores build the same base (same layers, same Env) at different times: different
    // image ids, same chainID. A step on top cached in one is a hit from the other's export.
    let a = Bk::new();
    let b = Bk::new();
    for s in [&a, &b] {
        // No new layer: a RUN would write files with this moment's mtimes.
        s.dockerfile("FROM busybox\nENV X=1\nLABEL base=yes\n");
        s.build(&["-t", "base"]);
    }
    let id = |s: &Bk| {
        let v: serde_json::Value =
            serde_json::from_str(&ok(rbuild(&s.root, &["inspect", "base"])).stdout).unwrap();
        v[0]["Id"].as_str().unwrap().to_string()
    };
    assert_ne!(id(&a), id(&b), "the bases should differ by their times");
    let cache = a.dir.path().join("cache");
    let to = format!("type=local,dest={}", cache.display());
    let from = format!("type=local,src={}", cache.display());
    for s in [&a, &b] {
        s.dockerfile("FROM base\nRUN echo step > /s\n");
    }
    a.build(&["--cache-to", &to]);
    let r = ok(b.run(&["--cache-from", &from]));
    let run_line = r
        .stderr
        .lines()
        .filter(|l| l.contains("RUN echo step") || l.contains("CACHED"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(run_line.contains("CACHED"), "{}", r.stderr);
}

#[test]
fn workdir_is_a_layer_owned_by_the_user() {
    let b = Bk::new();
    b.dockerfile("FROM busybox\nUSER daemon\nWORKDIR /newdir/sub\nWORKDIR /tmp\n");
    let cfg = b.config(&[]);
    let h = cfg["history"].as_array().unwrap();
    let entry = |text: &str| {
        h.iter()
            .find(|e| e["created_by"].as_str().unwrap_or("").contains(text))
            .unwrap_or_else(|| panic!("no {text} in {h:?}"))
            .clone()
    };
    assert!(entry("WORKDIR /newdir/sub")["empty_layer"].is_null());
    assert_eq!(entry("WORKDIR /tmp")["empty_layer"], true);
    let out = b.local(&[]);
    for d in ["newdir", "newdir/sub"] {
        let m = std::fs::metadata(out.join(d)).unwrap();
        assert_eq!((m.uid(), m.gid()), (1, 1), "{d}");
    }
}

#[test]
fn proxy_args_reach_run_but_not_the_image() {
    let b = Bk::new();
    b.dockerfile(
        "FROM busybox AS build\nRUN echo \"$HTTPS_PROXY $https_proxy $no_proxy $NO_PROXY\" > /p\n",
    );
    let args = [
        "--build-arg",
        "HTTPS_PROXY=http://proxy:3128",
        "--build-arg",
        "no_proxy=internal",
    ];
    let out = b.local(&args);
    assert_eq!(
        text(&out, "p"),
        "http://proxy:3128 http://proxy:3128 internal internal\n"
    );
    let cfg = b.config(&args);
    let all = cfg.to_string();
    assert!(
        !all.contains("proxy:3128") && !all.contains("internal"),
        "{all}"
    );
    let env = cfg["config"]["Env"].to_string().to_lowercase();
    assert!(!env.contains("proxy"), "{env}");
}

#[test]
fn from_naming_the_current_or_a_later_stage_is_an_error() {
    let b = Bk::new();
    b.dockerfile("FROM busybox AS a\nCOPY --from=a /etc/passwd /x\n");
    let e = b.fail(&[]);
    assert!(e.contains("cannot copy from stage"), "{e}");
    b.dockerfile("FROM busybox AS a\nRUN --mount=from=b,target=/b true\nFROM busybox AS b\n");
    let e = b.fail(&["--target", "a"]);
    assert!(
        e.contains("needs to be defined before current command"),
        "{e}"
    );
}
