//! `serve` and `check` refuse a channel that reaches a real gateway with one of the sandbox's
//! published TEST keys; a loopback endpoint and `--sandbox` are unaffected.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_payroute");

fn key(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("sandbox/keys")
        .join(name)
}

/// One Alipay channel at `endpoint` with the sandbox's app private key.
fn config(dir: &Path, endpoint: &str) -> PathBuf {
    let file = dir.join(format!("routes-{}.yaml", endpoint.len()));
    std::fs::write(
        &file,
        format!(
            "channels:\n  alipay:\n    kind: alipay\n    endpoint: {endpoint}\n    app_id: \"2021000000000001\"\n    \
             app_private_key: {{ file: {} }}\n    alipay_public_key: {{ file: {} }}\n",
            key("alipay_app_private.pem").display(),
            key("alipay_public.pem").display(),
        ),
    )
    .unwrap();
    file
}

fn check(args: &[&str], file: &Path) -> Output {
    Command::new(BIN)
        .arg("check")
        .args(args)
        .arg(file)
        .output()
        .unwrap()
}

const REFUSED: &str = "6:22: channel `alipay`: app_private_key is a published TEST key";

#[test]
fn check_warns_about_test_keys_for_a_real_gateway_only() {
    let dir = tempfile::tempdir().unwrap();
    let real = config(dir.path(), "https://openapi.alipay.com/gateway.do");
    // The file is valid (the sample and the shared contract check rely on that); `check`
    // warns that `serve` will refuse it.
    let out = check(&[], &real);
    let err = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains(REFUSED), "{err}");
    assert!(err.contains("warning: "), "{err}");
    assert!(err.contains("`payroute serve` refuses to start"), "{err}");
    assert!(
        err.contains("alipay_public_key is a published TEST key"),
        "{err}"
    );
    let pem = std::fs::read_to_string(key("alipay_app_private.pem")).unwrap();
    assert!(!err.contains(pem.lines().nth(1).unwrap()), "never the key");
    // As `serve --sandbox` runs it: allowed.
    let out = check(&["--sandbox"], &real);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A loopback endpoint: allowed.
    let local = config(dir.path(), "http://127.0.0.1:9/gateway.do");
    let out = check(&[], &local);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("TEST key"),
        "no warning for a loopback endpoint"
    );
}

#[test]
fn serve_refuses_to_start_with_test_keys_for_a_real_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let real = config(dir.path(), "https://openapi.alipay.com/gateway.do");
    let listen = |flag: &str| {
        [
            flag.to_string(),
            format!("127.0.0.1:{}", common::free_port()),
        ]
    };
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(&real)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(listen("--api-listen"))
        .args(listen("--notify-listen"))
        .args(listen("--admin-listen"))
        .args(["--notify-base-url", "https://pay.example.com"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve started with a TEST key for the real Alipay gateway");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(err.contains(REFUSED), "{err}");
}

/// In-process: the same file runs with `--sandbox` (every channel reaches a simulator), and with
/// a loopback endpoint.
#[tokio::test]
async fn sandbox_and_loopback_endpoints_may_use_test_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = common::test_args(dir.path().join("data"));
    args.config = config(dir.path(), "https://openapi.alipay.com/gateway.do");
    let run = payroute::app::start(&args).await.expect("--sandbox starts");
    run.stop().await;
    args.sandbox = false;
    args.data_dir = Some(dir.path().join("data2"));
    assert!(
        payroute::app::start(&args).await.is_err(),
        "not without --sandbox"
    );
    args.data_dir = Some(dir.path().join("data3"));
    args.config = config(dir.path(), "http://127.0.0.1:9/gateway.do");
    args.notify_base_url = Some("http://127.0.0.1:9".into());
    let run = payroute::app::start(&args).await.expect("loopback starts");
    run.stop().await;
}
