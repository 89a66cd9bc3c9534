//! The adapter's royalty (分账) and statement operations: request shapes and answer
//! mappings, with answers signed as the gateway signs them.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};

use super::signing::{self, Params};
use super::{Alipay, AlipayConfig};
use crate::channels::{
    BuildError, Channel, ChannelSplitState, Op, Outcome, Prepared, RawResponse, ReceiverIntent,
    RefundIntent, RefundReturn, ShareIntent, ShareReport, ShareState, SplitIntent, SplitReport,
    SplitReturnIntent,
};
use crate::crypto::PrivateKey;
use crate::domain::ReceiverType;
use crate::money::Fen;

fn key(file: &str) -> PrivateKey {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sandbox/keys");
    PrivateKey::from_file(&path.join(file)).expect("sample key")
}

/// Any key the test gateway signs its answers with.
fn platform() -> PrivateKey {
    key("pingpp_merchant_private.pem")
}

fn adapter() -> Alipay {
    Alipay::new(AlipayConfig {
        name: "alipay".into(),
        app_id: "2021000000000001".into(),
        gateway: "https://openapi.alipay.com/gateway.do".into(),
        app_private_key: Arc::new(key("alipay_app_private.pem")),
        alipay_public_key: platform().public_key(),
        notify_url: None,
        return_url: None,
        scenes: Vec::new(),
    })
}

fn split(shares: Vec<ShareIntent>, finish: bool) -> SplitIntent {
    SplitIntent {
        out_trade_no: "T1".into(),
        channel_trade_no: Some("2024010122001400000000000001".into()),
        out_split_no: "S1".into(),
        channel_split_no: None,
        shares,
        finish,
        total: Fen(10_000),
    }
}

fn share(t: ReceiverType, account: &str, fen: u64) -> ShareIntent {
    ShareIntent {
        receiver_type: t,
        account: account.into(),
        name: None,
        amount: Fen(fen),
        description: "commission".into(),
    }
}

fn refund(returns: Vec<RefundReturn>) -> RefundIntent {
    RefundIntent {
        out_trade_no: "T1".into(),
        channel_trade_no: None,
        channel_refund_no: None,
        out_refund_no: "R1".into(),
        amount: Fen(3000),
        total: Fen(10_000),
        reason: None,
        returns,
    }
}

/// The signed parameters of the request `op` builds.
fn params(op: Op<'_>) -> Params {
    let now = Utc.with_ymd_and_hms(2024, 1, 1, 4, 0, 0).unwrap();
    let Prepared::Send(req) = adapter().build(op, now).expect("built") else {
        panic!("sent to the gateway")
    };
    let mut p = Params::decode(req.uri().query().unwrap_or_default().as_bytes());
    p.0.extend(Params::decode(req.body()).0);
    p
}

fn biz_text(op: Op<'_>) -> String {
    params(op).get("biz_content").unwrap().to_string()
}

/// The gateway's signed answer to `method`.
fn answer(method: &str, obj: Value) -> RawResponse {
    let body = signing::sign_response(
        &signing::response_key(method),
        &obj.to_string(),
        &platform(),
    );
    RawResponse {
        status: 200,
        headers: http::HeaderMap::new(),
        body: Bytes::from(body),
    }
}

fn failure(method: &str, sub_code: &str) -> RawResponse {
    answer(
        method,
        json!({"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": "x"}),
    )
}

const SETTLE: &str = "alipay.trade.order.settle";
const QUERY: &str = "alipay.trade.order.settle.query";
const BIND: &str = "alipay.trade.royalty.relation.bind";

#[test]
fn alipay_takes_user_and_login_name_receivers_and_returns_with_refunds() {
    let a = adapter();
    assert_eq!(
        a.receiver_types(),
        &[ReceiverType::User, ReceiverType::LoginName]
    );
    assert!(a.returns_with_refund() && a.can_split());
}

#[test]
fn a_split_is_an_async_settle_of_the_trade() {
    let s = split(
        vec![
            share(ReceiverType::User, "2088101126708402", 1000),
            share(ReceiverType::LoginName, "shop@example.com", 250),
        ],
        true,
    );
    let p = params(Op::Split(&s));
    assert_eq!(p.get("method"), Some(SETTLE));
    assert_eq!(
        p.get("biz_content"),
        Some(concat!(
            r#"{"out_request_no":"S1","trade_no":"2024010122001400000000000001","royalty_parameters":["#,
            r#"{"royalty_type":"transfer","trans_in_type":"userId","trans_in":"2088101126708402","amount":"10.00","desc":"commission"},"#,
            r#"{"royalty_type":"transfer","trans_in_type":"loginName","trans_in":"shop@example.com","amount":"2.50","desc":"commission"}],"#,
            r#""extend_params":{"royalty_finish":"true"},"royalty_mode":"async"}"#
        ))
    );
    let not_finished = split(vec![share(ReceiverType::User, "2088", 1)], false);
    assert!(biz_text(Op::Split(&not_finished)).contains(r#""royalty_finish":"false""#));
    assert_eq!(
        biz_text(Op::SplitQuery(&not_finished)),
        r#"{"out_request_no":"S1","trade_no":"2024010122001400000000000001"}"#
    );
}

#[test]
fn splits_need_the_trade_no_and_alipay_receiver_types() {
    let now = Utc::now();
    let mut s = split(vec![share(ReceiverType::User, "2088", 1)], false);
    s.channel_trade_no = None;
    for op in [Op::Split(&s), Op::SplitQuery(&s)] {
        assert!(matches!(
            adapter().build(op, now),
            Err(BuildError::Invalid(_))
        ));
    }
    let wechat = split(vec![share(ReceiverType::Openid, "o-1", 1)], false);
    assert!(matches!(
        adapter().build(Op::Split(&wechat), now),
        Err(BuildError::Invalid(_))
    ));
    let empty = split(Vec::new(), true);
    assert!(matches!(
        adapter().build(Op::Split(&empty), now),
        Err(BuildError::Invalid(_))
    ));
}

#[test]
fn finish_without_shares_and_separate_returns_are_not_alipay_operations() {
    let now = Utc::now();
    let s = split(Vec::new(), true);
    let r = SplitReturnIntent {
        out_trade_no: "T1".into(),
        channel_trade_no: None,
        out_split_no: "S1".into(),
        channel_split_no: None,
        out_return_no: "B1".into(),
        receiver_type: ReceiverType::User,
        account: "2088".into(),
        amount: Fen(1),
        description: String::new(),
    };
    for op in [
        Op::SplitFinish(&s),
        Op::SplitReturn(&r),
        Op::SplitReturnQuery(&r),
    ] {
        assert!(matches!(
            adapter().build(op, now),
            Err(BuildError::Unsupported(_))
        ));
    }
}

#[test]
fn binding_a_receiver_sends_its_type_account_and_name() {
    let mut receiver = ReceiverIntent {
        receiver_type: ReceiverType::User,
        account: "2088101126708402".into(),
        name: None,
        relation: None,
        request_no: "BIND-1".into(),
    };
    let op = Op::BindReceiver {
        out_trade_no: "T1",
        receiver: &receiver,
    };
    assert_eq!(params(op).get("method"), Some(BIND));
    assert_eq!(
        biz_text(op),
        r#"{"out_request_no":"BIND-1","receiver_list":[{"type":"userId","account":"2088101126708402"}]}"#
    );
    receiver.receiver_type = ReceiverType::LoginName;
    receiver.name = Some("张三".into());
    let op = Op::BindReceiver {
        out_trade_no: "T1",
        receiver: &receiver,
    };
    assert_eq!(
        biz_text(op),
        r#"{"out_request_no":"BIND-1","receiver_list":[{"type":"loginName","account":"2088101126708402","name":"张三"}]}"#
    );
}

#[test]
fn a_refund_carries_its_returns_and_stays_unchanged_without() {
    assert_eq!(
        biz_text(Op::Refund(&refund(Vec::new()))),
        r#"{"out_trade_no":"T1","refund_amount":"30.00","out_request_no":"R1"}"#
    );
    let returns = vec![
        RefundReturn {
            out_return_no: "B1".into(),
            receiver_type: ReceiverType::User,
            account: "2088101126708402".into(),
            amount: Fen(1000),
        },
        RefundReturn {
            out_return_no: "B2".into(),
            receiver_type: ReceiverType::LoginName,
            account: "shop@example.com".into(),
            amount: Fen(5),
        },
    ];
    assert_eq!(
        biz_text(Op::Refund(&refund(returns))),
        concat!(
            r#"{"out_trade_no":"T1","refund_amount":"30.00","out_request_no":"R1","refund_royalty_parameters":["#,
            r#"{"royalty_type":"transfer","trans_out_type":"userId","trans_out":"2088101126708402","amount":"10.00"},"#,
            r#"{"royalty_type":"transfer","trans_out_type":"loginName","trans_out":"shop@example.com","amount":"0.05"}]}"#
        )
    );
}

#[test]
fn bind_answers_map_to_bound_declined_or_unknown() {
    let receiver = ReceiverIntent {
        receiver_type: ReceiverType::User,
        account: "2088".into(),
        name: None,
        relation: None,
        request_no: "BIND-1".into(),
    };
    let op = Op::BindReceiver {
        out_trade_no: "T1",
        receiver: &receiver,
    };
    let ok = |result: Value| {
        adapter().parse(
            op,
            &answer(
                BIND,
                json!({"code": "10000", "msg": "Success", "result_code": result}),
            ),
        )
    };
    assert_eq!(ok(json!("SUCCESS")), Outcome::Bound);
    assert!(matches!(ok(json!("FAIL")), Outcome::Declined { .. }));
    assert!(matches!(ok(json!("PENDING")), Outcome::Unknown { .. }));
    assert!(matches!(ok(Value::Null), Outcome::Unknown { .. }));
    let a = adapter();
    assert!(matches!(
        a.parse(op, &failure(BIND, "ACQ.INVALID_PARAMETER")),
        Outcome::Declined { code, .. } if code == "ACQ.INVALID_PARAMETER"
    ));
    assert!(matches!(
        a.parse(op, &failure(BIND, "ACQ.SYSTEM_ERROR")),
        Outcome::Unknown { .. }
    ));
}

#[test]
fn a_settle_answer_is_processing_under_its_settle_no() {
    let s = split(vec![share(ReceiverType::User, "2088", 100)], false);
    let a = adapter();
    let accepted = answer(
        SETTLE,
        json!({"code": "10000", "msg": "Success", "trade_no": "2024", "settle_no": "SN1"}),
    );
    assert_eq!(
        a.parse(Op::Split(&s), &accepted),
        Outcome::Split(SplitReport {
            state: ChannelSplitState::Processing,
            channel_split_no: Some("SN1".into()),
            shares: Vec::new(),
        })
    );
    let bare = answer(SETTLE, json!({"code": "10000", "msg": "Success"}));
    assert!(matches!(
        a.parse(Op::Split(&s), &bare),
        Outcome::Unknown { .. }
    ));
    for (sub_code, declined) in [
        ("ACQ.ALLOC_AMOUNT_VALIDATE_ERROR", true),
        ("ACQ.TRADE_SETTLE_ERROR", true),
        ("ACQ.TRADE_NOT_EXIST", true),
        ("ACQ.INVALID_PARAMETER", true),
        ("ACQ.DISCORDANT_REPEAT_REQUEST", false),
        ("ACQ.SYSTEM_ERROR", false),
        ("ACQ.SOMETHING_NEW", false),
    ] {
        let outcome = a.parse(Op::Split(&s), &failure(SETTLE, sub_code));
        assert_eq!(
            matches!(outcome, Outcome::Declined { .. }),
            declined,
            "{sub_code}: {outcome:?}"
        );
        if !declined {
            assert!(matches!(outcome, Outcome::Unknown { .. }), "{sub_code}");
        }
    }
    // A tampered answer is unknown, never a result.
    let mut tampered = accepted.clone();
    tampered.body = Bytes::from(
        String::from_utf8(accepted.body.to_vec())
            .unwrap()
            .replace("SN1", "SN2"),
    );
    assert!(matches!(
        a.parse(Op::Split(&s), &tampered),
        Outcome::Unknown { .. }
    ));
}

fn detail(account: &str, amount: &str, state: &str) -> Value {
    json!({"operation_type": "transfer", "trans_in": account, "trans_in_type": "userId",
           "amount": amount, "state": state, "detail_id": format!("D-{account}")})
}

fn queried(details: Vec<Value>) -> Outcome {
    let mut s = split(vec![share(ReceiverType::User, "2088", 100)], false);
    s.channel_split_no = Some("SN1".into());
    adapter().parse(
        Op::SplitQuery(&s),
        &answer(
            QUERY,
            json!({"code": "10000", "msg": "Success", "out_request_no": "S1",
                   "royalty_detail_list": details}),
        ),
    )
}

#[test]
fn settle_query_details_become_shares() {
    let mut failed = detail("B", "0.50", "FAIL");
    failed["error_code"] = json!("RELATION_NOT_EXIST");
    let Outcome::Split(report) = queried(vec![detail("A", "1.00", "SUCCESS"), failed.clone()])
    else {
        panic!()
    };
    assert_eq!(report.state, ChannelSplitState::Finished);
    assert_eq!(report.channel_split_no.as_deref(), Some("SN1"));
    assert_eq!(
        report.shares,
        vec![
            ShareReport {
                account: "A".into(),
                amount: Fen(100),
                state: ShareState::Succeeded,
                fail_reason: None,
                detail_id: Some("D-A".into()),
            },
            ShareReport {
                account: "B".into(),
                amount: Fen(50),
                state: ShareState::Failed,
                fail_reason: Some("RELATION_NOT_EXIST".into()),
                detail_id: Some("D-B".into()),
            },
        ]
    );
    let Outcome::Split(report) = queried(vec![detail("A", "1.00", "PROCESSING"), failed]) else {
        panic!()
    };
    assert_eq!(report.state, ChannelSplitState::Processing);
    assert_eq!(report.shares[0].state, ShareState::Pending);
    let mut s = split(vec![share(ReceiverType::User, "2088", 100)], false);
    s.out_split_no = "S2".into();
    let other = answer(
        QUERY,
        json!({"code": "10000", "msg": "Success", "out_request_no": "S1",
               "royalty_detail_list": [detail("A", "1.00", "SUCCESS")]}),
    );
    assert!(matches!(
        adapter().parse(Op::SplitQuery(&s), &other),
        Outcome::Unknown { .. }
    ));
    let Outcome::Split(report) = queried(Vec::new()) else {
        panic!()
    };
    assert_eq!(report.state, ChannelSplitState::Processing);
}

#[test]
fn an_unfamiliar_settle_query_answer_is_unknown() {
    let mut refund_op = detail("A", "1.00", "SUCCESS");
    refund_op["operation_type"] = json!("transfer_refund");
    let mut no_state = detail("A", "1.00", "SUCCESS");
    no_state.as_object_mut().unwrap().remove("state");
    for details in [
        vec![
            detail("A", "1.00", "SUCCESS"),
            detail("B", "1.00", "CLOSED"),
        ],
        vec![detail("A", "1.001", "SUCCESS")],
        vec![detail("A", "-1.00", "SUCCESS")],
        vec![refund_op],
        vec![no_state],
    ] {
        assert!(
            matches!(queried(details.clone()), Outcome::Unknown { .. }),
            "{details:?}"
        );
    }
}

#[test]
fn settle_query_errors_map_to_not_found_or_unknown() {
    let s = split(vec![share(ReceiverType::User, "2088", 100)], false);
    let a = adapter();
    assert_eq!(
        a.parse(Op::SplitQuery(&s), &failure(QUERY, "ACQ.TRADE_NOT_EXIST")),
        Outcome::Split(SplitReport {
            state: ChannelSplitState::NotFound,
            channel_split_no: None,
            shares: Vec::new(),
        })
    );
    for sub_code in ["ACQ.SYSTEM_ERROR", "ACQ.SOMETHING_NEW"] {
        assert!(matches!(
            a.parse(Op::SplitQuery(&s), &failure(QUERY, sub_code)),
            Outcome::Unknown { .. }
        ));
    }
    let garbage = RawResponse {
        status: 200,
        headers: http::HeaderMap::new(),
        body: Bytes::from_static(b"<html>busy</html>"),
    };
    assert!(matches!(
        a.parse(Op::SplitQuery(&s), &garbage),
        Outcome::Unknown { .. }
    ));
}

#[test]
fn a_refund_refused_for_the_sellers_balance_is_declined() {
    let a = adapter();
    let r = refund(Vec::new());
    assert!(matches!(
        a.parse(
            Op::Refund(&r),
            &failure("alipay.trade.refund", "ACQ.SELLER_BALANCE_NOT_ENOUGH")
        ),
        Outcome::Declined { code, .. } if code == "ACQ.SELLER_BALANCE_NOT_ENOUGH"
    ));
}

const BILL: &str = super::bill::METHOD;

fn bill_query() -> Op<'static> {
    Op::BillQuery {
        date: chrono::NaiveDate::from_ymd_opt(2024, 1, 5).unwrap(),
    }
}

#[test]
fn a_bill_query_asks_for_the_days_trade_statement_signed() {
    let p = params(bill_query());
    assert_eq!(p.get("method"), Some(BILL));
    assert_eq!(
        p.get("biz_content"),
        Some(r#"{"bill_type":"trade","bill_date":"2024-01-05"}"#)
    );
    let content = signing::sign_content(p.iter(), &[]);
    let merchant = key("alipay_app_private.pem").public_key();
    assert!(merchant.verify_sha256_b64(content.as_bytes(), p.get("sign").unwrap()));
    assert_eq!(p.get("notify_url"), None);
}

#[test]
fn bill_answers_map_to_a_location_not_ready_or_unknown() {
    use crate::bills::{BillLocation, StatementFormat};
    let a = adapter();
    let url = "http://127.0.0.1:9/bills/download?token=ab";
    let ok = answer(
        BILL,
        json!({"code": "10000", "msg": "Success", "bill_download_url": url, "bill_file_code": "1"}),
    );
    assert_eq!(
        a.parse(bill_query(), &ok),
        Outcome::Bill(BillLocation {
            url: url.into(),
            sha1: None,
            format: StatementFormat::Zip,
        })
    );
    assert_eq!(
        a.parse(bill_query(), &failure(BILL, "isp.bill_not_exist")),
        Outcome::BillNotReady
    );
    let unknown = |r: &RawResponse| matches!(a.parse(bill_query(), r), Outcome::Unknown { .. });
    assert!(unknown(&failure(BILL, "isp.something_new")));
    assert!(unknown(&answer(
        BILL,
        json!({"code": "10000", "msg": "Success"})
    )));
    assert!(unknown(&answer(
        BILL,
        json!({"code": "10000", "msg": "Success", "bill_download_url": "ftp://x/y"})
    )));
    assert!(unknown(&answer(
        BILL,
        json!({"code": "10000", "msg": "Success", "bill_download_url": 7})
    )));
    // Signed by someone else: never a location.
    let mut forged = ok.clone();
    forged.body = Bytes::from(signing::sign_response(
        &signing::response_key(BILL),
        &json!({"code": "10000", "msg": "Success", "bill_download_url": url}).to_string(),
        &key("alipay_app_private.pem"),
    ));
    assert!(unknown(&forged));
}

#[test]
fn a_statement_is_downloaded_with_a_plain_get() {
    use crate::bills::{BillLocation, StatementFormat};
    let location = BillLocation {
        url: "http://127.0.0.1:9/bills/download?token=ab".into(),
        sha1: None,
        format: StatementFormat::Zip,
    };
    let req = adapter().download_request(&location, Utc::now()).unwrap();
    assert_eq!(req.method(), http::Method::GET);
    assert_eq!(req.uri().to_string(), location.url);
    assert!(req.body().is_empty());
    assert!(req.headers().get(http::header::AUTHORIZATION).is_none());
    let gzip = BillLocation {
        format: StatementFormat::Gzip,
        ..location
    };
    assert!(adapter().download_request(&gzip, Utc::now()).is_err());
}
