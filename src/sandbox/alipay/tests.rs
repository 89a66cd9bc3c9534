use serde_json::{json, Map, Value};

use super::handlers::GwError;
use super::Gateway;
use crate::channels::alipay::signing::Params;
use crate::sandbox::kit::test_channel;
use crate::sandbox::Simulator;

fn gateway() -> Gateway {
    Gateway::new(&test_channel("alipay").0)
}

/// Runs `method` with `biz` as business content, past authentication.
fn call(g: &Gateway, method: &str, biz: Value) -> Result<Map<String, Value>, GwError> {
    let Value::Object(biz) = biz else {
        panic!("biz content is an object")
    };
    g.business(method, &Params::default(), &biz)
}

fn sub_code(r: Result<Map<String, Value>, GwError>) -> String {
    r.expect_err("an error").2
}

#[test]
fn a_qr_code_is_a_trade_only_once_scanned() {
    let g = gateway();
    let order = json!({ "out_trade_no": "T1", "total_amount": "19.99", "subject": "tea" });
    let created = call(&g, "alipay.trade.precreate", order).unwrap();
    assert!(created["qr_code"]
        .as_str()
        .unwrap()
        .starts_with("https://qr.alipay.com/"));
    let query = json!({ "out_trade_no": "T1" });
    assert_eq!(
        sub_code(call(&g, "alipay.trade.query", query.clone())),
        "ACQ.TRADE_NOT_EXIST"
    );
    g.scan("T1").unwrap();
    let found = call(&g, "alipay.trade.query", query).unwrap();
    assert_eq!(found["trade_status"], "WAIT_BUYER_PAY");
    assert_eq!(found["total_amount"], "19.99");
}

#[test]
fn barcode_auth_codes_decide_the_outcome() {
    let g = gateway();
    let pay = |no: &str, code: &str| {
        let biz = json!({ "out_trade_no": no, "total_amount": "1.00", "subject": "s", "auth_code": code });
        call(&g, "alipay.trade.pay", biz)
    };
    assert_eq!(pay("B1", "281234567890123456").unwrap()["code"], "10003");
    assert_eq!(
        sub_code(pay("B2", "291234567890123456")),
        "ACQ.BUYER_BALANCE_NOT_ENOUGH"
    );
    assert_eq!(
        sub_code(pay("B3", "121234567890123456")),
        "ACQ.PAYMENT_AUTH_CODE_INVALID"
    );
    assert!(g.order_view("B2").is_none() && g.order_view("B3").is_none());
    let paid = pay("B4", "251234567890123456").unwrap();
    assert_eq!(
        (&paid["code"], &paid["receipt_amount"]),
        (&json!("10000"), &json!("1.00"))
    );
}

#[test]
fn a_repeated_refund_moves_no_money_twice() {
    let g = gateway();
    let biz = json!({ "out_trade_no": "R1", "total_amount": "10.00", "subject": "s", "auth_code": "251234567890123456" });
    call(&g, "alipay.trade.pay", biz).unwrap();
    let refund = |amount: &str| {
        let biz =
            json!({ "out_trade_no": "R1", "refund_amount": amount, "out_request_no": "R1-1" });
        call(&g, "alipay.trade.refund", biz)
    };
    assert_eq!(refund("4.00").unwrap()["fund_change"], "Y");
    assert_eq!(refund("4.00").unwrap()["fund_change"], "N");
    assert_eq!(sub_code(refund("5.00")), "ACQ.DISCORDANT_REPEAT_REQUEST");
    assert_eq!(g.order_view("R1").unwrap().refunded, 400);
}

#[test]
fn unknown_methods_and_missing_order_numbers_are_refused() {
    let g = gateway();
    assert_eq!(
        sub_code(call(
            &g,
            "alipay.trade.nonsense",
            json!({ "out_trade_no": "X" })
        )),
        "isv.invalid-method"
    );
    assert_eq!(
        sub_code(call(&g, "alipay.trade.query", json!({}))),
        "ACQ.INVALID_PARAMETER"
    );
}
