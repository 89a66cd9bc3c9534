//! Trade bills: built from the simulator's state, edited by the control, downloaded once and
//! unsigned, and read back by the adapter.

use std::io::{Seek, Write};

use chrono::{Duration, Utc};
use http::{Method, StatusCode};
use serde_json::json;
use sha1::Digest;

use super::super::tests::{adapter, native, round_trip};
use super::*;
use crate::bills::{BillError, BillLine, BillLocation, LineKind};
use crate::channels::wechatpay::WechatPay;
use crate::channels::{Channel, Op, Outcome};
use crate::sandbox::kit::{test_channel, test_request};
use crate::sandbox::shared::ExtraPayment;
use crate::sandbox::Simulator;

fn today() -> NaiveDate {
    china_date(Utc::now())
}

/// A paid order of `amount` fen.
fn paid(g: &Gateway, no: &str, amount: u64) {
    let mut body = native(g, no, "茶, 两杯");
    body["amount"]["total"] = json!(amount);
    assert_eq!(g.prepay("NATIVE", &body).0, StatusCode::OK);
    g.pay(no, false).unwrap();
}

/// A refund of `amount` fen, settled.
fn refunded(g: &Gateway, no: &str, refund_no: &str, amount: u64, total: u64) {
    let body = json!({
        "out_trade_no": no, "out_refund_no": refund_no,
        "amount": { "refund": amount, "total": total, "currency": "CNY" },
    });
    assert_eq!(g.refund(&body).0, StatusCode::OK);
    assert_eq!(g.refund_query(refund_no).1["status"], "SUCCESS");
}

/// A request the adapter built, as the simulator receives it.
fn received(req: http::Request<bytes::Bytes>) -> GatewayRequest {
    let (parts, body) = req.into_parts();
    GatewayRequest {
        method: parts.method,
        uri: parts
            .uri
            .path_and_query()
            .unwrap()
            .as_str()
            .parse()
            .unwrap(),
        headers: parts.headers,
        body,
    }
}

fn setup() -> (Gateway, WechatPay) {
    let (channel, merchant_key) = test_channel("wechatpay");
    let g = Gateway::new(&channel);
    let wp = adapter(&g, merchant_key);
    (g, wp)
}

async fn location(g: &Gateway, wp: &WechatPay, date: NaiveDate) -> BillLocation {
    match round_trip(g, wp, Op::BillQuery { date }).await {
        Outcome::Bill(l) => l,
        other => panic!("{other:?}"),
    }
}

/// The file at `l`, downloaded as the adapter asks for it: status, headers and bytes.
async fn download(
    g: &Gateway,
    wp: &WechatPay,
    l: &BillLocation,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let req = wp.download_request(l, Utc::now()).unwrap();
    let resp = g.handle(&received(req), false);
    let (status, headers) = (resp.status(), resp.headers().clone());
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, body.to_vec())
}

use http::HeaderMap;

fn read(wp: &WechatPay, bytes: &[u8]) -> Result<Vec<BillLine>, BillError> {
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(bytes).unwrap();
    file.rewind().unwrap();
    wp.statement_lines(file)?.collect()
}

/// The statement of today, checked against its hash and read.
async fn statement(g: &Gateway, wp: &WechatPay) -> Vec<BillLine> {
    let l = location(g, wp, today()).await;
    let (status, _, bytes) = download(g, wp, &l).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(Some(hex::encode(sha1::Sha1::digest(&bytes))), l.sha1);
    read(wp, &bytes).unwrap()
}

fn summary(lines: &[BillLine]) -> Vec<(&'static str, &str, Option<&str>, u64, u64)> {
    let mut v: Vec<_> = lines
        .iter()
        .map(|l| {
            (
                match l.kind {
                    LineKind::Payment => "payment",
                    LineKind::Refund => "refund",
                },
                l.out_trade_no.as_str(),
                l.out_refund_no.as_deref(),
                l.amount.get(),
                l.fee.get(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn fees_are_six_per_mille_half_up_and_refunds_give_back_their_share() {
    assert_eq!(fee_of(1000), 6);
    assert_eq!(fee_of(250), 2, "1.5 rounds up");
    assert_eq!(fee_of(249), 1, "1.494 rounds down");
    assert_eq!(fee_of(83), 0);
    assert_eq!(share_half_up(6, 400, 1000), 2);
    assert_eq!(share_half_up(7, 500, 1000), 4);
}

#[tokio::test]
async fn the_days_statement_holds_its_payments_and_refunds_and_the_adapter_reads_it() {
    let (g, wp) = setup();
    let before = Utc::now() - Duration::seconds(1);
    paid(&g, "N000001", 1000);
    paid(&g, "N000002", 1050);
    refunded(&g, "N000001", "RF1", 400, 1000);
    // 1050 pays 6 (6.3); refunds of all of it in thirds give back exactly 2 + 2 + 2.
    for (no, amount) in [("RF2", 350), ("RF3", 350), ("RF4", 350)] {
        refunded(&g, "N000002", no, amount, 1050);
    }
    assert_eq!(
        g.prepay("NATIVE", &native(&g, "N000003", "unpaid")).0,
        StatusCode::OK
    );
    let after = Utc::now() + Duration::seconds(1);

    let lines = statement(&g, &wp).await;
    let (payment, refund) = ("payment", "refund");
    assert_eq!(
        summary(&lines),
        [
            (payment, "N000001", None, 1000, 6),
            (payment, "N000002", None, 1050, 6),
            (refund, "N000001", Some("RF1"), 400, 2),
            (refund, "N000002", Some("RF2"), 350, 2),
            (refund, "N000002", Some("RF3"), 350, 2),
            (refund, "N000002", Some("RF4"), 350, 2),
        ]
    );
    let view = g.order_view("N000001").unwrap();
    for l in &lines {
        // Times are to the second, in China time on the wire.
        let at = l.at.unwrap();
        assert!(at >= before - Duration::seconds(1) && at <= after, "{at}");
        assert_eq!(l.channel_trade_no.as_ref().map(|_| true), Some(true));
        if l.kind == LineKind::Refund {
            assert!(l.channel_refund_no.is_some());
        }
    }
    let n1 = lines.iter().find(|l| l.out_trade_no == "N000001").unwrap();
    assert_eq!(
        n1.channel_trade_no.as_deref(),
        view["transaction_id"].as_str()
    );

    // Yesterday had nothing; tomorrow has no statement yet.
    let yesterday = statement_of(&g, &wp, today() - chrono::Days::new(1)).await;
    assert!(yesterday.is_empty());
    assert_eq!(
        round_trip(
            &g,
            &wp,
            Op::BillQuery {
                date: today() + chrono::Days::new(1)
            }
        )
        .await,
        Outcome::BillNotReady
    );
}

async fn statement_of(g: &Gateway, wp: &WechatPay, date: NaiveDate) -> Vec<BillLine> {
    let l = location(g, wp, date).await;
    read(wp, &download(g, wp, &l).await.2).unwrap()
}

#[tokio::test]
async fn a_bill_file_is_downloaded_once_unsigned_and_only_with_a_valid_signature() {
    let (g, wp) = setup();
    paid(&g, "N000010", 1000);
    let l = location(&g, &wp, today()).await;
    assert!(
        l.url
            .starts_with("http://127.0.0.1/v3/billdownload/file?token="),
        "{}",
        l.url
    );
    // A spoiled Authorization is refused as every call is.
    let mut req = received(wp.download_request(&l, Utc::now()).unwrap());
    req.uri = format!("{}x", req.uri).parse().unwrap();
    let resp = g.handle(&req, false);
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().contains_key("Wechatpay-Signature"));

    let (status, headers, bytes) = download(&g, &wp, &l).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !headers.contains_key("Wechatpay-Signature"),
        "bill files are not signed"
    );
    assert_eq!(&bytes[..2], [0x1f, 0x8b], "a gzip");
    let (status, _, _) = download(&g, &wp, &l).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the token is used");

    // Over the wire, the download address is the simulator's own (the request's Host).
    let mut q = received(
        match wp
            .build(Op::BillQuery { date: today() }, Utc::now())
            .unwrap()
        {
            crate::channels::Prepared::Send(r) => r,
            other => panic!("{other:?}"),
        },
    );
    q.headers
        .insert(http::header::HOST, "127.0.0.1:4567".parse().unwrap());
    let resp = g.handle(&q, false);
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(answer["download_url"]
        .as_str()
        .unwrap()
        .starts_with("http://127.0.0.1:4567/v3/billdownload/file?token="));
}

#[tokio::test]
async fn the_controls_edits_change_the_statement() {
    let (g, wp) = setup();
    paid(&g, "N000020", 1000);
    paid(&g, "N000021", 2000);
    refunded(&g, "N000021", "RF21", 500, 2000);
    paid(&g, "N000022", 3000);
    g.set_statement_edits(StatementEdits {
        extra: vec![ExtraPayment {
            out_trade_no: "GHOST01".into(),
            amount: 500,
        }],
        amounts: [("N000020".to_string(), 999)].into(),
        missing: vec!["N000021".into()],
        corrupt: false,
    })
    .unwrap();
    let payment = "payment";
    assert_eq!(
        summary(&statement(&g, &wp).await),
        [
            (payment, "GHOST01", None, 500, 3),
            (payment, "N000020", None, 999, 6),
            (payment, "N000022", None, 3000, 18),
        ]
    );

    // Corrupt: the bytes match no hash and do not unpack; the edits replace the earlier ones.
    g.set_statement_edits(StatementEdits {
        corrupt: true,
        ..Default::default()
    })
    .unwrap();
    let l = location(&g, &wp, today()).await;
    let (status, _, bytes) = download(&g, &wp, &l).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(Some(hex::encode(sha1::Sha1::digest(&bytes))), l.sha1);
    assert!(matches!(read(&wp, &bytes), Err(BillError::Damaged(_))));

    g.set_statement_edits(StatementEdits::default()).unwrap();
    assert_eq!(statement(&g, &wp).await.len(), 4);
}

#[test]
fn bill_calls_are_counted_by_path_and_bad_queries_are_refused() {
    let g = Gateway::new(&test_channel("wechatpay").0);
    for (path, label) in [
        (
            "/v3/bill/tradebill?bill_date=2026-11-29&bill_type=ALL&tar_type=GZIP",
            "GET /v3/bill/tradebill",
        ),
        (
            "/v3/billdownload/file?token=abc",
            "GET /v3/billdownload/file",
        ),
    ] {
        assert_eq!(g.call_label(&test_request(Method::GET, path)), label);
    }
    for query in [
        "bill_date=2026-13-01&tar_type=GZIP",
        "bill_type=ALL&tar_type=GZIP",
        "bill_date=2026-11-29&bill_type=MONTH&tar_type=GZIP",
        "bill_date=2026-11-29&bill_type=ALL",
    ] {
        let req = test_request(Method::GET, &format!("/v3/bill/tradebill?{query}"));
        let (status, answer) = g.trade_bill(&req);
        assert_eq!(
            (status, answer["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("PARAM_ERROR")),
            "{query}"
        );
    }
}
