use std::path::Path;

use super::*;
use crate::crypto::PrivateKey;

const GOOD: &str = r#"
channels:
  alipay:
    kind: alipay
    endpoint: https://openapi.alipay.com/gateway.do
    app_id: "2021000000000001"
    app_private_key: { file: sandbox/keys/alipay_app_private.pem }
    alipay_public_key: { file: sandbox/keys/alipay_public.pem }
    fee: { rate: "0.38%" }
rules:
  - name: all
    channels: [alipay]
"#;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/routes.yaml"))
}

fn problems(text: &str) -> Vec<Problem> {
    compile(text, root(), &CompileOptions::default()).expect_err("must be rejected")
}

#[test]
fn sample_and_minimal_files_compile() {
    let snap = load(root(), &CompileOptions::default()).unwrap();
    assert_eq!(snap.channels[0].name, "alipay");
    assert_eq!(snap.hash.len(), 64);
    let snap = compile(GOOD, root(), &CompileOptions::default()).unwrap();
    assert_eq!(snap.channels[0].fee.rate.ppm, 3800);
    assert_eq!(snap.rules[0].channels, vec!["alipay".to_string()]);
}

#[test]
fn unknown_key_is_reported_with_its_location() {
    let text = GOOD.replace("    fee:", "    feee:");
    let p = problems(&text);
    assert_eq!(p.len(), 1);
    assert_eq!((p[0].line, p[0].column), (9, 5), "{p:?}");
    assert!(
        p[0].message
            .starts_with("channels.alipay.feee: unknown field `feee`"),
        "{p:?}"
    );
}

#[test]
fn semantic_errors_are_all_reported_with_locations() {
    let text = GOOD
        .replace(
            "https://openapi.alipay.com/gateway.do",
            "http://192.168.1.10/gateway.do",
        )
        .replace("sandbox/keys/alipay_app_private.pem", "missing/key.pem")
        .replace("channels: [alipay]", "channels: [alipay, nosuch]");
    let p = problems(&text);
    let msgs: Vec<String> = p.iter().map(|p| p.to_string()).collect();
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("5:15:") && m.contains("loopback")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("7:22:") && m.contains("missing/key.pem")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("12:24:") && m.contains("nosuch")),
        "{msgs:?}"
    );
}

#[test]
fn bad_fee_and_kind_are_rejected() {
    let p = problems(&GOOD.replace("\"0.38%\"", "\"0.38\""));
    assert!(p[0].message.contains("percentage"), "{p:?}");
    // At the rate itself, not at the channel.
    assert_eq!((p[0].line, p[0].column), (9, 18), "{p:?}");
    let p = problems(&GOOD.replace("kind: alipay", "kind: paypal"));
    assert!(p[0].message.contains("unknown channel kind"), "{p:?}");
    assert_eq!((p[0].line, p[0].column), (4, 11));
}

#[test]
fn broken_yaml_has_a_location() {
    let p = problems("channels:\n  alipay:\n    kind: [unclosed\n  - nonsense: : :\n");
    assert!(p[0].line >= 3, "{p:?}");
}

#[test]
fn keys_from_environment() {
    let key = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/sandbox/keys/alipay_app_private.pem"
    ))
    .unwrap();
    // Unique names: tests run in parallel within one process.
    std::env::set_var("PAYROUTE_TEST_KEY_7F3A", key);
    let text = GOOD.replace(
        "{ file: sandbox/keys/alipay_app_private.pem }",
        "{ env: PAYROUTE_TEST_KEY_7F3A }",
    );
    compile(&text, root(), &CompileOptions::default()).unwrap();
    let text = GOOD.replace(
        "{ file: sandbox/keys/alipay_app_private.pem }",
        "{ env: PAYROUTE_TEST_UNSET_9C1D }",
    );
    let p = problems(&text);
    assert!(p[0].message.contains("PAYROUTE_TEST_UNSET_9C1D"), "{p:?}");
}

#[test]
fn a_fee_finer_than_a_fen_is_a_located_type_error() {
    let text = GOOD.replace(
        "fee: { rate: \"0.38%\" }",
        "fee: { rate: \"0.38%\", fixed: 0.5 }",
    );
    let p = problems(&text);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].line, 9, "{p:?}");
    assert!(p[0].column > 5, "{p:?}");
    let p = problems(&GOOD.replace("\"0.38%\"", "\"0.38125%\""));
    assert!(p[0].message.contains("more than four decimals"), "{p:?}");
}

/// Whether the first channel's rate limit has no call left now.
async fn spent(s: &Snapshot) -> bool {
    let limiter = s.channels[0].limiter.as_ref().unwrap();
    limiter.check().await.is_err()
}

#[tokio::test]
async fn a_reload_keeps_a_channels_client_and_spent_budget_until_its_own_settings_change() {
    let v0 = GOOD.replace(
        "    fee: { rate: \"0.38%\" }",
        "    fee: { rate: \"0.38%\" }\n    rate_limit: { per_second: 1, burst: 1 }",
    );
    let opts = CompileOptions::default();
    let s0 = compile(&v0, root(), &opts).unwrap();
    let limiter = s0.channels[0].limiter.clone().unwrap();
    assert!(limiter.check().await.is_ok());
    assert!(
        limiter.check().await.is_err(),
        "the budget of one call is spent"
    );
    let same = |a: &Snapshot, b: &Snapshot| {
        let (a, b) = (&a.channels[0], &b.channels[0]);
        (
            Arc::ptr_eq(&a.client, &b.client),
            Arc::ptr_eq(a.limiter.as_ref().unwrap(), b.limiter.as_ref().unwrap()),
        )
    };
    // An edit elsewhere (a rule, the fee): the client (and its pool) and the spent budget stay.
    let v1 = v0
        .replace("name: all", "name: everything")
        .replace("0.38%", "0.39%");
    let s1 = compile_reusing(&v1, root(), &opts, Some(&s0)).unwrap();
    assert_eq!(same(&s0, &s1), (true, true));
    assert!(spent(&s1).await);
    // Without a previous snapshot everything is new.
    let fresh = compile(&v1, root(), &opts).unwrap();
    assert_eq!(same(&s1, &fresh), (false, false));
    // A new rate_limit: a fresh budget; the client stays.
    let v2 = v1.replace("burst: 1 }", "burst: 2 }");
    let s2 = compile_reusing(&v2, root(), &opts, Some(&s1)).unwrap();
    assert_eq!(same(&s1, &s2), (true, false));
    assert!(!spent(&s2).await);
    // New timeouts or a new endpoint: a new client; the limiter stays.
    let v3 = v2.replace("    fee:", "    timeouts: { request_ms: 5000 }\n    fee:");
    let s3 = compile_reusing(&v3, root(), &opts, Some(&s2)).unwrap();
    assert_eq!(same(&s2, &s3), (false, true));
    let v4 = v3.replace("openapi.alipay.com", "openapi-sandbox.dl.alipaydev.com");
    let s4 = compile_reusing(&v4, root(), &opts, Some(&s3)).unwrap();
    assert_eq!(same(&s3, &s4), (false, true));
    // A channel that is renamed is another channel.
    let v5 = v4
        .replace("  alipay:\n", "  alipay2:\n")
        .replace("[alipay]", "[alipay2]");
    let s5 = compile_reusing(&v5, root(), &opts, Some(&s4)).unwrap();
    assert_eq!(same(&s4, &s5), (false, false));
}

/// Every problem of a file at once, each at its key with the field named: one bad section hides
/// no other.
#[test]
fn every_problem_is_reported_at_its_key() {
    let text = r#"
channels:
  alipay:
    kind: alipay
    endpoint: https://openapi.alipay.com/gateway.do
    app_id: "2021000000000001"
    app_private_key: { file: sandbox/keys/alipay_app_private.pem }
    alipay_public_key: { file: sandbox/keys/alipay_public.pem }
    fee: { rate: "0.38", max: 100 }
  wechatpay:
    kind: wechatpay
    endpoint: https://api.mch.weixin.qq.com
    mchidd: "1900000001"
  pingpp:
    kind: pingpp
    endpoint: https://api.pingxx.com
    timeouts:
      request_ms: soon
rules:
  - name: small
    match: { max_amount: ten }
    channels: [alipay]
  - name: typo
    channels: [alipay, alipya]
  - name: ok
    channels: [wechatpay, pingpp]
"#;
    let p = problems(text);
    let got: Vec<String> = p.iter().map(|p| p.to_string()).collect();
    let want = [
        "9:18: channel `alipay` fee: rate `0.38` must be a percentage such as \"0.38%\"",
        "13:5: channels.wechatpay.mchidd: unknown field `mchidd`",
        "18:19: channels.pingpp.timeouts.request_ms: expected an integer",
        "21:26: rules[0].match.max_amount: expected an integer",
        "24:24: rule `typo` names undefined channel `alipya`",
    ];
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for (g, w) in got.iter().zip(want) {
        assert!(g.starts_with(w), "{g}\nwanted {w}\nall: {got:#?}");
    }
}

#[test]
fn a_wrong_top_level_type_and_an_unknown_top_level_key_are_both_reported() {
    let text = GOOD.replace("rules:\n", "rulez: 1\nrefund_duplicates: maybe\nrules:\n");
    let got: Vec<String> = problems(&text).iter().map(|p| p.to_string()).collect();
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got[0].starts_with("10:1: unknown field `rulez`"),
        "{got:#?}"
    );
    assert!(
        got[1].starts_with("11:20: refund_duplicates: expected true or false"),
        "{got:#?}"
    );
}

#[test]
fn published_test_keys_are_refused_only_for_real_gateways() {
    let refuse = CompileOptions {
        refuse_test_keys: true,
        ..Default::default()
    };
    let p = compile(GOOD, root(), &refuse).expect_err("a TEST key with the real Alipay");
    let got: Vec<String> = p.iter().map(|p| p.to_string()).collect();
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got[0].starts_with("7:22: channel `alipay`: app_private_key is a published TEST key"),
        "{got:#?}"
    );
    assert!(
        got[1].starts_with("8:24: channel `alipay`: alipay_public_key is a published TEST key"),
        "{got:#?}"
    );
    let key = std::fs::read_to_string(root().with_file_name("sandbox/keys/alipay_app_private.pem"))
        .unwrap();
    let body_line = key.lines().nth(1).unwrap();
    assert!(got.iter().all(|m| !m.contains(body_line)), "never the key");
    // Loopback (a local stand-in or the sandbox): allowed. Not refusing (explain): allowed.
    let local = GOOD.replace(
        "https://openapi.alipay.com/gateway.do",
        "http://127.0.0.1:9/gateway.do",
    );
    compile(&local, root(), &refuse).unwrap();
    compile(GOOD, root(), &CompileOptions::default()).unwrap();
    // A key of the protocol test vectors, in another encoding than the one published, too.
    let vectors = root().with_file_name("../shared/protocols/testvectors/keys");
    if vectors.is_dir() {
        let dir = tempfile::tempdir().unwrap();
        let b64 = std::fs::read_to_string(vectors.join("alipay_app_private_pkcs8.b64")).unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            b64.trim()
        );
        let file = dir.path().join("app.pem");
        std::fs::write(&file, pem).unwrap();
        let text = GOOD
            .replace(
                "sandbox/keys/alipay_app_private.pem",
                file.to_str().unwrap(),
            )
            .replace(
                "{ file: sandbox/keys/alipay_public.pem }",
                "{ file: /dev/null }",
            );
        let p = compile(&text, root(), &refuse).expect_err("a test-vector key");
        assert!(
            p.iter().any(|p| p
                .message
                .contains("app_private_key is a published TEST key")),
            "{p:?}"
        );
    }
}

/// Swaps the Alipay public key for an in-memory one, as the sandbox does.
#[derive(Debug)]
struct InlinePublicKey(String);

impl Rewrite for InlinePublicKey {
    fn rewrite(&self, raw: &mut RawConfig, _base: &Path) {
        let ch = raw.channels.get_mut("alipay").unwrap();
        ch.common.endpoint.value = "http://127.0.0.1:9/gateway.do".into();
        let at = ch.kind.referenced;
        let crate::channels::registry::ChannelSettings::Alipay(s) = &mut ch.settings else {
            panic!("an Alipay channel");
        };
        s.alipay_public_key = Some(serde_saphyr::Spanned::new(
            KeyRef::inline(self.0.clone()),
            at,
            at,
        ));
    }
}

#[test]
fn a_rewrite_runs_before_compiling_and_inline_keys_cannot_be_written() {
    let private = crate::crypto::generate_private_key_pem();
    let pem = PrivateKey::from_text(private.expose())
        .unwrap()
        .public_key()
        .to_pem();
    let opts = CompileOptions {
        rewrite: Some(Arc::new(InlinePublicKey(pem))),
        ..Default::default()
    };
    let text = GOOD.replace(
        "alipay_public_key: { file: sandbox/keys/alipay_public.pem }",
        "alipay_public_key: { file: missing/key.pem }",
    );
    let snap = compile(&text, root(), &opts).expect("the rewritten file compiles");
    assert_eq!(snap.channels[0].endpoint, "http://127.0.0.1:9/gateway.do");
    assert_eq!(
        snap.hash,
        crate::crypto::sha256_hex(text.as_bytes()),
        "the hash is the file's"
    );
    let written = GOOD.replace(
        "{ file: sandbox/keys/alipay_public.pem }",
        "{ inline: \"-----BEGIN PUBLIC KEY-----\" }",
    );
    let p = problems(&written);
    assert!(p[0].message.contains("unknown field `inline`"), "{p:?}");
}

/// A key of another kind is an unknown key of this one, at its line:column; `kind` may come
/// anywhere in the channel.
#[test]
fn a_key_of_another_kind_is_unknown_at_its_location() {
    let p = problems(&GOOD.replace("    fee:", "    mchid: \"1900000001\"\n    fee:"));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!((p[0].line, p[0].column), (9, 5), "{p:?}");
    assert!(
        p[0].message
            .starts_with("channels.alipay.mchid: unknown field `mchid`"),
        "{p:?}"
    );
    let last = GOOD
        .replace("    kind: alipay\n", "")
        .replace("    fee:", "    kind: alipay\n    fee:");
    let snap = compile(&last, root(), &CompileOptions::default()).unwrap();
    assert_eq!(snap.channels[0].kind, "alipay");
}
