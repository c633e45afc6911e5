//! End-to-end checks of the build flags that shape the image or what RUN sees (issue 20):
//! proxies from `config.json`, `--squash`, `--annotation`.

mod common;

use common::*;
use std::path::Path;

fn build(root: &Path, ctx: &Path, extra: &[&str], env: &[(&str, &str)]) -> String {
    let mut args = vec!["build", "--progress", "plain"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let r = ok(rbuild_env(root, &args, env));
    r.stdout.trim().to_string()
}

#[test]
fn proxies_from_docker_config_reach_run_but_not_the_image() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let cfg = t.path().join("docker-config");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("config.json"),
        r#"{"proxies":{"default":{"httpProxy":"http://proxy.example:3128","httpsProxy":"http://sproxy.example:3129","noProxy":"localhost,.internal"}}}"#,
    )
    .unwrap();
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\nADD rootfs.tar /\nRUN echo \"$HTTP_PROXY|$http_proxy|$HTTPS_PROXY|$https_proxy|$NO_PROXY|$no_proxy|$FTP_PROXY\" > /seen\n",
        &[],
    );
    rootfs_archive(&ctx, "rootfs.tar");
    let out = t.path().join("out");
    let env = [("DOCKER_CONFIG", cfg.to_str().unwrap())];
    let dest = format!("type=local,dest={}", out.display());
    build(
        &root,
        &ctx,
        &[
            "-t",
            "proxied:1",
            "--build-arg",
            "https_proxy=mine",
            "-o",
            &dest,
        ],
        &env,
    );
    assert_eq!(
        std::fs::read_to_string(out.join("seen")).unwrap(),
        "http://proxy.example:3128|http://proxy.example:3128|http://sproxy.example:3129|mine|localhost,.internal|localhost,.internal|\n"
    );
    // As Docker's predefined proxy args: neither the config nor the history records them.
    let inspect = ok(rbuild(&root, &["inspect", "proxied:1"])).stdout;
    let history = ok(rbuild(&root, &["history", "--no-trunc", "proxied:1"])).stdout;
    for text in [&inspect, &history] {
        assert!(!text.contains("proxy.example"), "{text}");
        assert!(!text.contains("mine"), "{text}");
    }
    assert!(history.contains("RUN /bin/sh -c echo"), "{history}");
    // Proxies are not in the cache key (BuildKit's ProxyEnv): without the config the RUN is a
    // cache hit; run again, it sees no proxy.
    let empty = t.path().join("empty-config");
    std::fs::create_dir_all(&empty).unwrap();
    let env = [("DOCKER_CONFIG", empty.to_str().unwrap())];
    let again = |extra: &str, out: &Path| {
        let dest = format!("type=local,dest={}", out.display());
        let mut args = vec!["build", "--progress", "plain", "-o", &dest];
        if !extra.is_empty() {
            args.push(extra);
        }
        args.push(ctx.to_str().unwrap());
        ok(rbuild_env(&root, &args, &env))
    };
    let r = again("", &t.path().join("out2"));
    assert!(r.stderr.contains("CACHED"), "{}", r.stderr);
    let out3 = t.path().join("out3");
    let r = again("--no-cache", &out3);
    assert_eq!(
        std::fs::read_to_string(out3.join("seen")).unwrap(),
        "||||||\n",
        "{}",
        r.stderr
    );
}
