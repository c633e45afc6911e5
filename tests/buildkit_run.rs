//! Ports of BuildKit's `dockerfile_cmd_test.go`, `dockerfile_history_test.go`,
//! `dockerfile_secrets_test.go`, `dockerfile_runnetwork_test.go` and
//! `dockerfile_runsecurity_test.go` (Dockerfile data and assertions; `FROM busybox`/`alpine` is the
//! busybox-static image of tests/bk; images BuildKit exports to containerd or a registry are
//! read from an OCI layout or tagged in the store instead).

mod bk;
mod common;

use bk::*;
use serde_json::json;

/// History entries and layers of the tests/bk base image (BuildKit's busybox has 2 and 1).
const BASE_HISTORY: usize = 2;
const BASE_LAYERS: usize = 2;

// ---- dockerfile_cmd_test.go

#[test]
fn cmd_shell() {
    let b = Bk::new();
    b.dockerfile("\nFROM scratch\nCMD [\"test\"]\n");
    b.build(&["-t", "cmdoverridetest:latest"]);
    b.dockerfile("\nFROM cmdoverridetest:latest\nSHELL [\"ls\"]\nENTRYPOINT my entrypoint\n");
    let cfg = b.config(&[]);
    assert!(cfg["config"]["Cmd"].is_null(), "{}", cfg["config"]);
    assert_eq!(cfg["config"]["Entrypoint"], json!(["ls", "my entrypoint"]));
}

#[test]
fn default_shell_and_path() {
    let b = Bk::new();
    b.dockerfile("\nFROM scratch\nENTRYPOINT foo bar\nCOPY Dockerfile .\n");
    let cfg = b.config(&["--platform", "linux/amd64"]);
    assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);
    assert_eq!(
        cfg["config"]["Entrypoint"],
        json!(["/bin/sh", "-c", "foo bar"])
    );
    assert_eq!(
        cfg["config"]["Env"],
        json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
    );
}

#[test]
fn ignore_entrypoint() {
    let b = Bk::new();
    b.dockerfile("\nFROM busybox\nENTRYPOINT [\"/nosuchcmd\"]\nRUN [\"ls\"]\n");
    b.build(&[]);
}

#[test]
fn invalid_json_commands() {
    let b = Bk::new();
    b.dockerfile("\nFROM alpine\nRUN [\"echo\", \"hello\"]this is invalid\n");
    let e = b.fail(&[]);
    assert!(e.contains("this is invalid"), "{e}");

    b.dockerfile("\nFROM alpine\nENTRYPOINT []random string\n");
    let cfg = b.config(&[]);
    assert_eq!(
        cfg["config"]["Entrypoint"],
        json!(["/bin/sh", "-c", "[]random string"])
    );
}

#[test]
fn dockerfile_invalid_command() {
    let b = Bk::new();
    b.dockerfile("\n\tFROM busybox\n\tRUN invalidcmd\n");
    let e = b.fail(&[]);
    assert!(e.contains("/bin/sh -c invalidcmd"), "{e}");
    assert!(e.contains("did not complete successfully"), "{e}");
}

#[test]
fn dockerfile_invalid_instruction() {
    let b = Bk::new();
    b.dockerfile("\nFROM scratch\nFNTRYPOINT [\"/bin/sh\", \"-c\", \"echo invalidinstruction\"]\n");
    let e = b.fail(&[]);
    assert!(e.contains("unknown instruction: FNTRYPOINT"), "{e}");
    assert!(e.contains("did you mean ENTRYPOINT?"), "{e}");
}

// ---- dockerfile_history_test.go

#[test]
fn exported_history() {
    let b = Bk::new();
    b.dockerfile("\nFROM busybox AS base\nENV foo=bar\nCOPY foo /foo2\nFROM busybox\nLABEL lbl=val\nCOPY --from=base foo2 foo3\nWORKDIR /\nRUN echo bar > foo4\nRUN [\"ls\"]\nEXPOSE 2375 5000 1234/udp\n")
        .file("foo", b"contents0", 0o600);
    let cfg = b.config(&[]);
    assert_eq!(cfg["rootfs"]["type"], "layers");
    assert_eq!(
        cfg["rootfs"]["diff_ids"].as_array().unwrap().len(),
        BASE_LAYERS + 3
    );
    let h = cfg["history"].as_array().unwrap();
    assert_eq!(h.len(), BASE_HISTORY + 6);
    let o = BASE_HISTORY;
    let at = |i: usize, text: &str, empty: bool| {
        let e = &h[o + i];
        let by = e["created_by"].as_str().unwrap();
        assert!(by.contains(text), "{by:?} lacks {text:?}");
        assert_eq!(e["empty_layer"].as_bool().unwrap_or(false), empty, "{e}");
        assert!(e["created"].is_string(), "{e}");
    };
    at(0, "lbl=val", true);
    at(1, "COPY foo2 foo3", false);
    at(2, "WORKDIR /", true);
    at(3, "echo bar > foo4", false);
    at(4, "RUN ls", false);
    at(5, "EXPOSE [1234/udp 2375/tcp 5000/tcp]", true);
}

#[test]
fn exported_history_flatten_args() {
    let b = Bk::new();
    b.dockerfile("\nFROM busybox\nARG foo=bar\nARG bar=123\nARG foo=bar2\nRUN ls /etc/\n");
    let cfg = b.config(&[]);
    let h = cfg["history"].as_array().unwrap();
    let first = h
        .iter()
        .position(|e| e["created_by"] == "ARG foo=bar")
        .expect("ARG foo=bar in the history");
    assert!(first > 0);
    assert_eq!(h.len(), first + 4);
    let by = |i: usize| h[i]["created_by"].as_str().unwrap().to_string();
    assert!(by(first + 1).contains("ARG bar=123"));
    assert!(by(first + 2).contains("ARG foo=bar2"));
    let run = by(first + 3);
    assert!(run.contains("ls /etc/"), "{run}");
    assert!(run.contains("RUN |2 foo=bar2 bar=123 "), "{run}");
    assert!(!run.contains("ARG foo=bar"), "{run}");
}

#[test]
fn history_error() {
    let b = Bk::new();
    b.dockerfile("\nFROM scratch\nCOPY notexist /foo\n");
    let e = b.fail(&[]);
    assert!(e.contains("/notexist") || e.contains("notexist"), "{e}");
    assert!(e.contains("Dockerfile:3"), "{e}");
}

// ---- dockerfile_secrets_test.go

fn secret_file(b: &Bk) -> String {
    let p = b.dir.path().join("mysecret.txt");
    std::fs::write(&p, "pw").unwrap();
    format!("id=mysecret,src={}", p.display())
}

#[test]
fn secret_file_params() {
    let b = Bk::new();
    b.dockerfile("\nFROM busybox\nRUN --mount=type=secret,required=false,mode=741,uid=100,gid=102,target=/mysecret [ \"$(stat -c \"%u %g %f\" /mysecret)\" = \"100 102 81e1\" ]\nRUN [ ! -f /mysecret ] # check no stub left behind\n");
    let s = secret_file(&b);
    b.build(&["--secret", &s]);
}

#[test]
fn secret_required_without_value() {
    let b = Bk::new();
    b.dockerfile("\nFROM busybox \n\t\tRUN --mount=type=secret,required,id=mysecret foo\n");
    let e = b.fail(&[]);
    assert!(e.contains("secret mysecret: not found"), "{e}");
}

#[test]
fn secret_as_environ() {
    let b = Bk::new();
    b.dockerfile("\nFROM busybox\nENV SECRET_ENV=foo\nRUN --mount=type=secret,id=mysecret,env=SECRET_ENV [ \"$SECRET_ENV\" == \"pw\" ] && [ ! -f /run/secrets/mysecret ] || false\n");
    let s = secret_file(&b);
    b.build(&["--secret", &s]);
}

#[test]
fn secret_as_environ_with_file_mount() {
    let b = Bk::new();
    b.dockerfile("\nFROM busybox\nRUN --mount=type=secret,id=mysecret,target=/run/secrets/secret,env=SECRET_ENV [ \"$SECRET_ENV\" == \"pw\" ] && [ -f /run/secrets/secret ] || false\n");
    let s = secret_file(&b);
    b.build(&["--secret", &s]);
}

// ---- dockerfile_runnetwork_test.go

#[test]
fn run_default_network() {
    // rbuild's default network is the build's own namespace with a loopback (docs/compat.md);
    // BuildKit's case checks for an eth0, which exists only with a configured CNI/bridge.
    let b = Bk::new();
    b.dockerfile("\nFROM busybox\nRUN ip link show lo\n");
    b.build(&[]);
}

#[test]
fn run_no_network() {
    let b = Bk::new();
    b.dockerfile("\nFROM busybox\nRUN --network=none ! ip link show eth0\n");
    b.build(&[]);
}

/// A TCP listener on the host's loopback that answers every connection with "foo".
fn foo_server() -> u16 {
    use std::io::Write;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut s = s;
            let _ = s.write_all(b"foo");
        }
    });
    port
}

#[test]
fn run_host_network() {
    let port = foo_server();
    let b = Bk::new();
    b.dockerfile(&format!(
        "\nFROM busybox\nRUN --network=host nc 127.0.0.1 {port} | grep foo\n"
    ));
    // As BuildKit: `RUN --network=host` needs the network.host entitlement.
    b.build(&["--allow", "network.host"]);
    // BuildKit's second half: the default network cannot reach the host's loopback.
    let c = Bk::new();
    c.dockerfile(&format!(
        "\nFROM busybox\nRUN ! nc -z -w 2 127.0.0.1 {port}\n"
    ));
    c.build(&[]);
}

#[test]
fn run_global_network() {
    let port = foo_server();
    let b = Bk::new();
    b.dockerfile(&format!(
        "\nFROM busybox\nRUN nc 127.0.0.1 {port} | grep foo\nRUN --network=none ! nc -z 127.0.0.1 {port}\n"
    ));
    b.build(&["--network", "host"]);
}

// ---- dockerfile_runsecurity_test.go

#[test]
fn run_security_sandbox() {
    let b = Bk::new();
    b.dockerfile("\nFROM busybox\nRUN --security=sandbox [ \"$(cat /proc/self/status | grep CapBnd)\" == \"CapBnd:\t00000000a80425fb\" ]\n");
    b.build(&[]);
}

#[test]
fn run_security_default() {
    let b = Bk::new();
    b.dockerfile("\nFROM busybox\nRUN [ \"$(cat /proc/self/status | grep CapBnd)\" == \"CapBnd:\t00000000a80425fb\" ]\n");
    b.build(&[]);
}
