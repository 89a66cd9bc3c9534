//! The Ping++ aggregator channel: one API in front of both wallets. Requests carry the secret
//! key and a `Pingplusplus-Signature`; webhooks are verified with the Ping++ public key.
//! Ping++ does not sign its responses, so they are trusted as far as TLS goes.

pub mod settings;
pub mod transformers;

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use self::transformers::{self as tf, Disposition};
use super::{
    BuildError, Channel, ChannelPayState, ChannelRefundState, InboundNotification,
    NotificationEvent, NotifyError, NotifyReply, Op, Outcome, PaymentIntent, PaymentReport,
    Prepared, RawResponse, RefundReport,
};
use crate::crypto::{PrivateKey, PublicKey, Secret};
use crate::domain::{ClientAction, JsapiParams, PayMethod, Scene, WechatAppParams};
use crate::money::Fen;

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

fn truncate(s: &str, chars: usize) -> String {
    s.chars().take(chars).collect()
}

impl Pingpp {
    /// Creates the adapter.
    pub fn new(cfg: PingppConfig) -> Self {
        Pingpp { cfg }
    }

    fn charge_body(&self, p: &PaymentIntent, channel: &str) -> Result<Value, BuildError> {
        let mut extra = json!({});
        match channel {
            "wx_pub_qr" => extra["product_id"] = json!(p.out_trade_no),
            "wx_pub" => {
                let openid = p
                    .payer_id
                    .as_deref()
                    .ok_or_else(|| BuildError::Invalid("wx_pub needs payer_id".into()))?;
                extra["open_id"] = json!(openid);
            }
            "alipay_wap" | "alipay_pc_direct" => {
                let url = self.cfg.return_url.as_deref().ok_or_else(|| {
                    BuildError::Invalid(format!(
                        "{channel} needs return_url in the channel's configuration"
                    ))
                })?;
                extra["success_url"] = json!(url);
            }
            "wx_wap" => {
                if let Some(url) = &self.cfg.return_url {
                    extra["result_url"] = json!(url);
                }
            }
            _ => {}
        }
        let mut body = json!({
            "order_no": p.out_trade_no,
            "app": { "id": self.cfg.app_id },
            "channel": channel,
            "amount": p.amount,
            "client_ip": p.client_ip.as_deref().unwrap_or("127.0.0.1"),
            "currency": "cny",
            "subject": truncate(&p.subject, 32),
            "body": truncate(p.description.as_deref().unwrap_or(&p.subject), 128),
            "extra": extra,
        });
        if let Some(t) = p.expires_at {
            body["time_expire"] = json!(t.timestamp());
        }
        Ok(body)
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
                (
                    "POST",
                    "/v1/charges".into(),
                    self.charge_body(p, channel)?.to_string(),
                )
            }
            Op::Query {
                channel_trade_no, ..
            } => (
                "GET",
                format!("/v1/charges/{}", Self::charge_id(channel_trade_no)?),
                String::new(),
            ),
            Op::Close { .. } | Op::Cancel { .. } => {
                return Err(BuildError::Unsupported(
                    "Ping++ cannot close or reverse a charge of this kind".into(),
                ))
            }
            Op::Refund(r) => {
                let ch = Self::charge_id(r.channel_trade_no.as_deref())?;
                let body = json!({
                    "amount": r.amount,
                    "description": truncate(r.reason.as_deref().unwrap_or("refund"), 255),
                    "metadata": { "out_refund_no": r.out_refund_no },
                });
                (
                    "POST",
                    format!("/v1/charges/{ch}/refunds"),
                    body.to_string(),
                )
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
        })
    }

    fn action(channel: &str, credential: &Value) -> Option<ClientAction> {
        let c = credential.get(channel)?;
        let text = |k: &str| {
            c.as_str()
                .map(str::to_string)
                .or_else(|| c.get(k).and_then(|v| v.as_str()).map(str::to_string))
        };
        let field = |k: &str| c.get(k).and_then(|v| v.as_str()).map(str::to_string);
        Some(match channel {
            "alipay_qr" | "wx_pub_qr" => ClientAction::QrCode {
                code_url: text("url")?,
            },
            "alipay" => ClientAction::AppPay {
                order_string: text("orderInfo")?,
            },
            "alipay_wap" | "alipay_pc_direct" | "wx_wap" => {
                ClientAction::Redirect { url: text("url")? }
            }
            "wx_pub" => ClientAction::JsapiPay {
                params: Box::new(JsapiParams {
                    app_id: field("appId")?,
                    time_stamp: field("timeStamp")?,
                    nonce_str: field("nonceStr")?,
                    package: field("package")?,
                    sign_type: field("signType")?,
                    pay_sign: field("paySign")?,
                }),
            },
            "wx" => ClientAction::WechatAppPay {
                params: Box::new(WechatAppParams {
                    appid: field("appId")?,
                    partnerid: field("partnerId")?,
                    prepayid: field("prepayId")?,
                    package: field("packageValue")?,
                    noncestr: field("nonceStr")?,
                    timestamp: field("timeStamp")?,
                    sign: field("sign")?,
                }),
            },
            _ => return None,
        })
    }

    fn charge_report(v: &Value, now: i64) -> PaymentReport {
        let paid = v.get("paid").and_then(|p| p.as_bool()).unwrap_or(false);
        let reversed = v.get("reversed").and_then(|p| p.as_bool()).unwrap_or(false);
        let expired = v
            .get("time_expire")
            .and_then(|t| t.as_i64())
            .is_some_and(|t| t < now);
        let state = match (paid, reversed || expired) {
            (true, _) => ChannelPayState::Paid,
            (false, true) => ChannelPayState::Closed,
            (false, false) => ChannelPayState::Waiting,
        };
        PaymentReport {
            state,
            channel_trade_no: v.get("id").and_then(|i| i.as_str()).map(str::to_string),
            amount: v.get("amount").and_then(|a| a.as_u64()).map(Fen),
            action: None,
        }
    }

    fn refund_report(v: &Value) -> Outcome {
        let state = match v.get("status").and_then(|s| s.as_str()) {
            Some("succeeded") => ChannelRefundState::Succeeded,
            Some("pending") => ChannelRefundState::Processing,
            Some("failed") => {
                return Outcome::Declined {
                    code: v
                        .get("failure_code")
                        .and_then(|c| c.as_str())
                        .unwrap_or("refund_failed")
                        .to_string(),
                    message: v
                        .get("failure_msg")
                        .and_then(|c| c.as_str())
                        .unwrap_or("the refund failed")
                        .to_string(),
                }
            }
            _ => return unknown("refund answer without a known status"),
        };
        Outcome::Refund(RefundReport {
            state,
            channel_refund_no: v.get("id").and_then(|i| i.as_str()).map(str::to_string),
        })
    }

    fn interpret_success(&self, op: Op<'_>, v: &Value, now: i64) -> Outcome {
        match op {
            Op::Create(p) => {
                let mut report = Self::charge_report(v, now);
                if report.channel_trade_no.is_none() {
                    return unknown("charge answer without an id");
                }
                let channel = tf::channel_name(p.method, p.scene).unwrap_or_default();
                if report.state == ChannelPayState::Waiting {
                    match v.get("credential").and_then(|c| Self::action(channel, c)) {
                        Some(a) => report.action = Some(a),
                        None => return unknown("charge answer without a usable credential"),
                    }
                }
                Outcome::Payment(report)
            }
            Op::Query { .. } => Outcome::Payment(Self::charge_report(v, now)),
            Op::Close { .. } | Op::Cancel { .. } => Outcome::Closed,
            Op::Refund(_) => Self::refund_report(v),
            Op::RefundQuery(r) => {
                if v.get("object").and_then(|o| o.as_str()) == Some("list") {
                    let found = v.get("data").and_then(|d| d.as_array()).and_then(|list| {
                        list.iter().find(|x| {
                            x.pointer("/metadata/out_refund_no")
                                .and_then(|n| n.as_str())
                                == Some(r.out_refund_no.as_str())
                        })
                    });
                    match found {
                        Some(x) => Self::refund_report(x),
                        None => Outcome::Refund(RefundReport {
                            state: ChannelRefundState::NotFound,
                            channel_refund_no: None,
                        }),
                    }
                } else {
                    Self::refund_report(v)
                }
            }
        }
    }

    fn interpret_error(op: Op<'_>, status: u16, body: &[u8]) -> Outcome {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let e = v.get("error").cloned().unwrap_or(Value::Null);
        let s = |k: &str| e.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
        let code = if s("code").is_empty() {
            s("type")
        } else {
            s("code")
        };
        let code = if code.is_empty() {
            format!("http_{status}")
        } else {
            code
        };
        let message = s("message");
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
        if (200..300).contains(&response.status) {
            match serde_json::from_slice::<Value>(&response.body) {
                Ok(v) => self.interpret_success(op, &v, Utc::now().timestamp()),
                Err(_) => unknown("2xx answer is not JSON"),
            }
        } else {
            Self::interpret_error(op, response.status, &response.body)
        }
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
        let v: Value = serde_json::from_slice(n.body)
            .map_err(|_| NotifyError::Malformed("body is not JSON".into()))?;
        let event_type = v
            .get("type")
            .and_then(|t| t.as_str())
            .unwrap_or_default()
            .to_string();
        if event_type != "charge.succeeded" {
            return Ok(NotificationEvent::Ignored { event_type });
        }
        let charge = v
            .pointer("/data/object")
            .ok_or_else(|| NotifyError::Malformed("no data.object".into()))?;
        if charge.get("app").and_then(|a| a.as_str()) != Some(self.cfg.app_id.as_str()) {
            return Err(NotifyError::WrongAccount);
        }
        if charge.get("paid").and_then(|p| p.as_bool()) != Some(true) {
            return Err(NotifyError::Malformed(
                "charge.succeeded for an unpaid charge".into(),
            ));
        }
        let out_trade_no = charge
            .get("order_no")
            .and_then(|o| o.as_str())
            .ok_or_else(|| NotifyError::Malformed("no order_no".into()))?
            .to_string();
        let mut report = Self::charge_report(charge, Utc::now().timestamp());
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
