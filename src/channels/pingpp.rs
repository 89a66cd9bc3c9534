//! The Ping++ aggregator channel: one API in front of both wallets. Requests carry the secret
//! key and a `Pingplusplus-Signature`; webhooks are verified with the Ping++ public key.
//! Ping++ does not sign its responses, so they are trusted as far as TLS goes.

pub mod settings;
pub mod transformers;

use std::sync::Arc;

use self::transformers::{self as tf, Charge, Disposition, RefundAnswer, RefundStatus};
use super::{
    BuildError, Channel, ChannelPayState, ChannelRefundState, InboundNotification,
    NotificationEvent, NotifyError, NotifyReply, Op, Outcome, PaymentIntent, PaymentReport,
    Prepared, RawResponse, RefundReport,
};
use crate::crypto::{PrivateKey, PublicKey, Secret};
use crate::domain::{ClientAction, JsapiParams, PayMethod, Scene, WechatAppParams};
use bytes::Bytes;
use chrono::{DateTime, Utc};

/// Everything the adapter needs, compiled from routes.yaml.
#[derive(Debug)]
pub struct PingppConfig {
    pub name: String,
    /// The Ping++ app id (`app_…`).
    pub app_id: String,
    /// Base URL, e.g. `https://api.pingxx.com`.
    pub base_url: String,
    /// `sk_live_…` / `sk_test_…`.
    pub secret_key: Arc<Secret<String>>,
    /// Signs requests; its public half is uploaded to the Ping++ dashboard.
    pub merchant_key: Arc<PrivateKey>,
    /// Verifies webhooks.
    pub pingpp_public_key: PublicKey,
    /// Where browsers return after `alipay_wap` / `alipay_pc_direct` / `wx_wap`.
    pub return_url: Option<String>,
    pub scenes: Vec<Scene>,
}

/// The Ping++ adapter.
#[derive(Debug)]
pub struct Pingpp {
    cfg: PingppConfig,
}

fn unknown(reason: impl Into<String>) -> Outcome {
    Outcome::Unknown {
        reason: reason.into(),
    }
}

/// A request body as JSON text (what the signature covers).
fn to_json(body: &impl serde::Serialize) -> Result<String, BuildError> {
    serde_json::to_string(body).map_err(|e| BuildError::Invalid(format!("request body: {e}")))
}

fn truncate(s: &str, chars: usize) -> String {
    s.chars().take(chars).collect()
}

impl Pingpp {
    /// Creates the adapter.
    pub fn new(cfg: PingppConfig) -> Self {
        Pingpp { cfg }
    }

    /// [`Channel::parse`] at `now` (Unix seconds, which decides whether a charge expired).
    pub fn parse_at(&self, op: Op<'_>, response: &RawResponse, now: i64) -> Outcome {
        if (200..300).contains(&response.status) {
            self.interpret_success(op, &response.body, now)
        } else {
            Self::interpret_error(op, response.status, &response.body)
        }
    }

    fn charge_body(&self, p: &PaymentIntent, channel: &str) -> Result<String, BuildError> {
        let mut extra = tf::ChargeExtra::default();
        match channel {
            "wx_pub_qr" => extra.product_id = Some(&p.out_trade_no),
            "wx_pub" => {
                let openid = p
                    .payer_id
                    .as_deref()
                    .ok_or_else(|| BuildError::Invalid("wx_pub needs payer_id".into()))?;
                extra.open_id = Some(openid);
            }
            "alipay_wap" | "alipay_pc_direct" => {
                let url = self.cfg.return_url.as_deref().ok_or_else(|| {
                    BuildError::Invalid(format!(
                        "{channel} needs return_url in the channel's configuration"
                    ))
                })?;
                extra.success_url = Some(url);
            }
            "wx_wap" => extra.result_url = self.cfg.return_url.as_deref(),
            _ => {}
        }
        to_json(&tf::ChargeRequest {
            order_no: &p.out_trade_no,
            app: tf::AppRef {
                id: &self.cfg.app_id,
            },
            channel,
            amount: p.amount,
            client_ip: p.client_ip.as_deref().unwrap_or("127.0.0.1"),
            currency: "cny",
            subject: truncate(&p.subject, 32),
            body: truncate(p.description.as_deref().unwrap_or(&p.subject), 128),
            extra,
            time_expire: p.expires_at.map(|t| t.timestamp()),
        })
    }

    fn charge_id(id: Option<&str>) -> Result<&str, BuildError> {
        id.filter(|s| !s.is_empty()).ok_or_else(|| {
            BuildError::Invalid("the Ping++ charge id is not known for this order".into())
        })
    }

    /// (method, request target, body) of an operation.
    fn request_parts(&self, op: Op<'_>) -> Result<(&'static str, String, String), BuildError> {
        Ok(match op {
            Op::Create(p) => {
                let channel = tf::channel_name(p.method, p.scene).ok_or_else(|| {
                    BuildError::Unsupported(format!(
                        "Ping++ has no {} {} channel here",
                        p.method.as_str(),
                        p.scene.as_str()
                    ))
                })?;
                ("POST", "/v1/charges".into(), self.charge_body(p, channel)?)
            }
            Op::Query {
                channel_trade_no, ..
            } => (
                "GET",
                format!("/v1/charges/{}", Self::charge_id(channel_trade_no)?),
                String::new(),
            ),
            Op::Refund(r) => {
                let ch = Self::charge_id(r.channel_trade_no.as_deref())?;
                let body = to_json(&tf::RefundRequest {
                    amount: r.amount,
                    description: truncate(r.reason.as_deref().unwrap_or("refund"), 255),
                    metadata: tf::RefundMetadata {
                        out_refund_no: &r.out_refund_no,
                    },
                })?;
                ("POST", format!("/v1/charges/{ch}/refunds"), body)
            }
            Op::RefundQuery(r) => {
                let ch = Self::charge_id(r.channel_trade_no.as_deref())?;
                match &r.channel_refund_no {
                    Some(re) => (
                        "GET",
                        format!("/v1/charges/{ch}/refunds/{re}"),
                        String::new(),
                    ),
                    None => ("GET", format!("/v1/charges/{ch}/refunds"), String::new()),
                }
            }
            // Closing, reversing, and every operation added later that Ping++ does not do.
            _ => return Err(op.unsupported("Ping++")),
        })
    }

    /// The client action in `credential.<channel>`, read typed for that channel only.
    fn action(
        channel: &str,
        credential: &serde_json::Map<String, serde_json::Value>,
    ) -> Option<ClientAction> {
        fn read<T: serde::de::DeserializeOwned>(c: &serde_json::Value) -> Option<T> {
            T::deserialize(c).ok()
        }
        let c = credential.get(channel)?;
        let link = |c| {
            read::<tf::LinkCredential>(c).map(|l| match l {
                tf::LinkCredential::Text(url) | tf::LinkCredential::Object { url } => url,
            })
        };
        Some(match channel {
            "alipay_qr" | "wx_pub_qr" => ClientAction::QrCode { code_url: link(c)? },
            "alipay" => ClientAction::AppPay {
                order_string: match read::<tf::OrderInfoCredential>(c)? {
                    tf::OrderInfoCredential::Text(s)
                    | tf::OrderInfoCredential::Object { order_info: s } => s,
                },
            },
            "alipay_wap" | "alipay_pc_direct" | "wx_wap" => {
                ClientAction::Redirect { url: link(c)? }
            }
            "wx_pub" => {
                let w: tf::WxPubCredential = read(c)?;
                ClientAction::JsapiPay {
                    params: Box::new(JsapiParams {
                        app_id: w.app_id,
                        time_stamp: w.time_stamp,
                        nonce_str: w.nonce_str,
                        package: w.package,
                        sign_type: w.sign_type,
                        pay_sign: w.pay_sign,
                    }),
                }
            }
            "wx" => {
                let w: tf::WxCredential = read(c)?;
                ClientAction::WechatAppPay {
                    params: Box::new(WechatAppParams {
                        appid: w.app_id,
                        partnerid: w.partner_id,
                        prepayid: w.prepay_id,
                        package: w.package_value,
                        noncestr: w.nonce_str,
                        timestamp: w.time_stamp,
                        sign: w.sign,
                    }),
                }
            }
            _ => return None,
        })
    }

    fn charge_report(c: &Charge, now: i64) -> PaymentReport {
        let paid = c.paid.unwrap_or(false);
        let reversed = c.reversed.unwrap_or(false);
        let expired = c.time_expire.is_some_and(|t| t < now);
        let state = match (paid, reversed || expired) {
            (true, _) => ChannelPayState::Paid,
            (false, true) => ChannelPayState::Closed,
            (false, false) => ChannelPayState::Waiting,
        };
        PaymentReport {
            state,
            channel_trade_no: c.id.clone(),
            amount: c.amount,
            action: None,
        }
    }

    fn refund_report(r: tf::Refund) -> Outcome {
        let Some(status) = r.status.as_ref().and_then(|s| s.known()) else {
            return unknown("refund answer without a known status");
        };
        let state = match status {
            RefundStatus::Succeeded => ChannelRefundState::Succeeded,
            RefundStatus::Pending => ChannelRefundState::Processing,
            RefundStatus::Failed => {
                return Outcome::Declined {
                    code: r.failure_code.unwrap_or_else(|| "refund_failed".into()),
                    message: r.failure_msg.unwrap_or_else(|| "the refund failed".into()),
                }
            }
        };
        Outcome::Refund(RefundReport {
            state,
            channel_refund_no: r.id,
        })
    }

    fn interpret_success(&self, op: Op<'_>, body: &[u8], now: i64) -> Outcome {
        match op {
            Op::Create(p) => {
                let Ok(charge) = serde_json::from_slice::<Charge>(body) else {
                    return unknown("2xx answer is not JSON");
                };
                let mut report = Self::charge_report(&charge, now);
                if report.channel_trade_no.is_none() {
                    return unknown("charge answer without an id");
                }
                let channel = tf::channel_name(p.method, p.scene).unwrap_or_default();
                if report.state == ChannelPayState::Waiting {
                    match charge
                        .credential
                        .as_ref()
                        .and_then(|c| Self::action(channel, c))
                    {
                        Some(a) => report.action = Some(a),
                        None => return unknown("charge answer without a usable credential"),
                    }
                }
                Outcome::Payment(report)
            }
            Op::Query { .. } => match serde_json::from_slice::<Charge>(body) {
                Ok(charge) => Outcome::Payment(Self::charge_report(&charge, now)),
                Err(_) => unknown("2xx answer is not JSON"),
            },
            Op::Refund(_) | Op::RefundQuery(_) => {
                let Ok(answer) = serde_json::from_slice::<RefundAnswer>(body) else {
                    return unknown("2xx answer is not JSON");
                };
                match op {
                    Op::RefundQuery(r) if answer.object.as_deref() == Some("list") => {
                        let found = answer.data.into_iter().find(|x| {
                            x.metadata.as_ref().and_then(|m| m.out_refund_no.as_deref())
                                == Some(r.out_refund_no.as_str())
                        });
                        match found {
                            Some(x) => Self::refund_report(x),
                            None => Outcome::Refund(RefundReport {
                                state: ChannelRefundState::NotFound,
                                channel_refund_no: None,
                            }),
                        }
                    }
                    _ => Self::refund_report(answer.refund),
                }
            }
            // Never built (see `request_parts`): nothing was asked, nothing is known.
            _ => unknown("an answer to an operation Ping++ does not perform"),
        }
    }

    fn interpret_error(op: Op<'_>, status: u16, body: &[u8]) -> Outcome {
        let answer: tf::ErrorAnswer = serde_json::from_slice(body).unwrap_or_default();
        let e = answer.error.unwrap_or_default();
        let code = [e.code, e.kind]
            .into_iter()
            .flatten()
            .find(|c| !c.is_empty())
            .unwrap_or_else(|| format!("http_{status}"));
        let message = e.message.unwrap_or_default();
        match tf::disposition(status, op.kind()) {
            Disposition::Failed => Outcome::Declined { code, message },
            Disposition::NotAccepted => Outcome::NotAccepted { code, message },
            Disposition::Unknown => unknown(format!("HTTP {status} {code}: {message}")),
            Disposition::NotFound => match op {
                Op::RefundQuery(_) => Outcome::Refund(RefundReport {
                    state: ChannelRefundState::NotFound,
                    channel_refund_no: None,
                }),
                _ => Outcome::Payment(PaymentReport {
                    state: ChannelPayState::NotFound,
                    channel_trade_no: None,
                    amount: None,
                    action: None,
                }),
            },
        }
    }
}

impl Channel for Pingpp {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn kind(&self) -> &'static str {
        "pingpp"
    }

    fn supports(&self, method: PayMethod, scene: Scene) -> bool {
        self.cfg.scenes.contains(&scene) && tf::channel_name(method, scene).is_some()
    }

    fn build(&self, op: Op<'_>, now: DateTime<Utc>) -> Result<Prepared, BuildError> {
        let (method, target, body) = self.request_parts(op)?;
        let ts = now.timestamp().to_string();
        let signature = tf::sign_request(&self.cfg.merchant_key, &body, &target, &ts);
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!(
                "{}{target}",
                self.cfg.base_url.trim_end_matches('/')
            ))
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.cfg.secret_key.expose()),
            )
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("payroute/", env!("CARGO_PKG_VERSION")),
            )
            .header(tf::TIMESTAMP_HEADER, &ts)
            .header(tf::SIGNATURE_HEADER, signature);
        if method == "POST" {
            req = req.header(
                http::header::CONTENT_TYPE,
                "application/json; charset=UTF-8",
            );
        }
        req.body(Bytes::from(body))
            .map(Prepared::Send)
            .map_err(|e| BuildError::Invalid(format!("endpoint URL: {e}")))
    }

    fn parse(&self, op: Op<'_>, response: &RawResponse) -> Outcome {
        self.parse_at(op, response, Utc::now().timestamp())
    }

    fn verify_notification(
        &self,
        n: &InboundNotification<'_>,
    ) -> Result<NotificationEvent, NotifyError> {
        let sig = n
            .headers
            .get(tf::WEBHOOK_SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or(NotifyError::BadSignature)?;
        if !tf::verify_webhook(&self.cfg.pingpp_public_key, n.body, sig) {
            return Err(NotifyError::BadSignature);
        }
        let event_type = serde_json::from_slice::<tf::EventType>(n.body)
            .map_err(|_| NotifyError::Malformed("body is not JSON".into()))?
            .kind
            .unwrap_or_default();
        if event_type != "charge.succeeded" {
            return Ok(NotificationEvent::Ignored { event_type });
        }
        let event: tf::ChargeEvent = serde_json::from_slice(n.body)
            .map_err(|_| NotifyError::Malformed("charge event is malformed".into()))?;
        let charge = event
            .data
            .and_then(|d| d.object)
            .ok_or_else(|| NotifyError::Malformed("no data.object".into()))?;
        if charge.app.as_deref() != Some(self.cfg.app_id.as_str()) {
            return Err(NotifyError::WrongAccount);
        }
        if charge.paid != Some(true) {
            return Err(NotifyError::Malformed(
                "charge.succeeded for an unpaid charge".into(),
            ));
        }
        let out_trade_no = charge
            .order_no
            .clone()
            .ok_or_else(|| NotifyError::Malformed("no order_no".into()))?;
        let mut report = Self::charge_report(&charge, Utc::now().timestamp());
        report.state = ChannelPayState::Paid;
        if report.amount.is_none() {
            return Err(NotifyError::Malformed("no amount".into()));
        }
        Ok(NotificationEvent::Payment {
            out_trade_no,
            report,
        })
    }

    fn notify_reply(&self, accepted: bool) -> NotifyReply {
        // Ping++ looks only at the status code: 2xx stops its retries.
        NotifyReply {
            status: if accepted { 200 } else { 400 },
            content_type: "text/plain; charset=utf-8",
            body: Bytes::from_static(if accepted { b"ok" } else { b"rejected" }),
        }
    }
}
