//! The list endpoints in-process: `GET /v1/payments` (newest first, cursor pages, filters),
//! the events feed `GET /v1/events` (oldest first, resumable), the delivery lists and
//! redelivery, and the 400s of queries they cannot read. Every answer is also checked against
//! the OpenAPI document by the harness.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use common::{order_no, qr, Harness, Reply};
use payroute::settings::EventsArgs;
use serde_json::{json, Value};

/// payroute with these event settings (and its own data directory).
async fn start_with(events: EventsArgs) -> (Harness, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = common::test_args(dir.path().join("data"));
    args.events = events;
    let run = payroute::app::start(&args).await.expect("payroute starts");
    (Harness::from_running(run), dir)
}

/// Event settings that deliver to a loopback port nobody listens on, signed with a fresh secret
/// written into `dir`.
fn undeliverable(dir: &std::path::Path, give_up_hours: u64, retry_ms: u64) -> EventsArgs {
    use base64::Engine as _;
    let secret = dir.join("events-secret");
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    std::fs::write(&secret, format!("whsec_{key}\n")).unwrap();
    EventsArgs {
        url: Some(format!("http://127.0.0.1:{}/events", common::free_port())),
        secret_file: Some(secret),
        give_up_hours,
        retry_ms,
        timeout_ms: 1_000,
        ..Default::default()
    }
}

/// `path?query` with the pairs percent-encoded.
fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    format!("{path}?{}", q.finish())
}

fn time_of(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().expect("a time"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

fn numbers(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|p| p["out_trade_no"].as_str().unwrap().to_string())
        .collect()
}

/// Every payment the query lists, following `next_cursor`; also checks each page's envelope.
async fn all_payments(h: &Harness, pairs: &[(&str, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut q = pairs.to_vec();
        if let Some(c) = &cursor {
            q.push(("after", c));
        }
        let r = h.api("GET", &with_query("/v1/payments", &q), None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        out.extend(numbers(&r.json));
        match (r.json["has_more"].as_bool(), r.json["next_cursor"].as_str()) {
            (Some(true), Some(next)) => cursor = Some(next.to_string()),
            (Some(false), None) => return out,
            other => panic!("has_more and next_cursor disagree: {other:?} in {}", r.text),
        }
    }
    panic!("the cursor does not advance");
}

async fn create(h: &Harness, body: Value) -> Value {
    let r = h.api("POST", "/v1/payments", Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json
}

fn barcode(no: &str, auth_code: &str) -> Value {
    json!({"out_trade_no": no, "amount": 800, "currency": "CNY", "method": "alipay",
           "scene": "barcode", "subject": "lists", "auth_code": auth_code})
}

fn wechat_qr(no: &str) -> Value {
    json!({"out_trade_no": no, "amount": 300, "currency": "CNY", "method": "wechat",
           "scene": "qr", "subject": "lists"})
}

/// A payment paid at once (an Alipay barcode the simulator accepts).
async fn paid(h: &Harness, prefix: &str) -> String {
    let no = order_no(prefix);
    let p = create(h, barcode(&no, "251234567890123456")).await;
    assert_eq!(p["status"], "succeeded", "{p}");
    no
}

fn problem_code(r: &Reply) -> &str {
    r.json["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn payments_page_newest_first_without_overlap_or_gap() {
    let h = Harness::start().await;
    let mut created = Vec::new();
    for _ in 0..7 {
        let p = create(&h, qr(&order_no("PG"), 100)).await;
        let no = p["out_trade_no"].as_str().unwrap().to_string();
        created.push((time_of(&p["created_at"]).timestamp_millis(), no));
    }
    // Newest first; payments created in the same millisecond by number, higher first.
    created.sort();
    let newest_first: Vec<String> = created.into_iter().rev().map(|(_, no)| no).collect();

    let first = h.api("GET", "/v1/payments?limit=3", None).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(numbers(&first.json), newest_first[..3]);
    assert_eq!(first.json["has_more"], true);
    let cursor = first.json["next_cursor"].as_str().unwrap();
    let second = h
        .api(
            "GET",
            &with_query("/v1/payments", &[("limit", "3"), ("after", cursor)]),
            None,
        )
        .await;
    assert_eq!(numbers(&second.json), newest_first[3..6]);
    let cursor = second.json["next_cursor"].as_str().unwrap();
    let last = h
        .api(
            "GET",
            &with_query("/v1/payments", &[("limit", "3"), ("after", cursor)]),
            None,
        )
        .await;
    assert_eq!(numbers(&last.json), newest_first[6..]);
    assert_eq!(last.json["has_more"], false);
    assert_eq!(last.json["next_cursor"], Value::Null);

    for limit in ["1", "2", "7", "500"] {
        assert_eq!(
            all_payments(&h, &[("limit", limit)]).await,
            newest_first,
            "limit {limit}"
        );
    }
    // The default page holds them all.
    let all = h.api("GET", "/v1/payments", None).await;
    assert_eq!(numbers(&all.json), newest_first);
    assert_eq!(all.json["has_more"], false);
    // A payment created while paging shows on a new first page, not in the middle.
    let early = h.api("GET", "/v1/payments?limit=4", None).await;
    let newer = create(&h, qr(&order_no("PG"), 100)).await;
    let cursor = early.json["next_cursor"].as_str().unwrap();
    let rest = all_payments(&h, &[("limit", "4"), ("after", cursor)]).await;
    assert_eq!(rest, newest_first[4..]);
    let top = h.api("GET", "/v1/payments?limit=1", None).await;
    assert_eq!(
        numbers(&top.json),
        [newer["out_trade_no"].as_str().unwrap()]
    );
    // Each item is the payment as GET /v1/payments/{no} shows it.
    let one = h
        .api("GET", &format!("/v1/payments/{}", newest_first[0]), None)
        .await;
    assert_eq!(all.json["data"][0], one.json);
}

/// A payment as created (and closed) in a test: what the filters select by.
struct Made {
    no: String,
    status: String,
    channel: String,
    /// Created after the test's boundary instant.
    late: bool,
}

impl Made {
    fn of(p: &Value, late: bool) -> Made {
        let s = |k: &str| p[k].as_str().unwrap().to_string();
        Made {
            no: s("out_trade_no"),
            status: s("status"),
            channel: s("channel"),
            late,
        }
    }
}

#[tokio::test]
async fn payments_filter_by_status_channel_and_creation_time() {
    let h = Harness::start().await;
    let mut made = Vec::new();
    for body in [qr(&order_no("FA"), 100), wechat_qr(&order_no("FW"))] {
        made.push(Made::of(&create(&h, body).await, false));
    }
    let closing = order_no("FC");
    create(&h, qr(&closing, 100)).await;
    let c = h
        .api("POST", &format!("/v1/payments/{closing}/close"), None)
        .await;
    made.push(Made::of(&c.json, false));
    // A boundary between the payments above and those below.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let boundary = Utc::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    for body in [
        barcode(&order_no("FS"), "251234567890123456"),
        barcode(&order_no("FF"), "291234567890123456"),
        wechat_qr(&order_no("FL")),
    ] {
        made.push(Made::of(&create(&h, body).await, true));
    }
    let statuses: BTreeSet<&str> = made.iter().map(|m| m.status.as_str()).collect();
    assert_eq!(
        statuses,
        BTreeSet::from(["pending", "closed", "succeeded", "failed"])
    );
    let mut channels: Vec<&str> = made.iter().map(|m| m.channel.as_str()).collect();
    channels.sort_unstable();
    channels.dedup();
    assert!(channels.len() >= 2, "{channels:?}");

    let at = boundary.to_rfc3339_opts(SecondsFormat::Micros, true);
    let mut cases: Vec<Vec<(&str, &str)>> = Vec::new();
    for status in [
        "pending",
        "succeeded",
        "closed",
        "failed",
        "refunded",
        "partially_refunded",
    ] {
        cases.push(vec![("status", status)]);
        cases.push(vec![("status", status), ("created_before", &at)]);
        for channel in &channels {
            cases.push(vec![("status", status), ("channel", channel)]);
        }
    }
    for channel in channels.iter().copied().chain(["nosuchchannel"]) {
        cases.push(vec![("channel", channel)]);
        cases.push(vec![("channel", channel), ("created_after", &at)]);
    }
    cases.push(vec![("created_after", &at)]);
    cases.push(vec![("created_before", &at)]);
    cases.push(vec![("created_after", &at), ("created_before", &at)]);
    let mut selective = 0;
    for pairs in cases {
        let get = |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        let want: BTreeSet<&str> = made
            .iter()
            .filter(|m| get("status").is_none_or(|s| m.status == s))
            .filter(|m| get("channel").is_none_or(|c| m.channel == c))
            .filter(|m| get("created_after").is_none() || m.late)
            .filter(|m| get("created_before").is_none() || !m.late)
            .map(|m| m.no.as_str())
            .collect();
        if !want.is_empty() && want.len() < made.len() {
            selective += 1;
        }
        // Page by one as well: the filters hold across pages, and no payment comes twice.
        let mut by_one = pairs.clone();
        by_one.push(("limit", "1"));
        for q in [&pairs, &by_one] {
            let listed = all_payments(&h, q).await;
            let unique: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
            assert_eq!(unique.len(), listed.len(), "{q:?}: {listed:?}");
            assert_eq!(unique, want, "{q:?}");
        }
    }
    assert!(selective >= 10, "{selective} cases select some payments");
    // The same instant written with an offset selects the same payments.
    let shanghai = FixedOffset::east_opt(8 * 3600).unwrap();
    let offset = boundary.with_timezone(&shanghai).to_rfc3339();
    assert!(offset.ends_with("+08:00"), "{offset}");
    let late: BTreeSet<String> = made
        .iter()
        .filter(|m| m.late)
        .map(|m| m.no.clone())
        .collect();
    let listed = all_payments(&h, &[("created_after", &offset)]).await;
    assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), late);
}

#[tokio::test]
async fn list_queries_it_cannot_read_answer_400_invalid_query() {
    let h = Harness::start().await;
    let bad_cursor = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("no-dot-here")
    };
    // (path, parameter, value, what the detail names)
    let cases: [(&str, &str, &str, &str); 22] = [
        (
            "/v1/payments",
            "colour",
            "red",
            "unknown query parameter `colour`",
        ),
        (
            "/v1/payments",
            "Status",
            "pending",
            "unknown query parameter `Status`",
        ),
        ("/v1/payments", "limit", "0", "limit"),
        ("/v1/payments", "limit", "501", "limit"),
        ("/v1/payments", "limit", "abc", "limit"),
        ("/v1/payments", "limit", "-1", "limit"),
        ("/v1/payments", "limit", "", "limit"),
        (
            "/v1/payments",
            "created_after",
            "yesterday",
            "created_after",
        ),
        (
            "/v1/payments",
            "created_before",
            "2026-01-31",
            "created_before",
        ),
        (
            "/v1/payments",
            "created_after",
            "2026-01-31T08:00:00",
            "created_after",
        ),
        ("/v1/payments", "status", "paid", "status"),
        ("/v1/payments", "status", "PENDING", "status"),
        ("/v1/payments", "after", "!!not a cursor!!", "after"),
        ("/v1/payments", "after", "", "after"),
        ("/v1/payments", "after", bad_cursor.as_str(), "after"),
        (
            "/v1/events",
            "since",
            "1",
            "unknown query parameter `since`",
        ),
        ("/v1/events", "after", "abc", "after"),
        ("/v1/events", "after", "-1", "after"),
        ("/v1/events", "limit", "0", "limit"),
        ("/v1/events", "limit", "501", "limit"),
        ("/v1/events", "delivery", "all", "delivery"),
        (
            "/v1/events",
            "status",
            "failed",
            "unknown query parameter `status`",
        ),
    ];
    for (path, name, value, detail) in cases {
        let url = with_query(path, &[(name, value)]);
        let r = h.api("GET", &url, None).await;
        assert_eq!(
            (r.status, r.content_type.as_str(), problem_code(&r)),
            (400, "application/problem+json", "invalid_query"),
            "{url}: {}",
            r.text
        );
        let text = r.json["detail"].as_str().unwrap();
        assert!(text.contains(detail), "{url}: {text}");
    }
    // A query string that is not even well-formed percent-encoding is no better.
    let r = h.api("GET", "/v1/payments?limit=%FF", None).await;
    assert_eq!(
        (r.status, problem_code(&r)),
        (400, "invalid_query"),
        "{}",
        r.text
    );
    // The bounds themselves are fine.
    for path in ["/v1/payments", "/v1/events"] {
        for limit in ["1", "500"] {
            let r = h.api("GET", &format!("{path}?limit={limit}"), None).await;
            assert_eq!(r.status, 200, "{path} limit {limit}: {}", r.text);
        }
    }
}

#[tokio::test]
async fn the_events_feed_is_ordered_and_resumable() {
    let h = Harness::start().await;
    let empty = h.api("GET", "/v1/events", None).await;
    assert_eq!(
        empty.json,
        json!({"data": [], "next_cursor": "0", "has_more": false})
    );
    // payment.succeeded, refund.succeeded; payment.failed; payment.closed.
    let refunded = paid(&h, "EV").await;
    let r = h
        .api(
            "POST",
            &format!("/v1/payments/{refunded}/refunds"),
            Some(json!({"out_refund_no": format!("{refunded}R1"), "amount": 300})),
        )
        .await;
    assert_eq!(r.json["status"], "succeeded", "{}", r.text);
    let failed = order_no("EV");
    create(&h, barcode(&failed, "291234567890123456")).await;
    let closed = order_no("EV");
    create(&h, qr(&closed, 100)).await;
    h.api("POST", &format!("/v1/payments/{closed}/close"), None)
        .await;

    let feed = h.api("GET", "/v1/events", None).await;
    assert_eq!(feed.status, 200, "{}", feed.text);
    let events = feed.json["data"].as_array().unwrap().clone();
    let seen: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["data"]["out_trade_no"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("payment.succeeded", refunded.as_str()),
            ("refund.succeeded", refunded.as_str()),
            ("payment.failed", failed.as_str()),
            ("payment.closed", closed.as_str()),
        ]
    );
    // The payment as it was when it succeeded, the refund as it settled.
    assert_eq!(events[0]["data"]["status"], "succeeded");
    assert_eq!(events[0]["data"]["refunded_amount"], 0);
    assert_eq!(events[1]["data"]["out_refund_no"], format!("{refunded}R1"));
    // Ids are unique and name the feed position; the cursor is the last one.
    let positions: Vec<u64> = events
        .iter()
        .map(|e| {
            let id = e["id"].as_str().unwrap();
            id.split('_').nth(2).unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(positions, [1, 2, 3, 4]);
    assert_eq!(feed.json["next_cursor"], "4");
    assert_eq!(feed.json["has_more"], false);

    // Pages of two, then nothing new: the cursor stays where it was.
    let page = h.api("GET", "/v1/events?limit=2", None).await;
    assert_eq!(page.json["data"], json!(events[..2]));
    assert_eq!(
        (
            page.json["next_cursor"].as_str(),
            page.json["has_more"].as_bool()
        ),
        (Some("2"), Some(true))
    );
    let page = h.api("GET", "/v1/events?limit=2&after=2", None).await;
    assert_eq!(page.json["data"], json!(events[2..]));
    assert_eq!(page.json["has_more"], false);
    let idle = h.api("GET", "/v1/events?after=4", None).await;
    assert_eq!(
        idle.json,
        json!({"data": [], "next_cursor": "4", "has_more": false})
    );
    assert_eq!(
        h.api("GET", "/v1/events?after=0", None).await.json,
        feed.json
    );
    // Polling with the cursor: only what happened since.
    let later = paid(&h, "EV").await;
    let news = h.api("GET", "/v1/events?after=4", None).await;
    let data = news.json["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{}", news.text);
    assert_eq!(data[0]["data"]["out_trade_no"], later.as_str());
    assert_eq!(news.json["next_cursor"], "5");
    let far = h
        .api("GET", "/v1/events?after=18446744073709551615", None)
        .await;
    assert_eq!(far.json["data"], json!([]));
}

#[tokio::test]
async fn without_events_url_delivery_lists_are_empty_and_redelivery_is_refused() {
    let h = Harness::start().await;
    paid(&h, "NC").await;
    let feed = h.api("GET", "/v1/events", None).await;
    let id = feed.json["data"][0]["id"].as_str().unwrap().to_string();
    for delivery in ["failed", "pending"] {
        let r = h
            .api("GET", &format!("/v1/events?delivery={delivery}"), None)
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json["data"], json!([]), "{delivery}");
        assert_eq!(r.json["has_more"], false);
    }
    let r = h
        .api("POST", &format!("/v1/events/{id}/redeliver"), None)
        .await;
    assert_eq!(
        (r.status, problem_code(&r)),
        (409, "events_not_configured"),
        "{}",
        r.text
    );
    assert!(r.json["detail"].as_str().unwrap().contains("--events-url"));
    // An id that is not one of this ledger's is not found, configured or not.
    let (prefix, _) = id.rsplit_once('_').unwrap();
    for garbled in [
        "nonsense".to_string(),
        "evt_".into(),
        format!("{prefix}_1"),
        format!("{prefix}_00000000000x"),
        "evt_ffffffff_000000000001".into(),
        "%FF%FE".into(),
    ] {
        let r = h
            .api("POST", &format!("/v1/events/{garbled}/redeliver"), None)
            .await;
        assert_eq!(
            (r.status, problem_code(&r)),
            (404, "not_found"),
            "{garbled}: {}",
            r.text
        );
    }
}

/// Polls `GET /v1/events?delivery=<state>` until it lists `n` events.
async fn wait_listed(h: &Harness, state: &str, n: usize) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        last = h
            .api("GET", &format!("/v1/events?delivery={state}"), None)
            .await
            .json;
        if last["data"].as_array().map(Vec::len) == Some(n) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never {n} {state} events: {last}");
}

#[tokio::test]
async fn failed_deliveries_are_listed_and_redelivered() {
    let dir = tempfile::tempdir().unwrap();
    // Retries stop at once: the first refused connection gives the event up.
    let (h, _data) = start_with(undeliverable(dir.path(), 0, 60_000)).await;
    let no = paid(&h, "FD").await;
    let failed = wait_listed(&h, "failed", 1).await;
    let event = &failed["data"][0];
    assert_eq!(event["type"], "payment.succeeded");
    assert_eq!(event["data"]["out_trade_no"], no.as_str());
    assert_eq!(event["delivery"]["state"], "failed");
    assert_eq!(event["delivery"]["attempts"], 1);
    assert!(event["delivery"]["last_error"].is_string(), "{event}");
    assert_eq!(failed["has_more"], false);
    let pending = h.api("GET", "/v1/events?delivery=pending", None).await;
    assert_eq!(pending.json["data"], json!([]));
    // The gauge says so too (refreshed about once a second).
    let mut gauge = String::new();
    for _ in 0..60 {
        gauge = h.admin("GET", "/metrics", None).await.text;
        if gauge.lines().any(|l| l == "payroute_events_failed 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gauge.lines().any(|l| l == "payroute_events_failed 1"),
        "{gauge}"
    );

    // Redelivered: queued afresh, attempted again (and given up again here).
    let id = event["id"].as_str().unwrap();
    let r = h
        .api("POST", &format!("/v1/events/{id}/redeliver"), None)
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(
        r.json,
        json!({"id": id, "delivery": {"state": "pending", "attempts": 0}})
    );
    let again = wait_listed(&h, "failed", 1).await;
    assert_eq!(again["data"][0]["id"], id);
    assert_eq!(again["data"][0]["delivery"]["attempts"], 1);
    // A well-formed id of this ledger that names no event.
    let (prefix, _) = id.rsplit_once('_').unwrap();
    let r = h
        .api(
            "POST",
            &format!("/v1/events/{prefix}_999999999999/redeliver"),
            None,
        )
        .await;
    assert_eq!(
        (r.status, problem_code(&r)),
        (404, "not_found"),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn retrying_deliveries_are_listed_as_pending() {
    let dir = tempfile::tempdir().unwrap();
    // The first attempt fails; the next is a minute away.
    let (h, _data) = start_with(undeliverable(dir.path(), 24, 60_000)).await;
    let first = paid(&h, "PD").await;
    let second = paid(&h, "PD").await;
    let mut listed = Value::Null;
    for _ in 0..100 {
        listed = wait_listed(&h, "pending", 2).await;
        if listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["delivery"]["attempts"] == 1)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let data = listed["data"].as_array().unwrap();
    let nos: Vec<&str> = data
        .iter()
        .map(|e| e["data"]["out_trade_no"].as_str().unwrap())
        .collect();
    assert_eq!(nos, [first.as_str(), second.as_str()]);
    for e in data {
        let d = &e["delivery"];
        assert_eq!(
            (d["state"].as_str(), d["attempts"].as_i64()),
            (Some("pending"), Some(1)),
            "{e}"
        );
        assert!(time_of(&d["next_at"]) > Utc::now(), "{e}");
        assert!(d["last_error"].is_string(), "{e}");
    }
    // Pages of one over the outbox, resumable like the feed.
    let page = h
        .api("GET", "/v1/events?delivery=pending&limit=1", None)
        .await;
    assert_eq!(page.json["data"], json!(data[..1]));
    assert_eq!(page.json["has_more"], true);
    let cursor = page.json["next_cursor"].as_str().unwrap();
    let page = h
        .api(
            "GET",
            &with_query(
                "/v1/events",
                &[("delivery", "pending"), ("limit", "1"), ("after", cursor)],
            ),
            None,
        )
        .await;
    assert_eq!(page.json["data"], json!(data[1..]));
    assert_eq!(page.json["has_more"], false);
    assert_eq!(
        h.api("GET", "/v1/events?delivery=failed", None).await.json["data"],
        json!([])
    );
}
