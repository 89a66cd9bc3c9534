//! The fuzz targets' properties without cargo-fuzz, so CI checks them on every run: the seed
//! corpora and every input a fuzzer found (`fuzz/regressions/<target>/`) replayed through the
//! targets' entry points (`payroute::fuzzing`), and signed notifications that stop verifying
//! when any one byte of them changes.

use std::path::{Path, PathBuf};

use payroute::api::splits;
use payroute::channels::{NotifyError, Outcome};
use payroute::fuzzing::{self, notifiers};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `fuzz/<kind>/<target>/` (none when the directory does not exist).
fn inputs(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(dir) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else {
        return Vec::new();
    };
    let mut files: Vec<_> = dir
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// Feeds the seeds and the regressions of `target` to `run`; a panic names the file.
fn replay(target: &str, run: impl Fn(&[u8])) -> usize {
    let mut n = 0;
    for kind in ["corpus", "regressions"] {
        for (path, bytes) in inputs(kind, target) {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&bytes)));
            assert!(result.is_ok(), "{} fails its target", path.display());
            n += 1;
        }
    }
    n
}

#[test]
fn seeds_and_regressions_pass_their_targets() {
    let notifiers = notifiers();
    let replayed = replay("create_payment", fuzzing::create_payment)
        + replay("refund", fuzzing::refund)
        + replay("split", fuzzing::split)
        + replay("split_return", fuzzing::split_return)
        + replay("receiver", fuzzing::receiver)
        + replay("statement_wechatpay", fuzzing::wechatpay_statement)
        + replay("statement_alipay", fuzzing::alipay_statement)
        + replay("notify_alipay", |d| drop(notifiers.alipay(d)))
        + replay("notify_wechatpay", |d| drop(notifiers.wechatpay(d)))
        + replay("notify_pingpp", |d| drop(notifiers.pingpp(d)))
        + replay("response_alipay", |d| drop(notifiers.alipay_response(d)))
        + replay("response_wechatpay", |d| {
            drop(notifiers.wechatpay_response(d))
        })
        + replay("response_pingpp", |d| drop(notifiers.pingpp_response(d)));
    assert!(
        replayed >= 10,
        "the seed corpora are missing: {replayed} files"
    );
}

/// A request target's parser, answering whether it accepts a body.
type Accepts<'a> = &'a dyn Fn(&[u8]) -> bool;

/// Each split request target has seeds its parser accepts, so that the fuzzer starts from
/// requests that reach the re-encoding property, and a change to the parser that turns every
/// seed into a rejection fails here rather than leaving the fuzzer at the first check.
#[test]
fn split_request_seeds_are_accepted() {
    let targets: [(&str, Accepts); 3] = [
        ("split", &|d| splits::parse_split(d).is_ok()),
        ("split_return", &|d| splits::parse_return(d).is_ok()),
        ("receiver", &|d| splits::parse_receiver(d).is_ok()),
    ];
    for (target, accepts) in targets {
        let seeds = inputs("corpus", target);
        assert!(
            (5..=15).contains(&seeds.len()),
            "{target}: {} seeds",
            seeds.len()
        );
        let accepted = seeds.iter().filter(|(_, bytes)| accepts(bytes)).count();
        assert!(accepted >= 1, "{target}: no seed is accepted");
    }
}

/// The first seed of `target`, which is a valid signed notification.
fn signed_seed(target: &str) -> Vec<u8> {
    inputs("corpus", target).remove(0).1
}

/// Every single-bit change of a notification that verifies makes it fail to verify, except in
/// `unsigned`: the field that names the signature algorithm, which no signature covers (a
/// changed name is an unknown header, or an empty Alipay parameter, which signing skips).
fn every_flip_is_rejected(
    target: &str,
    unsigned: Option<&str>,
    verify: impl Fn(&[u8]) -> Result<payroute::channels::NotificationEvent, NotifyError>,
) {
    let seed = signed_seed(target);
    verify(&seed).unwrap_or_else(|e| panic!("the {target} seed does not verify: {e}"));
    let skip = unsigned.map_or(0..0, |u| {
        let at = find(&seed, u.as_bytes()).expect("the unsigned field is in the seed");
        at..at + u.len()
    });
    for i in (0..seed.len()).filter(|i| !skip.contains(i)) {
        let mut tampered = seed.clone();
        tampered[i] ^= 0x01;
        assert!(
            verify(&tampered).is_err(),
            "{target}: flipping byte {i} ({:?}) still verifies",
            char::from(seed[i])
        );
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn tampered_alipay_notifications_are_rejected() {
    every_flip_is_rejected("notify_alipay", Some("sign_type=RSA2"), |d| {
        notifiers().alipay(d)
    });
}

#[test]
fn tampered_wechatpay_notifications_are_rejected() {
    every_flip_is_rejected(
        "notify_wechatpay",
        Some("Wechatpay-Signature-Type: WECHATPAY2-SHA256-RSA2048"),
        |d| notifiers().wechatpay(d),
    );
}

#[test]
fn tampered_pingpp_webhooks_are_rejected() {
    every_flip_is_rejected("notify_pingpp", None, |d| notifiers().pingpp(d));
}

#[test]
fn routes_yaml_seeds_compile_twice_alike() {
    // The seeds give their keys by `env`, as the fuzz target sets them.
    let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("sandbox/keys");
    for (var, file) in [
        ("PAYROUTE_FUZZ_ALIPAY_APP_PRIVATE", "alipay_app_private.pem"),
        ("PAYROUTE_FUZZ_ALIPAY_PUBLIC", "alipay_public.pem"),
        (
            "PAYROUTE_FUZZ_WECHAT_MERCHANT_PRIVATE",
            "wechat_merchant_private.pem",
        ),
        ("PAYROUTE_FUZZ_WECHAT_APIV3", "wechat_apiv3.key"),
        ("PAYROUTE_FUZZ_WECHATPAY_PUBLIC", "wechatpay_public.pem"),
        ("PAYROUTE_FUZZ_PINGPP_SECRET", "pingpp_secret.key"),
        (
            "PAYROUTE_FUZZ_PINGPP_MERCHANT_PRIVATE",
            "pingpp_merchant_private.pem",
        ),
        ("PAYROUTE_FUZZ_PINGPP_PUBLIC", "pingpp_public.pem"),
    ] {
        std::env::set_var(var, std::fs::read_to_string(keys.join(file)).unwrap());
    }
    let seeds = inputs("corpus", "routes_yaml");
    assert!(!seeds.is_empty());
    for (path, text) in &seeds {
        // A seed that does not compile would leave the fuzzer only the parser.
        let text = std::str::from_utf8(text).unwrap();
        payroute::config::compile(
            text,
            Path::new("fuzz/routes.yaml"),
            &payroute::config::CompileOptions::default(),
        )
        .unwrap_or_else(|p| panic!("{}: {p:?}", path.display()));
    }
    assert_eq!(replay("routes_yaml", fuzzing::routes_yaml), seeds.len());
}

/// A response target's entry point.
type Parser<'a> = &'a dyn Fn(&[u8]) -> Outcome;

/// Every response seed is an answer its adapter understands (not `Unknown`), so that the
/// fuzzer starts from the fields rather than from a rejection.
#[test]
fn response_seeds_are_understood() {
    let n = notifiers();
    let targets: [(&str, Parser); 3] = [
        ("response_alipay", &|d| n.alipay_response(d)),
        ("response_wechatpay", &|d| n.wechatpay_response(d)),
        ("response_pingpp", &|d| n.pingpp_response(d)),
    ];
    let mut misread = Vec::new();
    for (target, parse) in targets {
        let seeds = inputs("corpus", target);
        assert!(seeds.len() >= 10, "{target}: {} seeds", seeds.len());
        for (path, bytes) in seeds {
            let outcome = parse(&bytes);
            if matches!(outcome, Outcome::Unknown { .. }) {
                misread.push(format!("{}: {outcome:?}", path.display()));
            }
        }
    }
    assert!(misread.is_empty(), "{misread:#?}");
}

/// The signed response vectors (the first seeds, which the harness does not sign) stop
/// verifying when any one bit of the answer changes; the first line (the operation the harness
/// reads) and the header naming the signature scheme are not part of the answer's signature.
#[test]
fn tampered_responses_are_rejected() {
    let n = notifiers();
    let targets: [(&str, Option<&str>, Parser); 2] = [
        ("response_alipay", None, &|d| n.alipay_response(d)),
        (
            "response_wechatpay",
            Some("Wechatpay-Signature-Type: WECHATPAY2-SHA256-RSA2048"),
            &|d| n.wechatpay_response(d),
        ),
    ];
    for (target, unsigned, parse) in targets {
        let seed = signed_seed(target);
        let first_line = seed.iter().position(|&b| b == b'\n').unwrap() + 1;
        assert!(!matches!(parse(&seed), Outcome::Unknown { .. }));
        let skip = unsigned.map_or(0..0, |u| {
            let at = find(&seed, u.as_bytes()).expect("the unsigned field is in the seed");
            at..at + u.len()
        });
        for i in (first_line..seed.len()).filter(|i| !skip.contains(i)) {
            let mut tampered = seed.clone();
            tampered[i] ^= 0x01;
            let outcome = parse(&tampered);
            assert!(
                matches!(&outcome, Outcome::Unknown { reason } if reason.contains("rejected")),
                "{target}: flipping byte {i} ({:?}) gives {outcome:?}",
                char::from(seed[i])
            );
        }
    }
}
