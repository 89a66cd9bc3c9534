//! Notifications over every channel (parametrized): forged or spoiled ones are refused and
//! change nothing, the genuine one is applied once, and replays are acknowledged without
//! effect. How a notification is forged is each channel's own; the scenario is the same.

mod common;

use std::ops::Range;
use std::sync::Arc;

use common::channels::{Case, ALIPAY, PINGPP, WECHATPAY};
use common::{order_no, Harness, Reply};
use payroute::crypto::SymmetricKey;
use payroute::domain::PaymentStatus;
use payroute::sandbox::wechatpay::{Forgery, SignedNotification};

/// A notification as a channel would post it to `/notify/<channel>`, genuine or not.
struct Notice {
    channel: &'static str,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Notice {
    fn form(channel: &'static str, body: String) -> Notice {
        Notice {
            channel,
            content_type: "application/x-www-form-urlencoded; charset=utf-8",
            headers: Vec::new(),
            body,
        }
    }

    fn wechat(n: SignedNotification) -> Notice {
        Notice {
            channel: "wechatpay",
            content_type: "application/json",
            headers: n.headers,
            body: n.body,
        }
    }

    fn webhook(signature: String, body: String) -> Notice {
        Notice {
            channel: "pingpp",
            content_type: "application/json",
            headers: vec![(
                payroute::channels::pingpp::transformers::WEBHOOK_SIGNATURE_HEADER,
                signature,
            )],
            body,
        }
    }

    async fn post(&self, h: &Harness) -> Reply {
        let url = format!("http://{}/notify/{}", h.run.notify, self.channel);
        let mut req = http::Request::post(url).header("content-type", self.content_type);
        for (k, v) in &self.headers {
            req = req.header(*k, v);
        }
        h.send(req.body(bytes::Bytes::from(self.body.clone())).unwrap())
            .await
    }
}

/// A refused notification: what it is, and the statuses it may be refused with.
type Forged = (&'static str, Notice, Range<u16>);

/// One channel's notifications.
struct NoticeCase {
    case: Case,
    /// Notices for the paid order `no` that must be refused.
    forged: fn(&Harness, &str, u64) -> Vec<Forged>,
    /// The genuine notice of the paid order.
    genuine: fn(&Harness, &str) -> Notice,
    /// payroute's acknowledgement: status and body.
    ack: (u16, &'static str),
}

/// Yuan with two decimals, as Alipay writes amounts.
fn yuan(fen: u64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

fn alipay_forged(h: &Harness, no: &str, amount: u64) -> Vec<Forged> {
    let sim = h.alipay();
    let good = sim.notification_body(no, &[]).unwrap();
    let total = format!("total_amount={}", yuan(amount));
    assert!(good.contains(&total), "{good}");
    // Changed after signing: the signature does not verify.
    let forged = good.replace(&total, &format!("total_amount={}", yuan(amount + 1)));
    // Correctly signed but for another amount.
    let wrong = sim
        .notification_body(no, &[("total_amount", "0.01")])
        .unwrap();
    vec![
        ("bad signature", Notice::form("alipay", forged), 400..401),
        ("wrong amount", Notice::form("alipay", wrong), 400..401),
        (
            "not form data",
            Notice::form("alipay", "garbage".into()),
            400..401,
        ),
        (
            "unknown channel",
            Notice::form("nosuchchannel", good),
            404..405,
        ),
    ]
}

fn wechat_forged(h: &Harness, no: &str, _amount: u64) -> Vec<Forged> {
    let sim = h.wechat();
    let forgeries = [
        (
            "bad signature",
            Forgery {
                wrong_signing_key: Some(payroute::sandbox::fresh_key()),
                ..Default::default()
            },
        ),
        (
            "wrong APIv3 key",
            Forgery {
                wrong_apiv3_key: Some(Arc::new(SymmetricKey::generate())),
                ..Default::default()
            },
        ),
        (
            "stale timestamp",
            Forgery {
                timestamp_offset_secs: -600,
                ..Default::default()
            },
        ),
        (
            "wrong amount",
            Forgery {
                amount: Some(1),
                ..Default::default()
            },
        ),
    ];
    forgeries
        .into_iter()
        .map(|(label, f)| {
            let n = sim.notification(no, &f).unwrap();
            (label, Notice::wechat(n), 400..500)
        })
        .collect()
}

fn pingpp_forged(h: &Harness, no: &str, _amount: u64) -> Vec<Forged> {
    let sim = h.pingpp();
    let (sig, tampered) = sim.webhook(no, true).unwrap();
    let (_, unsigned) = sim.webhook(no, false).unwrap();
    vec![
        ("tampered body", Notice::webhook(sig, tampered), 400..401),
        (
            "unsigned",
            Notice::webhook(String::new(), unsigned),
            400..401,
        ),
    ]
}

fn notice_cases() -> [NoticeCase; 3] {
    [
        NoticeCase {
            case: ALIPAY,
            forged: alipay_forged,
            genuine: |h, no| Notice::form("alipay", h.alipay().notification_body(no, &[]).unwrap()),
            ack: (200, "success"),
        },
        NoticeCase {
            case: WECHATPAY,
            forged: wechat_forged,
            genuine: |h, no| {
                Notice::wechat(h.wechat().notification(no, &Forgery::default()).unwrap())
            },
            ack: (204, ""),
        },
        NoticeCase {
            case: PINGPP,
            forged: pingpp_forged,
            genuine: |h, no| {
                let (sig, body) = h.pingpp().webhook(no, false).unwrap();
                Notice::webhook(sig, body)
            },
            ack: (200, "ok"),
        },
    ]
}

#[tokio::test]
async fn forged_notifications_change_nothing_and_replays_are_applied_once_on_every_channel() {
    let h = Harness::start().await;
    for nc in notice_cases() {
        let ch = nc.case.channel;
        h.notifications(ch, false).await;
        let no = order_no("NT");
        h.api("POST", "/v1/payments", Some(nc.case.qr(&no))).await;
        h.pay(ch, &no).await;
        let before = h.order(&no).await;

        for (label, notice, refused) in (nc.forged)(&h, &no, nc.case.amount) {
            let r = notice.post(&h).await;
            assert!(
                refused.contains(&r.status),
                "{ch} {label}: {} {}",
                r.status,
                r.text
            );
            assert_ne!(r.text, nc.ack.1, "{ch} {label}: not acknowledged");
            assert_eq!(h.order(&no).await, before, "{ch} {label}: ledger unchanged");
        }

        // The genuine one is applied once; replays are acknowledged and change nothing.
        let genuine = (nc.genuine)(&h, &no);
        let r = genuine.post(&h).await;
        assert_eq!((r.status, r.text.as_str()), nc.ack, "{ch}");
        let after = h.order(&no).await;
        assert_eq!(after.status, PaymentStatus::Succeeded, "{ch}");
        for _ in 0..2 {
            let r = genuine.post(&h).await;
            assert_eq!((r.status, r.text.as_str()), nc.ack, "{ch}: replay");
        }
        let resent = h
            .admin("POST", &format!("/sandbox/{ch}/payments/{no}/notify"), None)
            .await;
        assert_eq!(
            (resent.json["status"].clone(), resent.json["body"].clone()),
            (serde_json::json!(nc.ack.0), serde_json::json!(nc.ack.1)),
            "{ch}: {}",
            resent.text
        );
        assert_eq!(h.order(&no).await, after, "{ch}: replays change nothing");
    }
}
