//! The Alipay channel (OpenAPI 2.0 gateway, RSA2). Builds signed requests, verifies responses
//! and notifications; the wire details live in `alipay/transformers.rs`.

pub mod settings;
pub mod transformers;

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use self::transformers::{
    self as tf, BusinessResult, Disposition, Params, TradeStatus, VerifiedResponse,
};
use super::{
    BuildError, Channel, ChannelPayState, ChannelRefundState, InboundNotification,
    NotificationEvent, NotifyError, NotifyReply, Op, Outcome, PaymentIntent, PaymentReport,
    Prepared, RawResponse, RefundReport,
};
use crate::crypto::{PrivateKey, PublicKey};
use crate::domain::{ClientAction, PayMethod, Scene};
use crate::money::yuan_to_fen;
use crate::money::Fen;

/// The scenes Alipay offers, and the gateway method that serves each.
pub const SCENES: &[(Scene, &str)] = &[
    (Scene::Qr, "alipay.trade.precreate"),
    (Scene::App, "alipay.trade.app.pay"),
    (Scene::H5, "alipay.trade.wap.pay"),
    (Scene::Page, "alipay.trade.page.pay"),
    (Scene::Barcode, "alipay.trade.pay"),
];

/// Everything the adapter needs, compiled from routes.yaml.
#[derive(Debug)]
pub struct AlipayConfig {
    /// Channel name in routes.yaml.
    pub name: String,
    pub app_id: String,
    /// Gateway URL, e.g. `https://openapi.alipay.com/gateway.do`.
    pub gateway: String,
    pub app_private_key: Arc<PrivateKey>,
    pub alipay_public_key: PublicKey,
    /// Where Alipay sends notifications (`…/notify/<name>`).
    pub notify_url: Option<String>,
    /// Where the browser returns after page/H5 payments.
    pub return_url: Option<String>,
    /// Scenes enabled for this channel (a subset of `SCENES`).
    pub scenes: Vec<Scene>,
}

/// The Alipay adapter.
#[derive(Debug)]
pub struct Alipay {
    cfg: AlipayConfig,
}

impl Alipay {
    /// Creates the adapter.
    pub fn new(cfg: AlipayConfig) -> Self {
        Alipay { cfg }
    }

    fn method_for(op: Op<'_>) -> Result<&'static str, BuildError> {
        Ok(match op {
            Op::Create(p) => SCENES
                .iter()
                .find(|(s, _)| *s == p.scene)
                .map(|(_, m)| *m)
                .ok_or_else(|| {
                    BuildError::Unsupported(format!("alipay has no {} scene", p.scene.as_str()))
                })?,
            Op::Query { .. } => "alipay.trade.query",
            Op::Close { .. } => "alipay.trade.close",
            Op::Cancel { .. } => "alipay.trade.cancel",
            Op::Refund(_) => "alipay.trade.refund",
            Op::RefundQuery(_) => "alipay.trade.fastpay.refund.query",
        })
    }

    /// The signed common + business parameters of one call.
    fn signed_params(
        &self,
        method: &str,
        biz: &Map<String, Value>,
        now: DateTime<Utc>,
        with_notify: bool,
    ) -> Params {
        // The order of the official Node SDK (it does not change the signature, but keeps an
        // app order string byte-identical to what Alipay's own SDK produces).
        let mut p = Params::default();
        p.push("method", method);
        p.push("app_id", self.cfg.app_id.as_str());
        p.push("charset", tf::CHARSET);
        p.push("version", tf::VERSION);
        p.push("sign_type", tf::SIGN_TYPE);
        p.push("timestamp", tf::china_timestamp(now));
        if with_notify {
            p.push(
                "notify_url",
                self.cfg.notify_url.clone().unwrap_or_default(),
            );
        }
        if matches!(method, "alipay.trade.wap.pay" | "alipay.trade.page.pay") {
            p.push(
                "return_url",
                self.cfg.return_url.clone().unwrap_or_default(),
            );
        }
        p.push("biz_content", Value::Object(biz.clone()).to_string());
        p.sign(&self.cfg.app_private_key);
        p
    }

    fn gateway_url(&self, query: &str) -> String {
        let sep = if self.cfg.gateway.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{}{}", self.cfg.gateway, sep, query)
    }

    fn create_biz(p: &PaymentIntent) -> Map<String, Value> {
        let mut biz = Map::new();
        let mut put = |k: &str, v: &str| {
            biz.insert(k.into(), Value::String(v.into()));
        };
        put("out_trade_no", &p.out_trade_no);
        put("total_amount", &p.amount.to_yuan());
        put("subject", &p.subject);
        if let Some(d) = &p.description {
            put("body", d);
        }
        let product_code = match p.scene {
            Scene::Qr | Scene::Barcode => "FACE_TO_FACE_PAYMENT",
            Scene::App => "QUICK_MSECURITY_PAY",
            Scene::H5 => "QUICK_WAP_WAY",
            Scene::Page | Scene::Jsapi => "FAST_INSTANT_TRADE_PAY",
        };
        put("product_code", product_code);
        if p.scene == Scene::Barcode {
            put("scene", "bar_code");
            put("auth_code", p.auth_code.as_deref().unwrap_or_default());
        }
        if let Some(t) = p.expires_at {
            put("time_expire", &tf::china_timestamp(t));
        }
        biz
    }

    fn biz_for(op: Op<'_>) -> Map<String, Value> {
        let mut biz = Map::new();
        let mut put = |k: &str, v: &str| {
            if !v.is_empty() {
                biz.insert(k.into(), Value::String(v.into()));
            }
        };
        match op {
            Op::Create(p) => return Self::create_biz(p),
            Op::Query { out_trade_no, .. }
            | Op::Close { out_trade_no, .. }
            | Op::Cancel { out_trade_no, .. } => put("out_trade_no", out_trade_no),
            Op::Refund(r) => {
                put("out_trade_no", &r.out_trade_no);
                put("refund_amount", &r.amount.to_yuan());
                put("out_request_no", &r.out_refund_no);
                put("refund_reason", r.reason.as_deref().unwrap_or_default());
            }
            Op::RefundQuery(r) => {
                put("out_trade_no", &r.out_trade_no);
                put("out_request_no", &r.out_refund_no);
            }
        }
        biz
    }

    fn interpret_success(op: Op<'_>, v: &VerifiedResponse) -> Outcome {
        let trade_no = v.str("trade_no").map(str::to_string);
        let amount = v.str("total_amount").and_then(Fen::from_yuan);
        match op {
            Op::Create(p) if p.scene == Scene::Barcode => Outcome::Payment(PaymentReport {
                state: ChannelPayState::Paid,
                channel_trade_no: trade_no,
                amount,
                action: None,
            }),
            Op::Create(_) => match v.str("qr_code") {
                Some(code_url) => Outcome::Payment(PaymentReport {
                    state: ChannelPayState::Waiting,
                    channel_trade_no: trade_no,
                    amount: None,
                    action: Some(ClientAction::QrCode {
                        code_url: code_url.to_string(),
                    }),
                }),
                None => unknown("precreate succeeded without qr_code"),
            },
            Op::Query { .. } => {
                let Some(status) = v.str("trade_status").and_then(TradeStatus::parse) else {
                    return unknown("query answer without a known trade_status");
                };
                let state = match status {
                    TradeStatus::WaitBuyerPay => ChannelPayState::Waiting,
                    TradeStatus::TradeSuccess | TradeStatus::TradeFinished => ChannelPayState::Paid,
                    TradeStatus::TradeClosed => ChannelPayState::Closed,
                };
                Outcome::Payment(PaymentReport {
                    state,
                    channel_trade_no: trade_no,
                    amount,
                    action: None,
                })
            }
            Op::Close { .. } => Outcome::Closed,
            Op::Cancel { .. } => {
                if v.str("retry_flag") == Some("Y") {
                    unknown("cancel asks to be retried")
                } else {
                    Outcome::Closed
                }
            }
            Op::Refund(_) => Outcome::Refund(RefundReport {
                // code 10000 only means accepted; money moved iff fund_change = Y.
                state: if v.str("fund_change") == Some("Y") {
                    ChannelRefundState::Succeeded
                } else {
                    ChannelRefundState::Processing
                },
                channel_refund_no: trade_no,
            }),
            Op::RefundQuery(_) => Outcome::Refund(RefundReport {
                // An absent refund_status means the refund was not received (or failed).
                state: match v.str("refund_status") {
                    Some("REFUND_SUCCESS") => ChannelRefundState::Succeeded,
                    _ => ChannelRefundState::NotFound,
                },
                channel_refund_no: trade_no,
            }),
        }
    }

    fn interpret_error(op: Op<'_>, v: &VerifiedResponse) -> Outcome {
        let code = v.sub_code.clone().unwrap_or_else(|| v.code.clone());
        let message = v.sub_msg.clone().unwrap_or_else(|| v.msg.clone());
        match tf::disposition(&v.code, v.sub_code.as_deref(), op.kind()) {
            Disposition::Failed => Outcome::Declined { code, message },
            Disposition::NotAccepted => Outcome::NotAccepted { code, message },
            Disposition::Unknown => unknown(&format!("{code}: {message}")),
            Disposition::Business(BusinessResult::BuyerPaying) => Outcome::Payment(PaymentReport {
                state: ChannelPayState::Waiting,
                channel_trade_no: v.str("trade_no").map(str::to_string),
                amount: None,
                action: None,
            }),
            // For a close or cancel this is not "nothing to close": a precreate QR code or a
            // cashier link becomes a trade only when the buyer scans or opens it, and stays
            // payable until it expires (protocol reference §5.2). The caller decides.
            Disposition::Business(BusinessResult::TradeNotExist) => match op {
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
            // Already paid, or a state that forbids the operation: only a query can tell.
            Disposition::Business(BusinessResult::AlreadyPaid | BusinessResult::StateConflict) => {
                unknown(&format!("{code}: {message}; the trade must be queried"))
            }
        }
    }
}

fn unknown(reason: &str) -> Outcome {
    Outcome::Unknown {
        reason: reason.to_string(),
    }
}

impl Channel for Alipay {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn kind(&self) -> &'static str {
        "alipay"
    }

    fn supports(&self, method: PayMethod, scene: Scene) -> bool {
        method == PayMethod::Alipay
            && self.cfg.scenes.contains(&scene)
            && SCENES.iter().any(|(s, _)| *s == scene)
    }

    fn build(&self, op: Op<'_>, now: DateTime<Utc>) -> Result<Prepared, BuildError> {
        let method = Self::method_for(op)?;
        if let Op::Create(p) = op {
            if p.scene == Scene::Barcode && p.auth_code.as_deref().unwrap_or("").is_empty() {
                return Err(BuildError::Invalid(
                    "barcode payments need auth_code".into(),
                ));
            }
        }
        let with_notify = matches!(op, Op::Create(_));
        let params = self.signed_params(method, &Self::biz_for(op), now, with_notify);
        let local = |action| {
            Ok(Prepared::Local(Outcome::Payment(PaymentReport {
                state: ChannelPayState::Waiting,
                channel_trade_no: None,
                amount: None,
                action: Some(action),
            })))
        };
        match method {
            // The app SDK sends the signed order string to Alipay itself.
            "alipay.trade.app.pay" => local(ClientAction::AppPay {
                order_string: params.encode_component(),
            }),
            // The browser opens the signed gateway URL.
            "alipay.trade.wap.pay" | "alipay.trade.page.pay" => local(ClientAction::Redirect {
                url: self.gateway_url(&params.encode(|_| true)),
            }),
            _ => {
                let query = params.encode(|k| tf::URL_PARAMS.contains(&k));
                let body = params.encode(|k| !tf::URL_PARAMS.contains(&k));
                let req = http::Request::post(self.gateway_url(&query))
                    .header(
                        http::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded;charset=utf-8",
                    )
                    .header(http::header::ACCEPT, "application/json")
                    .body(Bytes::from(body))
                    .map_err(|e| BuildError::Invalid(format!("gateway URL: {e}")))?;
                Ok(Prepared::Send(req))
            }
        }
    }

    fn parse(&self, op: Op<'_>, response: &RawResponse) -> Outcome {
        let Ok(method) = Self::method_for(op) else {
            return unknown("no gateway method for this operation");
        };
        match tf::verify_response(
            response.status,
            &response.body,
            method,
            &self.cfg.alipay_public_key,
        ) {
            Err(e) => unknown(&format!("response rejected: {e}")),
            Ok(v) if v.code == "10000" => Self::interpret_success(op, &v),
            Ok(v) => Self::interpret_error(op, &v),
        }
    }

    fn verify_notification(
        &self,
        n: &InboundNotification<'_>,
    ) -> Result<NotificationEvent, NotifyError> {
        let params = Params::decode(n.body);
        if !tf::verify_notification(&params, &self.cfg.alipay_public_key) {
            return Err(NotifyError::BadSignature);
        }
        if params.get("app_id") != Some(self.cfg.app_id.as_str()) {
            return Err(NotifyError::WrongAccount);
        }
        let field = |k: &str| {
            params
                .get(k)
                .ok_or_else(|| NotifyError::Malformed(format!("missing {k}")))
        };
        let out_trade_no = field("out_trade_no")?.to_string();
        let status = TradeStatus::parse(field("trade_status")?)
            .ok_or_else(|| NotifyError::Malformed("unknown trade_status".into()))?;
        let amount = yuan_to_fen(field("total_amount")?)
            .ok_or_else(|| NotifyError::Malformed("bad total_amount".into()))?;
        let state = match status {
            TradeStatus::WaitBuyerPay => ChannelPayState::Waiting,
            TradeStatus::TradeSuccess | TradeStatus::TradeFinished => ChannelPayState::Paid,
            TradeStatus::TradeClosed => ChannelPayState::Closed,
        };
        Ok(NotificationEvent::Payment {
            out_trade_no,
            report: PaymentReport {
                state,
                channel_trade_no: params.get("trade_no").map(str::to_string),
                amount: Some(Fen(amount)),
                action: None,
            },
        })
    }

    fn notify_reply(&self, accepted: bool) -> NotifyReply {
        // Alipay stops retrying only on the exact body `success`.
        NotifyReply {
            status: if accepted { 200 } else { 400 },
            content_type: "text/plain; charset=utf-8",
            body: Bytes::from_static(if accepted { b"success" } else { b"fail" }),
        }
    }
}
