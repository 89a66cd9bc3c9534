//! The OpenAPI document describes what the API really answers: every answer the harness receives
//! is checked against it (see `common::openapi`), every client action is produced here through a
//! real create, and the checker itself is shown to reject what the document does not say.

mod common;

use std::collections::BTreeSet;

use common::openapi::{checked, Spec, DOCUMENT};
use common::{order_no, Harness, Reply};
use payroute::api::types::{PaymentView, RefundView};
use payroute::domain::{
    ClientAction, Currency, JsapiParams, PayMethod, PaymentStatus, ReceiverType, RefundStatus,
    Scene, WechatAppParams,
};
use payroute::ledger::events::DeliveryState;
use payroute::ledger::{
    Attempt, AttemptOutcome, Failure, LateKind, LatePayment, LateRefund, Order, Refund, Split,
    SplitReturn, SplitStatus,
};
use payroute::order::events::{Event, EventType, Subject};
use payroute::order::views::{SplitReturnView, SplitView};
use serde_json::{json, Value};

/// The sample configuration plus a rule that sends `metadata.via = pingpp` to the aggregator first
/// (the direct channels follow: a rule needs a channel outside the aggregator's maintenance).
fn harness_config() -> (tempfile::TempDir, std::path::PathBuf) {
    let repo = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let sample = std::fs::read_to_string(repo.join("routes.yaml")).unwrap();
    let text = sample.replacen(
        "\nrules:\n",
        "\nrules:\n  - name: via-pingpp\n    match: { metadata: { via: pingpp } }\n    channels: [pingpp, alipay, wechatpay]\n",
        1,
    );
    assert_ne!(text, sample, "the sample has a rules section");
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo.join("sandbox"), dir.path().join("sandbox")).unwrap();
    let config = dir.path().join("routes.yaml");
    std::fs::write(&config, text).unwrap();
    (dir, config)
}

async fn start_with_pingpp_rule() -> (Harness, tempfile::TempDir) {
    let (dir, config) = harness_config();
    let mut args = common::test_args(dir.path().join("data"));
    args.config = config;
    let run = payroute::app::start(&args).await.expect("payroute starts");
    (Harness::from_running(run), dir)
}

fn payment(no: &str, method: &str, scene: &str, via: &str) -> Value {
    let mut body = json!({
        "out_trade_no": no, "amount": 5000, "currency": "CNY", "method": method,
        "scene": scene, "subject": "openapi", "metadata": {"tier": "gold"}
    });
    if via == "pingpp" {
        body["metadata"] = json!({"via": "pingpp"});
    }
    match scene {
        "jsapi" => body["payer_id"] = json!("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"),
        "h5" => body["client_ip"] = json!("203.0.113.7"),
        _ => {}
    }
    body
}

fn headers_of(r: &Reply) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_str(&r.content_type).unwrap(),
    );
    h
}

#[tokio::test]
async fn every_client_action_is_produced_and_documented() {
    let (h, _dir) = start_with_pingpp_rule().await;
    let cases = [
        ("alipay", "qr", "qr_code"),
        ("alipay", "app", "app_pay"),
        ("alipay", "h5", "redirect"),
        ("alipay", "page", "redirect"),
        ("wechat", "qr", "qr_code"),
        ("wechat", "jsapi", "jsapi_pay"),
        ("wechat", "app", "wechat_app_pay"),
        ("wechat", "h5", "redirect"),
    ];
    let mut seen = BTreeSet::new();
    for via in ["direct", "pingpp"] {
        for (method, scene, action) in cases {
            let no = order_no("OA");
            // The harness checks each answer (201 and 200) against the served document.
            let r = h
                .api(
                    "POST",
                    "/v1/payments",
                    Some(payment(&no, method, scene, via)),
                )
                .await;
            assert_eq!(r.status, 201, "{method} {scene} via {via}: {}", r.text);
            let expected_channel = match (via, method) {
                ("pingpp", _) => "pingpp",
                (_, "alipay") => "alipay",
                _ => "wechatpay",
            };
            assert_eq!(r.json["channel"], expected_channel, "{}", r.text);
            assert_eq!(
                r.json["action"]["type"], action,
                "{method} {scene} via {via}: {}",
                r.text
            );
            seen.insert(action.to_string());
            let q = h.api("GET", &format!("/v1/payments/{no}"), None).await;
            assert_eq!(q.json["action"], r.json["action"], "{}", q.text);
        }
    }
    let doc: Value = serde_json::from_str(DOCUMENT).unwrap();
    let documented: BTreeSet<String> = doc["components"]["schemas"]["ClientAction"]
        ["discriminator"]["mapping"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(seen, documented, "every documented action type is produced");
}

#[tokio::test]
async fn the_served_document_is_the_committed_one() {
    let h = Harness::start().await;
    let before = checked();
    let r = h.api("GET", "/openapi.json", None).await;
    assert!(checked() > before, "the harness checks API answers");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "application/json");
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/api/openapi.json"))
            .unwrap();
    assert_eq!(
        r.text, committed,
        "GET /openapi.json serves the committed file"
    );
    assert_eq!(committed, DOCUMENT);
    // Answers on the other listeners are not the unified API's and are not checked.
    let before = checked();
    assert_eq!(h.admin("GET", "/healthz", None).await.status, 200);
    assert_eq!(checked(), before);
}

/// The committed document as it was before `jsapi_pay` and `wechat_app_pay` were documented.
fn document_without_wechat_actions() -> Value {
    let mut doc: Value = serde_json::from_str(DOCUMENT).unwrap();
    let action = &mut doc["components"]["schemas"]["ClientAction"];
    action["oneOf"].as_array_mut().unwrap().retain(|s| {
        !s["$ref"]
            .as_str()
            .is_some_and(|r| r.ends_with("/JsapiPayAction") || r.ends_with("/WechatAppPayAction"))
    });
    let mapping = action["discriminator"]["mapping"].as_object_mut().unwrap();
    mapping.remove("jsapi_pay");
    mapping.remove("wechat_app_pay");
    doc
}

#[tokio::test]
async fn the_checker_rejects_what_the_document_does_not_say() {
    let h = Harness::start().await;
    let spec = Spec::new(serde_json::from_str(DOCUMENT).unwrap());
    let no = order_no("NG");
    let created = h
        .api(
            "POST",
            "/v1/payments",
            Some(payment(&no, "wechat", "jsapi", "direct")),
        )
        .await;
    assert_eq!(
        created.json["action"]["type"], "jsapi_pay",
        "{}",
        created.text
    );
    let json_headers = headers_of(&created);
    let check = |spec: &Spec,
                 method: &str,
                 path: &str,
                 status: u16,
                 headers: &http::HeaderMap,
                 body: &Value| {
        spec.check(method, path, status, headers, body.to_string().as_bytes())
    };
    let created_ok = |body: &Value| check(&spec, "POST", "/v1/payments", 201, &json_headers, body);
    assert_eq!(created_ok(&created.json), Ok(()));

    // The document before the fix refuses a real WeChat JSAPI answer.
    let old = Spec::new(document_without_wechat_actions());
    let e = check(
        &old,
        "POST",
        "/v1/payments",
        201,
        &json_headers,
        &created.json,
    )
    .unwrap_err();
    assert!(e.contains("at /action"), "{e}");

    // A required member missing, an undeclared member, undeclared enum values.
    let mut body = created.json.clone();
    body.as_object_mut().unwrap().remove("status");
    assert!(created_ok(&body).unwrap_err().contains("status"));
    let mut body = created.json.clone();
    body["undocumented"] = json!(true);
    assert!(created_ok(&body).unwrap_err().contains("undocumented"));
    let mut body = created.json.clone();
    body["status"] = json!("authorized");
    assert!(created_ok(&body).is_err());
    let mut body = created.json.clone();
    body["route"]["attempts"][0]["outcome"] = json!("exploded");
    assert!(created_ok(&body)
        .unwrap_err()
        .contains("/route/attempts/0/outcome"));
    let mut body = created.json.clone();
    body["action"]["params"]
        .as_object_mut()
        .unwrap()
        .remove("paySign");
    assert!(created_ok(&body).is_err());
    let mut body = created.json.clone();
    body["anomalies"] = json!(["something_new"]);
    assert!(created_ok(&body).unwrap_err().contains("/anomalies/0"));
    let mut body = created.json.clone();
    body["created_at"] = json!("yesterday");
    assert!(created_ok(&body).is_err(), "date-time formats are checked");

    // Undocumented status, method and path; a body of the wrong media type or not JSON.
    let e = check(
        &spec,
        "POST",
        "/v1/payments",
        418,
        &json_headers,
        &created.json,
    )
    .unwrap_err();
    assert!(e.contains("does not document status 418"), "{e}");
    let e = check(
        &spec,
        "DELETE",
        "/v1/payments",
        200,
        &json_headers,
        &created.json,
    )
    .unwrap_err();
    assert!(e.contains("MethodNotAllowed"), "{e}");
    let e = check(
        &spec,
        "GET",
        "/v2/payments",
        200,
        &json_headers,
        &created.json,
    )
    .unwrap_err();
    assert!(e.contains("NotFound"), "{e}");
    let mut problem_headers = http::HeaderMap::new();
    problem_headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/problem+json"),
    );
    let e = check(
        &spec,
        "POST",
        "/v1/payments",
        201,
        &problem_headers,
        &created.json,
    )
    .unwrap_err();
    assert!(e.contains("application/problem+json"), "{e}");
    let mut text_headers = http::HeaderMap::new();
    text_headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    assert!(spec
        .check(
            "GET",
            "/v1/payments/%FF%FE",
            400,
            &text_headers,
            b"Invalid URL"
        )
        .is_err());
    assert!(spec
        .check(
            "GET",
            "/v1/payments/X",
            400,
            &problem_headers,
            b"Invalid URL"
        )
        .unwrap_err()
        .contains("not JSON"));

    // Problems: the code must be one the response lists, and the members must agree.
    let bad = h
        .api(
            "POST",
            "/v1/payments",
            Some(json!({"out_trade_no": "NGX0001"})),
        )
        .await;
    assert_eq!(
        (bad.status, bad.content_type.as_str()),
        (400, "application/problem+json")
    );
    let problem_ok =
        |body: &Value| check(&spec, "POST", "/v1/payments", 400, &problem_headers, body);
    assert_eq!(problem_ok(&bad.json), Ok(()));
    let mut body = bad.json.clone();
    body["code"] = json!("not_refundable");
    body["type"] = json!("urn:payroute:problem:not_refundable");
    assert!(
        problem_ok(&body).unwrap_err().contains("/code"),
        "not a 400 code of this operation"
    );
    let mut body = bad.json.clone();
    body["status"] = json!(409);
    assert!(problem_ok(&body).unwrap_err().contains("problem status"));
    let mut body = bad.json.clone();
    body["type"] = json!("urn:payroute:problem:other");
    assert!(problem_ok(&body)
        .unwrap_err()
        .contains("does not name code"));
    let mut body = bad.json.clone();
    body.as_object_mut().unwrap().remove("field");
    assert!(problem_ok(&body).is_err(), "missing_field names the field");

    // A 429 must carry Retry-After.
    let limited = json!({"type": "urn:payroute:problem:rate_limited", "title": "Too Many Requests",
                         "status": 429, "detail": "busy", "code": "rate_limited", "retry_after": 2});
    let e = check(
        &spec,
        "POST",
        "/v1/payments",
        429,
        &problem_headers,
        &limited,
    )
    .unwrap_err();
    assert!(e.contains("Retry-After"), "{e}");
    let mut with_retry = problem_headers.clone();
    with_retry.insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("2"),
    );
    assert_eq!(
        check(&spec, "POST", "/v1/payments", 429, &with_retry, &limited),
        Ok(())
    );
    // A 503 of a create may carry it (held back for a while), a 400 never does.
    let held_back = json!({"type": "urn:payroute:problem:channel_unavailable", "title": "Service Unavailable",
                           "status": 503, "detail": "circuit open", "code": "channel_unavailable", "retry_after": 2});
    assert_eq!(
        check(&spec, "POST", "/v1/payments", 503, &with_retry, &held_back),
        Ok(())
    );
    let mut unavailable = held_back.clone();
    unavailable.as_object_mut().unwrap().remove("retry_after");
    assert_eq!(
        check(
            &spec,
            "POST",
            "/v1/payments",
            503,
            &problem_headers,
            &unavailable
        ),
        Ok(()),
        "optional: nothing was created, and nothing says when to retry"
    );
    let e = check(&spec, "POST", "/v1/payments", 400, &with_retry, &bad.json).unwrap_err();
    assert!(
        e.contains("retry-after") && e.contains("does not declare"),
        "{e}"
    );
}

/// Every payment status; a new variant does not compile here until it is listed (and documented).
fn payment_statuses() -> Vec<PaymentStatus> {
    use PaymentStatus::*;
    let all = vec![
        Pending,
        Succeeded,
        Closed,
        Failed,
        Refunded,
        PartiallyRefunded,
    ];
    for s in &all {
        match s {
            Pending | Succeeded | Closed | Failed | Refunded | PartiallyRefunded => {}
        }
    }
    all
}

fn refund_statuses() -> Vec<RefundStatus> {
    use RefundStatus::*;
    let all = vec![Pending, Succeeded, Failed];
    for s in &all {
        match s {
            Pending | Succeeded | Failed => {}
        }
    }
    all
}

fn attempt_outcomes() -> Vec<AttemptOutcome> {
    use AttemptOutcome::*;
    let all = vec![InFlight, Accepted, Declined, Unknown, Abandoned];
    for o in &all {
        match o {
            InFlight | Accepted | Declined | Unknown | Abandoned => {}
        }
    }
    all
}

fn late_kinds() -> Vec<LateKind> {
    use LateKind::*;
    let all = vec![AfterClose, Duplicate];
    for k in &all {
        match k {
            AfterClose | Duplicate => {}
        }
    }
    all
}

fn late_refunds() -> Vec<LateRefund> {
    use LateRefund::*;
    let all = vec![Pending, Succeeded, Failed, Off];
    for r in &all {
        match r {
            Pending | Succeeded | Failed | Off => {}
        }
    }
    all
}

fn event_types() -> Vec<EventType> {
    use EventType::*;
    let all = vec![
        PaymentSucceeded,
        PaymentFailed,
        PaymentClosed,
        PaymentAnomaly,
        RefundSucceeded,
        RefundFailed,
        SplitSucceeded,
        SplitFailed,
        SplitReturnSucceeded,
        SplitReturnFailed,
        ReconciliationCompleted,
    ];
    for t in &all {
        match t {
            PaymentSucceeded
            | PaymentFailed
            | PaymentClosed
            | PaymentAnomaly
            | RefundSucceeded
            | RefundFailed
            | SplitSucceeded
            | SplitFailed
            | SplitReturnSucceeded
            | SplitReturnFailed
            | ReconciliationCompleted => {}
        }
    }
    all
}

fn delivery_states() -> Vec<DeliveryState> {
    use DeliveryState::*;
    let all = vec![Pending, Failed];
    for d in &all {
        match d {
            Pending | Failed => {}
        }
    }
    all
}

/// The stored body of an event about `subject`, as delivered and listed.
fn event_body(event_type: EventType, subject: Subject<'_>) -> Value {
    let e = Event::new(
        "0a1b2c3d",
        42,
        "9f",
        event_type,
        subject,
        chrono::Utc::now(),
    )
    .unwrap();
    serde_json::from_str(&e.body).unwrap()
}

fn client_actions() -> Vec<ClientAction> {
    let s = |v: &str| v.to_string();
    let all = vec![
        ClientAction::QrCode {
            code_url: s("https://qr.alipay.com/x"),
        },
        ClientAction::AppPay {
            order_string: s("app_id=1&sign=x"),
        },
        ClientAction::Redirect {
            url: s("https://openapi.alipay.com/gateway.do?x"),
        },
        ClientAction::JsapiPay {
            params: Box::new(JsapiParams {
                app_id: s("wx1"),
                time_stamp: s("1"),
                nonce_str: s("n"),
                package: s("prepay_id=p"),
                sign_type: s("RSA"),
                pay_sign: s("sig"),
            }),
        },
        ClientAction::WechatAppPay {
            params: Box::new(WechatAppParams {
                appid: s("wx1"),
                partnerid: s("1900000001"),
                prepayid: s("p"),
                package: s("Sign=WXPay"),
                noncestr: s("n"),
                timestamp: s("1"),
                sign: s("sig"),
            }),
        },
    ];
    for a in &all {
        match a {
            ClientAction::QrCode { .. }
            | ClientAction::AppPay { .. }
            | ClientAction::Redirect { .. }
            | ClientAction::JsapiPay { .. }
            | ClientAction::WechatAppPay { .. } => {}
        }
    }
    all
}

fn names<T: serde::Serialize>(values: &[T]) -> BTreeSet<String> {
    values
        .iter()
        .map(|v| {
            serde_json::to_value(v)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn documented_enum(doc: &Value, pointer: &str) -> BTreeSet<String> {
    doc.pointer(pointer)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("no enum at {pointer}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// The serialized Rust types, with every optional member absent and present and every enum
/// value, match the document's schemas, and the document's enums are exactly the Rust ones.
#[test]
fn the_response_types_serialize_as_documented() {
    let doc: Value = serde_json::from_str(DOCUMENT).unwrap();
    let spec = Spec::new(doc.clone());
    let schemas = "/components/schemas";
    for (pointer, rust) in [
        (
            "/Payment/properties/status/enum",
            names(&payment_statuses()),
        ),
        (
            "/Problem/properties/payment_status/enum",
            names(&payment_statuses()),
        ),
        ("/Refund/properties/status/enum", names(&refund_statuses())),
        (
            "/Attempt/properties/outcome/enum",
            names(&attempt_outcomes()),
        ),
        ("/Payment/properties/scene/enum", names(&Scene::ALL)),
        ("/CreatePayment/properties/scene/enum", names(&Scene::ALL)),
        ("/Payment/properties/method/enum", names(&PayMethod::ALL)),
        (
            "/CreatePayment/properties/method/enum",
            names(&PayMethod::ALL),
        ),
        ("/Payment/properties/currency/enum", names(&[Currency::Cny])),
        ("/LatePayment/properties/kind/enum", names(&late_kinds())),
        (
            "/LatePayment/properties/refund_status/enum",
            names(&late_refunds()),
        ),
        ("/Event/properties/type/enum", names(&event_types())),
        ("/Delivery/properties/state/enum", names(&delivery_states())),
    ] {
        assert_eq!(
            documented_enum(&doc, &format!("{schemas}{pointer}")),
            rust,
            "{pointer}"
        );
    }
    let action_types: BTreeSet<String> = client_actions()
        .iter()
        .map(|a| {
            serde_json::to_value(a).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mapping = doc
        .pointer(&format!("{schemas}/ClientAction/discriminator/mapping"))
        .and_then(Value::as_object)
        .unwrap();
    assert_eq!(action_types, mapping.keys().cloned().collect());

    let minimal: Order = serde_json::from_value(json!({
        "request": {"out_trade_no": "TYPES0001", "amount": 100, "currency": "CNY",
                    "method": "alipay", "scene": "qr", "subject": "types"},
        "fingerprint": "f", "status": "pending", "attempts": [],
        "refund_reserved": 0, "refunded": 0,
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
    }))
    .unwrap();
    let view = |o: &Order| serde_json::to_value(PaymentView::of(o)).unwrap();
    assert_eq!(spec.check_schema("Payment", &view(&minimal)), Ok(()));
    let anomalies = ["paid_after_close", "duplicate_payment:pingpp"];
    let late = |kind: LateKind, refund_status: LateRefund| LatePayment {
        channel: "pingpp".into(),
        kind,
        channel_trade_no: Some("ch_1".into()),
        amount: payroute::money::Fen(100),
        out_refund_no: LatePayment::refund_no("TYPES0001", "pingpp"),
        refund_status,
        channel_refund_no: Some("re_1".into()),
        refund_failure: Some(Failure {
            code: "refund_refused".into(),
            message: "no".into(),
        }),
        detected_at: minimal.created_at,
        updated_at: minimal.created_at,
    };
    let statuses = payment_statuses();
    let outcomes = attempt_outcomes();
    for (i, action) in client_actions().into_iter().enumerate() {
        for (j, scene) in Scene::ALL.into_iter().enumerate() {
            let mut o = minimal.clone();
            o.request.scene = scene;
            o.request.method = PayMethod::ALL[j % 2];
            o.request.metadata.insert("tier".into(), "gold".into());
            o.status = statuses[(i + j) % statuses.len()];
            o.channel = Some("alipay".into());
            o.channel_trade_no = Some("2026010122001".into());
            o.action = Some(action.clone());
            o.fee = Some(payroute::money::Fen(1));
            o.rule = Some("alipay-all".into());
            o.attempts = outcomes
                .iter()
                .map(|&outcome| Attempt {
                    channel: "alipay".into(),
                    started_at: o.created_at,
                    finished_at: Some(o.created_at),
                    outcome,
                    reason: Some("why".into()),
                    closing: None,
                })
                .collect();
            o.refunded = payroute::money::Fen(50);
            o.failure = Some(Failure {
                code: "ACQ.TRADE_HAS_CLOSE".into(),
                message: "closed".into(),
            });
            o.expires_at = Some(o.created_at);
            o.anomalies = anomalies.iter().map(|&a| a.into()).collect();
            o.close_confirmed = Some(i % 2 == 0);
            o.late_payments = late_kinds()
                .into_iter()
                .flat_map(|k| late_refunds().into_iter().map(move |r| late(k, r)))
                .collect();
            assert_eq!(spec.check_schema("Payment", &view(&o)), Ok(()), "{o:?}");
            // Its events carry the same view.
            let event_type = event_types()[(i + j) % 4];
            let body = event_body(event_type, Subject::Payment(&o));
            assert_eq!(body["data"], view(&o));
            assert_eq!(spec.check_schema("Event", &body), Ok(()), "{body}");
        }
    }

    let minimal: Refund = serde_json::from_value(json!({
        "out_refund_no": "RTYPES0001", "out_trade_no": "TYPES0001", "amount": 10,
        "fingerprint": "f", "status": "pending", "channel": "alipay",
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
    }))
    .unwrap();
    let view = |r: &Refund| serde_json::to_value(RefundView::of(r)).unwrap();
    assert_eq!(spec.check_schema("Refund", &view(&minimal)), Ok(()));
    for status in refund_statuses() {
        let mut r = minimal.clone();
        r.status = status;
        r.reason = Some("returned".into());
        r.channel_refund_no = Some("2026010122001".into());
        r.failure = Some(Failure {
            code: "REFUND_CLOSED".into(),
            message: "closed".into(),
        });
        assert_eq!(spec.check_schema("Refund", &view(&r)), Ok(()), "{r:?}");
        for event_type in [EventType::RefundSucceeded, EventType::RefundFailed] {
            let body = event_body(event_type, Subject::Refund(&r));
            assert_eq!(body["data"], view(&r));
            assert_eq!(spec.check_schema("Event", &body), Ok(()), "{body}");
        }
    }
    // The document ties `data` to `type`: a payment event carries a Payment, a refund event a
    // Refund.
    let refund_body = event_body(EventType::RefundSucceeded, Subject::Refund(&minimal));
    let mut mismatched = refund_body.clone();
    mismatched["type"] = json!("payment.succeeded");
    assert!(spec.check_schema("Event", &mismatched).is_err());
    let mut undeclared = refund_body.clone();
    undeclared["delivery"] = json!({});
    assert!(spec.check_schema("Event", &undeclared).is_err());
    // Listed with `delivery=`: the event and its delivery state.
    for (state, last_error) in delivery_states()
        .into_iter()
        .zip([Value::Null, json!("HTTP 503")])
    {
        let mut listed = refund_body.clone();
        listed["delivery"] = json!({"state": state, "attempts": 3,
                                    "next_at": "2026-01-01T00:00:00Z", "last_error": last_error});
        assert_eq!(spec.check_schema("EventWithDelivery", &listed), Ok(()));
        let page = json!({"data": [refund_body, listed], "next_cursor": "42", "has_more": false});
        assert_eq!(spec.check_schema("EventList", &page), Ok(()));
    }
}

/// Every operation of the document reaches its handler (not the router's 404 or 405), with a
/// status the document lists for it (the harness checks the answer against the document).
#[tokio::test]
async fn every_documented_operation_is_routed() {
    let h = Harness::start().await;
    let doc: Value = serde_json::from_str(DOCUMENT).unwrap();
    let mut operations = 0;
    for (template, item) in doc["paths"].as_object().unwrap() {
        let path = template
            .replace("{out_trade_no}", "ROUTED0001")
            .replace("{out_refund_no}", "RROUTED0001")
            .replace("{out_split_no}", "SROUTED0001")
            .replace("{out_return_no}", "RRROUTED0001")
            .replace("{id}", "evt_0a1b2c3d_000000000001")
            .replace("{channel}", "nosuch")
            .replace("{date}", "2026-01-01");
        assert!(
            !path.contains('{'),
            "a parameter without a sample: {template}"
        );
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            operations += 1;
            let method = method.to_ascii_uppercase();
            let r = h.api(&method, &path, None).await;
            assert_ne!(r.status, 405, "{method} {path}: {}", r.text);
            assert_ne!(
                r.json["detail"], "resource not found",
                "{method} {path} is not routed"
            );
        }
    }
    assert!(operations >= 16, "{operations} operations");
}

#[test]
fn every_error_code_is_documented() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for code in payroute::domain::ErrorCode::ALL {
        assert!(
            readme.contains(&format!("`{}`", code.as_str())),
            "README's error table lacks `{code}`"
        );
    }
}

fn split_statuses() -> Vec<SplitStatus> {
    use SplitStatus::*;
    let all = vec![Pending, Succeeded, Failed];
    for s in &all {
        match s {
            Pending | Succeeded | Failed => {}
        }
    }
    all
}

fn receiver_types() -> Vec<ReceiverType> {
    use ReceiverType::*;
    let all = vec![Merchant, Openid, User, LoginName];
    for t in &all {
        match t {
            Merchant | Openid | User | LoginName => {}
        }
    }
    all
}

/// Splits, split returns, the `splits` of a split payment and the `split_returns` of a refund,
/// with every optional member absent and present, match the document, as do their events.
#[test]
fn the_split_types_serialize_as_documented() {
    let doc: Value = serde_json::from_str(DOCUMENT).unwrap();
    let spec = Spec::new(doc.clone());
    let schemas = "/components/schemas";
    for (pointer, rust) in [
        ("/Split/properties/status/enum", names(&split_statuses())),
        (
            "/SplitReceiver/properties/status/enum",
            names(&split_statuses()),
        ),
        (
            "/SplitReturn/properties/status/enum",
            names(&split_statuses()),
        ),
        (
            "/SplitReceiverRequest/properties/type/enum",
            names(&receiver_types()),
        ),
    ] {
        assert_eq!(
            documented_enum(&doc, &format!("{schemas}{pointer}")),
            rust,
            "{pointer}"
        );
    }

    // A split payment shows its totals; others do not.
    let mut order: Order = serde_json::from_value(json!({
        "request": {"out_trade_no": "SPLITT0001", "amount": 10000, "currency": "CNY",
                    "method": "wechat", "scene": "qr", "subject": "types", "split": true},
        "fingerprint": "f", "status": "partially_refunded", "attempts": [],
        "refund_reserved": 2000, "refunded": 2000, "channel": "wechatpay",
        "split_reserved": 4000, "split_returned": 1000, "split_finished": true,
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
    }))
    .unwrap();
    let view = |o: &Order| serde_json::to_value(PaymentView::of(o)).unwrap();
    let v = view(&order);
    assert_eq!(
        v["splits"],
        json!({"split_amount": 4000, "returned_amount": 1000, "held_amount": 5000,
               "finished": true})
    );
    assert_eq!(spec.check_schema("Payment", &v), Ok(()), "{v}");
    let mut without_totals = v.clone();
    without_totals.as_object_mut().unwrap().remove("splits");
    assert!(spec.check_schema("Payment", &without_totals).is_err());
    order.request.split = false;
    let v = view(&order);
    assert!(v.get("splits").is_none(), "{v}");
    assert_eq!(spec.check_schema("Payment", &v), Ok(()), "{v}");

    let minimal: Split = serde_json::from_value(json!({
        "out_split_no": "S_TYPES0001", "out_trade_no": "SPLITT0001", "channel": "wechatpay",
        "shares": [], "finish": true, "fingerprint": "f", "status": "pending",
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
    }))
    .unwrap();
    let split_view = |s: &Split| serde_json::to_value(SplitView::of(s)).unwrap();
    assert_eq!(spec.check_schema("Split", &split_view(&minimal)), Ok(()));
    for (i, status) in split_statuses().into_iter().enumerate() {
        let mut s = minimal.clone();
        s.status = status;
        s.finish = i % 2 == 0;
        s.channel_split_no = Some("3008450740201411110007820472".into());
        s.failure = Some(Failure {
            code: "NO_AUTH".into(),
            message: "no".into(),
        });
        s.shares = receiver_types()
            .into_iter()
            .zip(split_statuses().into_iter().cycle().skip(i))
            .map(|(receiver_type, status)| {
                serde_json::from_value(json!({
                    "type": receiver_type, "account": "1900000109", "name": "secret name",
                    "relation": "PARTNER", "amount": 300, "description": "share",
                    "status": status, "fail_reason": "NO_RELATION", "detail_id": "d1",
                    "returned": 100
                }))
                .unwrap()
            })
            .collect();
        let v = split_view(&s);
        assert!(!v.to_string().contains("secret name"), "{v}");
        assert_eq!(spec.check_schema("Split", &v), Ok(()), "{v}");
        for event_type in [EventType::SplitSucceeded, EventType::SplitFailed] {
            let body = event_body(event_type, Subject::Split(&s));
            assert_eq!(body["data"], v);
            assert_eq!(spec.check_schema("Event", &body), Ok(()), "{body}");
        }
    }

    let minimal: SplitReturn = serde_json::from_value(json!({
        "out_return_no": "R_TYPES0001", "out_split_no": "S_TYPES0001",
        "out_trade_no": "SPLITT0001", "channel": "wechatpay", "receiver_type": "merchant",
        "account": "1900000109", "amount": 100, "description": "back", "fingerprint": "f",
        "status": "pending",
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
    }))
    .unwrap();
    let return_view = |r: &SplitReturn| serde_json::to_value(SplitReturnView::of(r)).unwrap();
    assert_eq!(
        spec.check_schema("SplitReturn", &return_view(&minimal)),
        Ok(())
    );
    for status in split_statuses() {
        let mut r = minimal.clone();
        r.status = status;
        r.refund = Some("RTYPES0001".into());
        r.with_refund = true;
        r.channel_return_no = Some("3008450740201411110007820472".into());
        r.failure = Some(Failure {
            code: "BALANCE_NOT_ENOUGH".into(),
            message: "no".into(),
        });
        let v = return_view(&r);
        assert_eq!(spec.check_schema("SplitReturn", &v), Ok(()), "{v}");
        for event_type in [
            EventType::SplitReturnSucceeded,
            EventType::SplitReturnFailed,
        ] {
            let body = event_body(event_type, Subject::SplitReturn(&r));
            assert_eq!(body["data"], v);
            assert_eq!(spec.check_schema("Event", &body), Ok(()), "{body}");
        }
    }
    // `data` is tied to `type`: a split event does not carry a return, nor a refund event a split.
    let mut body = event_body(
        EventType::SplitReturnSucceeded,
        Subject::SplitReturn(&minimal),
    );
    body["type"] = json!("split.succeeded");
    assert!(spec.check_schema("Event", &body).is_err());
    body["type"] = json!("refund.succeeded");
    assert!(spec.check_schema("Event", &body).is_err());

    // A refund funded by returns names them.
    let mut refund: Refund = serde_json::from_value(json!({
        "out_refund_no": "RTYPES0001", "out_trade_no": "SPLITT0001", "amount": 10,
        "fingerprint": "f", "status": "pending", "channel": "wechatpay",
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
    }))
    .unwrap();
    refund.funded_by = vec!["RTYPES0001_R1".into(), "RTYPES0001_R2".into()];
    let v = serde_json::to_value(RefundView::of(&refund)).unwrap();
    assert_eq!(
        v["split_returns"],
        json!(["RTYPES0001_R1", "RTYPES0001_R2"])
    );
    assert_eq!(spec.check_schema("Refund", &v), Ok(()), "{v}");
}

/// A paid split payment of 100.00 yuan by `method` (the sample rules send it to the direct
/// channel of that wallet).
async fn paid_split_payment(h: &Harness, method: &str, channel: &str) -> String {
    let no = order_no("OS");
    let body = json!({"out_trade_no": no, "amount": 10000, "currency": "CNY", "method": method,
                      "scene": "qr", "subject": "openapi splits", "split": true});
    let r = h.api("POST", "/v1/payments", Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["channel"], channel, "{}", r.text);
    assert_eq!(r.json["splits"]["held_amount"], 0, "{}", r.text);
    // Not paid yet: nothing to split.
    let split = json!({"out_split_no": format!("{no}_S0"),
                       "receivers": [{"type": "user", "account": "2088000000000001",
                                      "amount": 100, "description": "early"}]});
    let r = h
        .api("POST", &format!("/v1/payments/{no}/splits"), Some(split))
        .await;
    assert_eq!(
        (r.status, r.json["code"].as_str()),
        (409, Some("split_not_allowed"))
    );
    assert_eq!(h.pay(channel, &no).await.status, 200);
    h.wait_status(&no, "succeeded").await;
    no
}

fn problem_code(r: &Reply) -> (u16, &str) {
    (r.status, r.json["code"].as_str().unwrap_or(r.text.as_str()))
}

/// The split operations through their successes and refusals on both channels that split; the
/// harness checks every answer against the document.
#[tokio::test]
async fn the_split_operations_answer_as_documented() {
    let h = Harness::start().await;
    let before = checked();

    // WeChat Pay: a merchant and a user receiver.
    let no = paid_split_payment(&h, "wechat", "wechatpay").await;
    let s1 = format!("{no}_S1");
    let split_path = format!("/v1/payments/{no}/splits");
    let merchant = json!({"type": "merchant", "account": "1900000109", "name": "示例商户全称",
                          "amount": 3000, "description": "platform fee"});
    let openid = json!({"type": "openid", "account": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
                        "amount": 1000, "description": "referral"});
    let split = json!({"out_split_no": s1, "receivers": [merchant, openid]});
    for (body, expected) in [
        (json!({"out_split_no": s1}), (400, "missing_field")),
        (
            json!({"out_split_no": s1, "receivers": [merchant, merchant]}),
            (400, "invalid_field"),
        ),
        (
            json!({"out_split_no": s1, "receivers": [{"type": "merchant"}]}),
            (400, "invalid_field"),
        ),
        (
            json!({"out_split_no": s1, "receivers": [openid], "extra": 1}),
            (400, "unknown_field"),
        ),
        (
            json!({"out_split_no": "S1", "receivers": [openid]}),
            (400, "invalid_field"),
        ),
        (
            json!({"out_split_no": s1, "receivers": [{"type": "merchant", "account": "1900000109",
                                                       "amount": 10, "description": "x"}]}),
            (422, "missing_field"),
        ),
        (
            json!({"out_split_no": s1, "receivers": [{"type": "user", "account": "2088000000000001",
                                                       "amount": 10, "description": "x"}]}),
            (422, "invalid_field"),
        ),
        (
            json!({"out_split_no": s1, "receivers": [{"type": "openid", "account": "o1",
                                                       "amount": 10001, "description": "x"}]}),
            (422, "split_exceeds_held"),
        ),
    ] {
        let r = h.api("POST", &split_path, Some(body.clone())).await;
        assert_eq!(problem_code(&r), expected, "{body}: {}", r.text);
    }
    let r = h.api("POST", &split_path, Some(split.clone())).await;
    assert_eq!(r.status, 201, "{}", r.text);
    // The simulator settles a split when it is first queried.
    let r = h.api("GET", &format!("/v1/splits/{s1}"), None).await;
    assert_eq!(
        (r.status, r.json["status"].as_str()),
        (200, Some("succeeded")),
        "{}",
        r.text
    );
    let r = h.api("POST", &split_path, Some(split.clone())).await;
    assert_eq!(r.status, 201, "a repeat: {}", r.text);
    let mut other = split.clone();
    other["receivers"][1]["amount"] = json!(999);
    let r = h.api("POST", &split_path, Some(other)).await;
    assert_eq!(problem_code(&r), (409, "idempotency_conflict"));
    let p = h.payment(&no).await;
    assert_eq!(p["splits"]["held_amount"], 6000, "{p}");

    // Returns: from the merchant receiver only.
    let returns = format!("/v1/splits/{s1}/returns");
    let ret = |no: &str, account: &str, amount: u64| json!({"out_return_no": no, "account": account, "amount": amount});
    let r1 = format!("{no}_T1");
    for (body, expected) in [
        (
            ret(&r1, "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", 100),
            (422, "operation_unsupported"),
        ),
        (ret(&r1, "1900000110", 100), (422, "invalid_field")),
        (ret(&r1, "1900000109", 3001), (422, "return_exceeds_split")),
        (ret(&r1, "1900000109", 0), (400, "invalid_amount")),
        (json!({"out_return_no": r1}), (400, "missing_field")),
    ] {
        let r = h.api("POST", &returns, Some(body.clone())).await;
        assert_eq!(problem_code(&r), expected, "{body}: {}", r.text);
    }
    let r = h
        .api("POST", &returns, Some(ret(&r1, "1900000109", 1000)))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = h.api("GET", &format!("/v1/split-returns/{r1}"), None).await;
    assert_eq!(
        (r.status, r.json["status"].as_str()),
        (200, Some("succeeded")),
        "{}",
        r.text
    );
    let r = h
        .api("POST", &returns, Some(ret(&r1, "1900000109", 999)))
        .await;
    assert_eq!(problem_code(&r), (409, "idempotency_conflict"));

    // Refunds: bounded by what the merchant holds (7000 now), funded by returns.
    let refunds = format!("/v1/payments/{no}/refunds");
    let refund = |n: &str, amount: u64, how: Value| json!({"out_refund_no": format!("{no}_{n}"), "amount": amount, "split_returns": how});
    for (body, expected) in [
        (
            refund("RA", 7001, Value::Null),
            (422, "refund_exceeds_held"),
        ),
        (
            refund("RA", 9001, json!("auto")),
            (422, "refund_exceeds_held"),
        ),
        (refund("RA", 100, json!("some")), (400, "invalid_field")),
        (
            refund("RA", 100, json!(["NO_SUCH_RETURN"])),
            (422, "invalid_field"),
        ),
    ] {
        let r = h.api("POST", &refunds, Some(body.clone())).await;
        assert_eq!(problem_code(&r), expected, "{body}: {}", r.text);
    }
    let r = h
        .api("POST", &refunds, Some(refund("RN", 500, json!([r1]))))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["split_returns"], json!([r1]), "{}", r.text);
    // 6500 held: 7000 needs 500 back from the merchant receiver (2000 left there).
    let r = h
        .api("POST", &refunds, Some(refund("RB", 7000, json!("auto"))))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let auto = r.json["split_returns"][0].as_str().unwrap().to_string();
    assert_eq!(auto, format!("{no}_RB_R1"));
    let r = h
        .api("GET", &format!("/v1/split-returns/{auto}"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["out_refund_no"], format!("{no}_RB"), "{}", r.text);
    let r = h.api("GET", &format!("/v1/refunds/{no}_RB"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Finish alone (WeChat Pay unfreezes the rest), then no more splits.
    let r = h
        .api(
            "POST",
            &split_path,
            Some(json!({"out_split_no": format!("{no}_S2"), "finish": true})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = h
        .api(
            "POST",
            &split_path,
            Some(json!({"out_split_no": format!("{no}_S3"), "receivers": [openid]})),
        )
        .await;
    assert_eq!(problem_code(&r), (409, "split_not_allowed"));

    // Alipay: the returns ride on the refund.
    let no = paid_split_payment(&h, "alipay", "alipay").await;
    let s1 = format!("{no}_S1");
    let split = json!({"out_split_no": s1, "receivers": [
        {"type": "user", "account": "2088000000000001", "amount": 2000, "description": "shop"},
        {"type": "login_name", "account": "partner@example.com", "amount": 1000,
         "description": "partner"}]});
    let r = h
        .api("POST", &format!("/v1/payments/{no}/splits"), Some(split))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = h.api("GET", &format!("/v1/splits/{s1}"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = h
        .api("POST", &format!("/v1/splits/{s1}/returns"),
             Some(json!({"out_return_no": format!("{no}_T1"), "account": "2088000000000001", "amount": 100})))
        .await;
    assert_eq!(problem_code(&r), (422, "operation_unsupported"));
    let r = h
        .api(
            "POST",
            &format!("/v1/payments/{no}/splits"),
            Some(json!({"out_split_no": format!("{no}_S2"), "finish": true})),
        )
        .await;
    assert_eq!(problem_code(&r), (422, "operation_unsupported"));
    let r = h
        .api("POST", &format!("/v1/payments/{no}/refunds"),
             Some(json!({"out_refund_no": format!("{no}_RA"), "amount": 8000, "split_returns": "auto"})))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);

    // Not a split payment; Ping++ does not split.
    let plain = order_no("OP");
    let r = h
        .api(
            "POST",
            "/v1/payments",
            Some(payment(&plain, "alipay", "qr", "direct")),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let channel = r.json["channel"].as_str().unwrap().to_string();
    assert_eq!(h.pay(&channel, &plain).await.status, 200);
    h.wait_status(&plain, "succeeded").await;
    let body = json!({"out_split_no": format!("{plain}_S1"), "receivers": [
        {"type": "user", "account": "2088000000000001", "amount": 100, "description": "x"}]});
    let r = h
        .api("POST", &format!("/v1/payments/{plain}/splits"), Some(body))
        .await;
    let expected = if channel == "pingpp" {
        (422, "operation_unsupported")
    } else {
        (409, "split_not_allowed")
    };
    assert_eq!(problem_code(&r), expected, "{channel}");
    let r = h
        .api("POST", &format!("/v1/payments/{plain}/refunds"),
             Some(json!({"out_refund_no": format!("{plain}_R1"), "amount": 100, "split_returns": "auto"})))
        .await;
    assert_eq!(problem_code(&r), (422, "invalid_field"));

    // Paths.
    for (path, expected) in [
        ("/v1/splits/S%FF", (400, "invalid_path")),
        ("/v1/splits/NO_SUCH_SPLIT", (404, "not_found")),
        ("/v1/split-returns/x", (400, "invalid_path")),
        ("/v1/split-returns/NO_SUCH_RETURN", (404, "not_found")),
    ] {
        let r = h.api("GET", path, None).await;
        assert_eq!(problem_code(&r), expected, "{path}");
    }
    assert!(checked() - before >= 40);
}
