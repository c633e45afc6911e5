//! SECURITY group G (registry & credentials) and pull reliability (R12) against scripted
//! registries on 127.0.0.1: a minimal HTTP server that serves one image, answers as each case
//! needs, and records every request it receives, so the tests can assert what was sent where.

mod common;

use common::*;
use rbuild::digest::Digest;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    auth: Option<String>,
    range: Option<String>,
    content_range: Option<String>,
    body: Vec<u8>,
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send only this many body bytes, then drop the connection. Status 0: drop it at once.
    cut_at: Option<usize>,
    /// Send the body one byte per second (up to `cut_at`), as a server holding a pull open would.
    drip: bool,
}

fn resp(status: u16, body: impl Into<Vec<u8>>) -> Resp {
    Resp {
        status,
        headers: Vec::new(),
        body: body.into(),
        cut_at: None,
        drip: false,
    }
}

impl Resp {
    fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
}

type Handler = dyn Fn(&Seen, usize) -> Resp + Send + Sync;

struct Fake {
    port: u16,
    log: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    fn start(handler: impl Fn(&Seen, usize) -> Resp + Send + Sync + 'static) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let l2 = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = l2.clone();
                let handler = handler.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let method = parts.next().unwrap_or("").to_string();
                    let path = parts.next().unwrap_or("").to_string();
                    let mut auth = None;
                    let mut range = None;
                    let mut content_range = None;
                    let mut len = 0usize;
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                            break;
                        }
                        let (k, v) = h.split_once(':').unwrap_or((&h, ""));
                        let v = v.trim().to_string();
                        match k.to_ascii_lowercase().as_str() {
                            "authorization" => auth = Some(v),
                            "range" => range = Some(v),
                            "content-range" => content_range = Some(v),
                            "content-length" => len = v.parse().unwrap_or(0),
                            _ => {}
                        }
                    }
                    let mut body = vec![0u8; len];
                    let _ = reader.read_exact(&mut body);
                    let seen = Seen {
                        method,
                        path,
                        auth,
                        range,
                        content_range,
                        body,
                    };
                    let n = {
                        let mut l = log.lock().unwrap();
                        l.push(seen.clone());
                        l.iter().filter(|s| s.path == seen.path).count()
                    };
                    let r = handler(&seen, n);
                    if r.status == 0 {
                        return;
                    }
                    let mut out = stream;
                    let mut head = format!(
                        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                        r.status,
                        r.body.len()
                    );
                    for (k, v) in &r.headers {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    head.push_str("\r\n");
                    let _ = out.write_all(head.as_bytes());
                    if seen.method != "HEAD" {
                        let end = r.cut_at.unwrap_or(r.body.len());
                        if r.drip {
                            for b in &r.body[..end] {
                                let _ = out.flush();
                                std::thread::sleep(std::time::Duration::from_secs(1));
                                if out.write_all(&[*b]).is_err() {
                                    break;
                                }
                            }
                        } else {
                            let _ = out.write_all(&r.body[..end]);
                        }
                    }
                    let _ = out.flush();
                });
            }
        });
        Fake { port, log }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }
}

/// One small image: an uncompressed layer holding `/hello`, its config and manifest.
struct Image {
    layer: Vec<u8>,
    config: Vec<u8>,
    manifest: Vec<u8>,
}

fn image(foreign_urls: Option<String>) -> Image {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(6);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, "hello", &b"world\n"[..]).unwrap();
    image_with_layer(tar.into_inner().unwrap(), foreign_urls)
}

/// An image whose one uncompressed layer is `layer`.
fn image_with_layer(layer: Vec<u8>, foreign_urls: Option<String>) -> Image {
    let diff = Digest::of_bytes(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{diff}"]}}}}"#
    )
    .into_bytes();
    let (layer_type, urls) = match &foreign_urls {
        Some(u) => (
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            format!(r#","urls":["{u}"]"#),
        ),
        None => (
            "application/vnd.docker.image.rootfs.diff.tar",
            String::new(),
        ),
    };
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":{},"digest":"{}"}},"layers":[{{"mediaType":"{layer_type}","size":{},"digest":"{}"{urls}}}]}}"#,
        config.len(),
        Digest::of_bytes(&config),
        layer.len(),
        diff
    )
    .into_bytes();
    Image {
        layer,
        config,
        manifest,
    }
}

/// Serves `img` under `t/img:1`: manifests, blobs, `/v2/`.
fn serve_image(img: &Image, s: &Seen) -> Option<Resp> {
    let p = s.path.split('?').next().unwrap_or("");
    if p == "/v2/" {
        return Some(resp(200, "{}"));
    }
    if p == "/v2/t/img/manifests/1" {
        return Some(resp(200, img.manifest.clone()).header(
            "Content-Type",
            "application/vnd.docker.distribution.manifest.v2+json",
        ));
    }
    if p == format!("/v2/t/img/blobs/{}", Digest::of_bytes(&img.config)) {
        return Some(resp(200, img.config.clone()));
    }
    if p == format!("/v2/t/img/blobs/{}", Digest::of_bytes(&img.layer)) {
        return Some(resp(200, img.layer.clone()));
    }
    None
}

/// A DOCKER_CONFIG dir with Basic credentials for `addr`.
fn docker_config(t: &std::path::Path, addr: &str) -> std::path::PathBuf {
    use base64::Engine;
    let dir = t.join("dockercfg");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        format!(
            r#"{{"auths":{{"{addr}":{{"auth":"{}"}}}}}}"#,
            base64::engine::general_purpose::STANDARD.encode("bob:hunter2")
        ),
    )
    .unwrap();
    dir
}

const BASIC: &str = "Basic Ym9iOmh1bnRlcjI="; // bob:hunter2

fn pull(t: &std::path::Path, cfg: &std::path::Path, name: &str) -> Run {
    rbuild_env(
        &t.join("root"),
        &["pull", name],
        &[("DOCKER_CONFIG", cfg.to_str().unwrap())],
    )
}

#[test]
fn g01_foreign_layer_urls_are_never_fetched() {
    let attacker = Fake::start(|_, _| {
        resp(401, "").header("WWW-Authenticate", "Bearer realm=\"http://127.0.0.1:1/t\"")
    });
    let img = Arc::new(image(Some(format!(
        "http://{}/evil-layer",
        attacker.addr()
    ))));
    let i2 = img.clone();
    let reg = Fake::start(move |s, _| {
        if s.auth.as_deref() != Some(BASIC) {
            return resp(401, "").header("WWW-Authenticate", "Basic realm=\"r\"");
        }
        serve_image(&i2, s).unwrap_or_else(|| resp(404, ""))
    });
    let t = tempfile::tempdir().unwrap();
    let cfg = docker_config(t.path(), &reg.addr());
    let r = pull(t.path(), &cfg, &format!("{}/t/img:1", reg.addr()));
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(
        attacker.seen().is_empty(),
        "foreign URL fetched: {:?}",
        attacker.seen()
    );
    assert!(reg.seen().iter().any(|s| s.auth.as_deref() == Some(BASIC)));
}

#[test]
fn g02_off_origin_token_realm_gets_no_credentials() {
    let t = tempfile::tempdir().unwrap();
    let attacker = Fake::start(|_, _| resp(200, r#"{"token":"anon-token"}"#));
    let img = Arc::new(image(None));
    let realm = format!("http://{}/token", attacker.addr());
    let i2 = img.clone();
    let reg = Fake::start(move |s, _| {
        if s.auth.as_deref() != Some("Bearer anon-token") {
            return resp(401, "").header(
                "WWW-Authenticate",
                &format!("Bearer realm=\"{realm}\",service=\"fake\""),
            );
        }
        serve_image(&i2, s).unwrap_or_else(|| resp(404, ""))
    });
    let cfg = docker_config(t.path(), &reg.addr());
    let r = pull(t.path(), &cfg, &format!("{}/t/img:1", reg.addr()));
    assert_eq!(r.status, 0, "{}", r.stderr);
    let asked = attacker.seen();
    assert!(!asked.is_empty(), "the token realm was never asked");
    for s in &asked {
        assert_eq!(
            s.auth, None,
            "credentials sent to an off-origin realm: {s:?}"
        );
        assert!(
            s.path.contains("scope=repository%3At%2Fimg%3Apull"),
            "{}",
            s.path
        );
    }
    // Positive control: a realm on the registry's own origin does get the credentials.
    let img = Arc::new(image(None));
    let port = Arc::new(Mutex::new(0u16));
    let (i3, p2) = (img.clone(), port.clone());
    let reg = Fake::start(move |s, _| {
        if s.path.starts_with("/token") {
            return if s.auth.as_deref() == Some(BASIC) {
                resp(200, r#"{"access_token":"good","expires_in":300}"#)
            } else {
                resp(401, "")
            };
        }
        if s.auth.as_deref() != Some("Bearer good") {
            let realm = format!("http://127.0.0.1:{}/token", p2.lock().unwrap());
            return resp(401, "").header("WWW-Authenticate", &format!("Bearer realm=\"{realm}\""));
        }
        serve_image(&i3, s).unwrap_or_else(|| resp(404, ""))
    });
    *port.lock().unwrap() = reg.port;
    let t2 = tempfile::tempdir().unwrap();
    let cfg = docker_config(t2.path(), &reg.addr());
    let r = pull(t2.path(), &cfg, &format!("{}/t/img:1", reg.addr()));
    assert_eq!(r.status, 0, "{}", r.stderr);
    // One token serves every request of the same scope.
    let tokens = reg
        .seen()
        .iter()
        .filter(|s| s.path.starts_with("/token"))
        .count();
    assert_eq!(tokens, 1);
}

#[test]
fn g03_redirect_to_another_host_drops_authorization() {
    let img = Arc::new(image(None));
    let layer = img.layer.clone();
    let cdn = Fake::start(move |_, _| resp(200, layer.clone()));
    let cdn_addr = cdn.addr();
    let i2 = img.clone();
    let reg = Fake::start(move |s, _| {
        if s.auth.as_deref() != Some(BASIC) {
            return resp(401, "").header("WWW-Authenticate", "Basic realm=\"r\"");
        }
        let layer_path = format!("/v2/t/img/blobs/{}", Digest::of_bytes(&i2.layer));
        let config_path = format!("/v2/t/img/blobs/{}", Digest::of_bytes(&i2.config));
        if s.path == layer_path {
            return resp(307, "").header(
                "Location",
                &format!("http://{cdn_addr}/blob?X-Amz-Signature=sekrit"),
            );
        }
        // Same-origin redirect: must keep the credentials (the target above checks them).
        if s.path == config_path {
            return resp(307, "").header("Location", "/same-host/config");
        }
        if s.path == "/same-host/config" {
            return resp(200, i2.config.clone());
        }
        serve_image(&i2, s).unwrap_or_else(|| resp(404, ""))
    });
    let t = tempfile::tempdir().unwrap();
    let cfg = docker_config(t.path(), &reg.addr());
    let r = pull(t.path(), &cfg, &format!("{}/t/img:1", reg.addr()));
    assert_eq!(r.status, 0, "{}", r.stderr);
    let got = cdn.seen();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].auth, None, "Authorization forwarded across hosts");
    assert!(reg
        .seen()
        .iter()
        .any(|s| s.path == "/same-host/config" && s.auth.as_deref() == Some(BASIC)));
}

#[test]
fn g05_errors_never_show_secrets_and_r12_retries_and_resumes() {
    // 429 with Retry-After once, then a layer download cut mid-body and resumed with Range.
    let img = Arc::new(image(None));
    let i2 = img.clone();
    let reg = Fake::start(move |s, n| {
        let p = s.path.split('?').next().unwrap_or("");
        if p == "/v2/t/img/manifests/1" && n == 1 {
            return resp(429, "").header("Retry-After", "1");
        }
        let layer_path = format!("/v2/t/img/blobs/{}", Digest::of_bytes(&i2.layer));
        if p == layer_path {
            let half = i2.layer.len() / 2;
            return match &s.range {
                None => Resp {
                    cut_at: Some(half),
                    ..resp(200, i2.layer.clone())
                },
                Some(r) => {
                    let start: usize = r
                        .trim_start_matches("bytes=")
                        .trim_end_matches('-')
                        .parse()
                        .unwrap();
                    resp(206, i2.layer[start..].to_vec()).header(
                        "Content-Range",
                        &format!("bytes {start}-{}/{}", i2.layer.len() - 1, i2.layer.len()),
                    )
                }
            };
        }
        serve_image(&i2, s).unwrap_or_else(|| resp(404, ""))
    });
    let t = tempfile::tempdir().unwrap();
    let cfg = docker_config(t.path(), "elsewhere.example");
    let r = pull(t.path(), &cfg, &format!("{}/t/img:1", reg.addr()));
    assert_eq!(r.status, 0, "{}", r.stderr);
    let seen = reg.seen();
    let ranges: Vec<_> = seen.iter().filter_map(|s| s.range.clone()).collect();
    assert_eq!(ranges.len(), 1, "{seen:?}");
    assert_ne!(ranges[0], "bytes=0-");
    // The credentials of another host were never sent here.
    assert!(seen.iter().all(|s| s.auth.is_none()));

    // A 401 from a registry with a query-signed URL: the error names the credential source but
    // shows neither the password nor the signature.
    let reg = Fake::start(|s, _| {
        if s.path.contains("/blobs/") {
            return resp(401, "").header("WWW-Authenticate", "Basic realm=\"r\"");
        }
        resp(307, "").header("Location", "/v2/t/img/blobs/x?sig=topsecret")
    });
    let t = tempfile::tempdir().unwrap();
    let cfg = docker_config(t.path(), &reg.addr());
    let r = pull(t.path(), &cfg, &format!("{}/t/img:1", reg.addr()));
    assert_ne!(r.status, 0);
    for secret in ["hunter2", "topsecret", "Ym9i"] {
        assert!(!r.stderr.contains(secret), "{secret} leaked: {}", r.stderr);
    }
    assert!(r.stderr.contains("user \"bob\""), "{}", r.stderr);
}

#[test]
fn g06_plain_http_only_for_loopback_and_configured_hosts() {
    // A non-loopback name is never tried over plain HTTP: with no TLS server there, the pull
    // fails on the TLS connection and does not fall back to HTTP.
    let t = tempfile::tempdir().unwrap();
    let reg = Fake::start(|_, _| resp(200, "{}"));
    let name = format!("localtest.invalid:{}/t/img:1", reg.port);
    let r = rbuild(&t.path().join("root"), &["pull", &name]);
    assert_ne!(r.status, 0);
    assert!(
        r.stderr.contains("https://localtest.invalid"),
        "{}",
        r.stderr
    );
    assert!(reg.seen().is_empty());
}

#[test]
fn g04_credential_helpers_are_asked_for_the_exact_host() {
    let img = Arc::new(image(None));
    let i2 = img.clone();
    let reg = Fake::start(move |s, _| {
        if s.auth.as_deref() != Some(BASIC) {
            return resp(401, "").header("WWW-Authenticate", "Basic realm=\"r\"");
        }
        serve_image(&i2, s).unwrap_or_else(|| resp(404, ""))
    });
    let t = tempfile::tempdir().unwrap();
    // A helper that knows only this registry and logs what it was asked.
    let bin = t.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let asked = t.path().join("asked");
    let helper = bin.join("docker-credential-rbtest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread server\necho \"$1 $server\" >> {}\nif [ \"$server\" = \"{}\" ]; then\n  printf '{{\"ServerURL\":\"%s\",\"Username\":\"bob\",\"Secret\":\"hunter2\"}}' \"$server\"\nelse\n  echo 'credentials not found in native keychain'; exit 1\nfi\n",
            asked.display(),
            reg.addr()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = t.path().join("dockercfg");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("config.json"),
        format!(r#"{{"credHelpers":{{"{}":"rbtest"}}}}"#, reg.addr()),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = [
        ("DOCKER_CONFIG", cfg.to_str().unwrap()),
        ("PATH", path.as_str()),
    ];
    let r = rbuild_env(
        &t.path().join("root"),
        &["pull", &format!("{}/t/img:1", reg.addr())],
        &env,
    );
    assert_eq!(r.status, 0, "{}", r.stderr);
    let log = std::fs::read_to_string(&asked).unwrap();
    assert_eq!(log.trim(), format!("get {}", reg.addr()));
    // With credsStore for every host, a look-alike host gets nothing from it.
    std::fs::write(cfg.join("config.json"), r#"{"credsStore":"rbtest"}"#).unwrap();
    let evil = Fake::start(|s, _| {
        assert!(s.auth.is_none(), "credentials sent to a look-alike host");
        resp(401, "").header("WWW-Authenticate", "Basic realm=\"r\"")
    });
    let name = format!("localhost:{}/t/img:1", evil.port);
    let r = rbuild_env(&t.path().join("root2"), &["pull", &name], &env);
    assert_ne!(r.status, 0);
    assert!(r.stderr.contains("anonymous"), "{}", r.stderr);
    assert!(evil.seen().iter().all(|s| s.auth.is_none()));
}

#[test]
fn r12_pull_survives_drops_500s_and_a_server_that_ignores_range() {
    // The layer: 503, then cut at a third, then 500, then Range ignored and cut at two thirds,
    // then Range ignored again with the whole body. The client must end with the right bytes.
    let img = Arc::new(image(None));
    let i2 = img.clone();
    let layer_path = format!("/v2/t/img/blobs/{}", Digest::of_bytes(&img.layer));
    let lp = layer_path.clone();
    let reg = Fake::start(move |s, n| {
        if s.path == lp {
            let len = i2.layer.len();
            return match n {
                1 => resp(503, ""),
                2 => Resp {
                    cut_at: Some(len / 3),
                    ..resp(200, i2.layer.clone())
                },
                3 => resp(500, ""),
                4 => Resp {
                    cut_at: Some(2 * len / 3),
                    ..resp(200, i2.layer.clone())
                },
                _ => resp(200, i2.layer.clone()),
            };
        }
        serve_image(&i2, s).unwrap_or_else(|| resp(404, ""))
    });
    let t = tempfile::tempdir().unwrap();
    let cfg = docker_config(t.path(), "elsewhere.example");
    let r = pull(t.path(), &cfg, &format!("{}/t/img:1", reg.addr()));
    assert_eq!(r.status, 0, "{}", r.stderr);
    let len = img.layer.len();
    let ranges: Vec<_> = reg
        .seen()
        .iter()
        .filter(|s| s.path == layer_path)
        .map(|s| s.range.clone())
        .collect();
    assert_eq!(
        ranges,
        vec![
            None,
            None,
            Some(format!("bytes={}-", len / 3)),
            Some(format!("bytes={}-", len / 3)),
            Some(format!("bytes={}-", 2 * len / 3)),
        ]
    );
    // The layer really is in the store and whole: a second pull fetches nothing.
    let before = reg.seen().len();
    let r = pull(t.path(), &cfg, &format!("{}/t/img:1", reg.addr()));
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(reg.seen()[before..].iter().all(|s| s.path != layer_path));

    // Always cut short: bounded retries, then an error naming the blob URL.
    let i3 = img.clone();
    let reg = Fake::start(move |s, _| {
        if s.path.contains(&Digest::of_bytes(&i3.layer).hex()[..12]) {
            return Resp {
                cut_at: Some(10),
                ..resp(200, i3.layer.clone())
            };
        }
        serve_image(&i3, s).unwrap_or_else(|| resp(404, ""))
    });
    let t = tempfile::tempdir().unwrap();
    let r = pull(t.path(), &cfg, &format!("{}/t/img:1", reg.addr()));
    assert_ne!(r.status, 0);
    assert!(r.stderr.contains("/blobs/sha256:"), "{}", r.stderr);
    let tries = reg.seen().iter().filter(|s| s.path == layer_path).count();
    assert_eq!(tries, 5, "{:?}", reg.seen());
}

/// A registry's upload sessions, scripted: which PATCH fails how.
#[derive(Default)]
struct Uploads {
    data: Vec<u8>,
    session: u32,
    patches: u32,
    purged: bool,
    put_digest: Option<String>,
}

#[test]
fn r13_interrupted_chunked_push_resumes_from_the_registry_offset() {
    use rbuild::registry::push::{push_blob, BlobOutcome, BlobSource};
    let blob: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
    let digest = Digest::of_bytes(&blob);
    let st = Arc::new(Mutex::new(Uploads::default()));
    let st2 = st.clone();
    let reg = Fake::start(move |s, _| {
        let mut st = st2.lock().unwrap();
        let (path, query) = s.path.split_once('?').unwrap_or((&s.path, ""));
        let session = format!("/v2/t/up/blobs/uploads/s{}", st.session);
        match s.method.as_str() {
            "HEAD" => resp(404, ""),
            "POST" => {
                st.session += 1;
                st.data.clear();
                st.purged = false;
                resp(202, "").header(
                    "Location",
                    &format!("/v2/t/up/blobs/uploads/s{}?_state=0", st.session),
                )
            }
            _ if path != session || st.purged => {
                resp(404, r#"{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN"}]}"#)
            }
            "GET" => {
                let end = st.data.len().saturating_sub(1);
                resp(204, "")
                    .header("Range", &format!("0-{end}"))
                    .header("Location", &format!("{session}?_state=get"))
            }
            "PATCH" => {
                st.patches += 1;
                let start: usize = s
                    .content_range
                    .as_deref()
                    .and_then(|r| r.split('-').next())
                    .and_then(|v| v.parse().ok())
                    .unwrap();
                if start != st.data.len() {
                    return resp(416, "");
                }
                match st.patches {
                    // The connection drops after the registry stored half the chunk.
                    3 => {
                        let half = s.body.len() / 2;
                        st.data.extend_from_slice(&s.body[..half]);
                        return resp(0, "");
                    }
                    5 => return resp(500, ""),
                    // Stored, but answered 503: the client's retry of the same chunk gets 416.
                    7 => {
                        let body = s.body.clone();
                        st.data.extend_from_slice(&body);
                        return resp(503, "");
                    }
                    // The session is purged: the upload must start over.
                    9 => {
                        st.purged = true;
                        return resp(404, "");
                    }
                    _ => {}
                }
                st.data.extend_from_slice(&s.body);
                // Every answer moves the session to a new state; the client must follow it.
                resp(202, "").header("Location", &format!("{session}?_state={}", st.patches))
            }
            "PUT" => {
                let d = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("digest="))
                    .unwrap_or("")
                    .replace("%3A", ":");
                st.put_digest = Some(d.clone());
                if d == Digest::of_bytes(&st.data).to_string() && s.body.is_empty() {
                    resp(201, "")
                } else {
                    resp(400, r#"{"errors":[{"code":"DIGEST_INVALID"}]}"#)
                }
            }
            _ => resp(405, ""),
        }
    });
    let client = rbuild::registry::Client::new(&reg.addr(), &Default::default()).unwrap();
    let opts = rbuild::registry::PushOptions {
        chunk_size: 1000,
        quiet: true,
        ..Default::default()
    };
    let out = push_blob(
        &client,
        "t/up",
        &digest,
        blob.len() as u64,
        BlobSource::Bytes(&blob),
        &[],
        &opts,
    )
    .unwrap();
    assert_eq!(out, BlobOutcome::Uploaded);
    let st = st.lock().unwrap();
    assert_eq!(st.data, blob, "the registry assembled other bytes");
    assert_eq!(st.put_digest.as_deref(), Some(digest.to_string().as_str()));
    assert_eq!(st.session, 2, "the purged session was not restarted");
    let seen = reg.seen();
    let gets = seen
        .iter()
        .filter(|s| s.method == "GET" && s.path.contains("/uploads/"))
        .count();
    assert!(gets >= 3, "no upload status asked: {seen:?}");
    assert!(
        seen.iter()
            .any(|s| s.method == "PATCH" && s.content_range.as_deref() == Some("2500-3499")),
        "did not resume at the offset the registry reported: {seen:?}"
    );
    // Every request after the first went to the latest Location the registry gave.
    assert!(seen
        .iter()
        .filter(|s| s.method == "PATCH")
        .all(|s| s.path.contains("?_state=")));

    // A registry that keeps failing: bounded, and the error is the registry's.
    let reg = Fake::start(|s, _| match s.method.as_str() {
        "HEAD" => resp(404, ""),
        "POST" => resp(202, "").header("Location", "/v2/t/up/blobs/uploads/x"),
        "GET" => resp(204, "").header("Range", "0-0"),
        _ => resp(500, ""),
    });
    let client = rbuild::registry::Client::new(&reg.addr(), &Default::default()).unwrap();
    let e = push_blob(
        &client,
        "t/up",
        &digest,
        blob.len() as u64,
        BlobSource::Bytes(&blob),
        &[],
        &opts,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("HTTP 500"), "{e}");
    let patches = reg.seen().iter().filter(|s| s.method == "PATCH").count();
    assert_eq!(patches, 5);
}

#[test]
fn r14_a_dripping_registry_fails_the_pull_at_the_transfer_deadline() {
    // The layer comes one byte per second: never slow enough for the per-read timeout, so only
    // the overall deadline (here RBUILD_REGISTRY_TIMEOUT=2) ends the pull. The server hangs up after
    // 8 bytes so that, without a deadline, the test ends in failure rather than hanging.
    let img = Arc::new(image(None));
    let i2 = img.clone();
    let layer_path = format!("/v2/t/img/blobs/{}", Digest::of_bytes(&img.layer));
    let lp = layer_path.clone();
    let reg = Fake::start(move |s, _| {
        if s.path.split('?').next() == Some(lp.as_str()) {
            return Resp {
                drip: true,
                cut_at: Some(8),
                ..resp(200, i2.layer.clone())
            };
        }
        serve_image(&i2, s).unwrap_or_else(|| resp(404, ""))
    });
    let t = tempfile::tempdir().unwrap();
    let cfg = docker_config(t.path(), "elsewhere.example");
    let root = t.path().join("root");
    let r = rbuild_env(
        &root,
        &["pull", &format!("{}/t/img:1", reg.addr())],
        &[
            ("DOCKER_CONFIG", cfg.to_str().unwrap()),
            ("RBUILD_REGISTRY_TIMEOUT", "2"),
        ],
    );
    assert_ne!(r.status, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("transfer not finished within its 2s deadline (--registry-timeout)"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&Digest::of_bytes(&img.layer).to_string()),
        "names the blob: {}",
        r.stderr
    );
    // No resume after the deadline: one request for the layer, and no partial blob kept.
    let layer_gets = reg.seen().iter().filter(|s| s.path == layer_path).count();
    assert_eq!(layer_gets, 1, "{:?}", reg.seen());
    assert_store_consistent(&root);
}

#[test]
fn r15_a_pulled_sparse_bomb_layer_is_refused_and_not_kept() {
    // A few KiB of GNU sparse tar that expands to 256 MiB, under a 16 MiB cap.
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::File::create(src.join("hole"))
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
    let tar_path = t.path().join("bomb.tar");
    sh(std::process::Command::new("tar")
        .args(["--format=gnu", "--sparse", "-C"])
        .arg(&src)
        .arg("-cf")
        .arg(&tar_path)
        .arg("hole"));
    let img = Arc::new(image_with_layer(std::fs::read(&tar_path).unwrap(), None));
    let i2 = img.clone();
    let reg = Fake::start(move |s, _| serve_image(&i2, s).unwrap_or_else(|| resp(404, "")));
    let cfg = docker_config(t.path(), "elsewhere.example");
    let root = t.path().join("root");
    let r = rbuild_env(
        &root,
        &["pull", &format!("{}/t/img:1", reg.addr())],
        &[
            ("DOCKER_CONFIG", cfg.to_str().unwrap()),
            ("RBUILD_MAX_EXPANDED_SIZE", "16m"),
        ],
    );
    assert_ne!(r.status, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("expands to more than 16777216 bytes"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&Digest::of_bytes(&img.layer).to_string()),
        "names the layer: {}",
        r.stderr
    );
    let images = ok(rbuild(&root, &["images", "-q"]));
    assert!(images.stdout.trim().is_empty(), "{}", images.stdout);
    assert_nothing_mounted_under(&root);
    assert_store_consistent(&root);
}
