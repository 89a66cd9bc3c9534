//! The Alipay channel (OpenAPI 2.0 gateway, RSA2). Builds signed requests, verifies responses
//! and notifications. Royalty (分账): receivers are bound with `royalty.relation.bind`, splits
//! are asynchronous `order.settle` calls read back with `order.settle.query`, and split money
//! returns to the buyer with a refund (`refund_royalty_parameters`). The typed bodies of each
//! operation live in `alipay/transformers.rs`, signing in `alipay/signing.rs`, the error table
//! in `alipay/errors.rs`, statements (the download address and reading the file) in
//! `alipay/bill.rs`.

pub mod bill;
pub mod errors;
pub mod settings;
pub mod signing;
#[cfg(test)]
mod tests;
pub mod transformers;

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use self::errors::{BusinessResult, Disposition};
use self::signing::{Params, VerifiedResponse};
use self::transformers::{
    self as tf, BindResult, CancelResponse, CreateBiz, Flag, OperationType, PayResponse,
    PrecreateResponse, QueryResponse, RefundQueryResponse, RefundResponse, RefundStatus,
    RelationBindResponse, RoyaltyState, SettleQueryResponse, SettleResponse, TradeNotification,
};
use super::wire::Known;
use super::{
    BuildError, Channel, ChannelPayState, ChannelRefundState, ChannelSplitState,
    InboundNotification, NotificationEvent, NotifyError, NotifyReply, Op, Outcome, PaymentIntent,
    PaymentReport, Prepared, RawResponse, RefundIntent, RefundReport, ShareReport, ShareState,
    SplitIntent, SplitReport,
};
use crate::bills::{BillError, BillLocation, Lines, StatementFile, StatementFormat};
use crate::crypto::{PrivateKey, PublicKey};
use crate::domain::{ClientAction, PayMethod, ReceiverType, Scene};
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

    pub(crate) fn method_for(op: Op<'_>) -> Result<&'static str, BuildError> {
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
            Op::BindReceiver { .. } => "alipay.trade.royalty.relation.bind",
            Op::Split(_) => "alipay.trade.order.settle",
            Op::SplitQuery(_) => "alipay.trade.order.settle.query",
            Op::BillQuery { .. } => bill::METHOD,
            // A finish without shares is not confirmed for Alipay (a settle takes at least one
            // share), and split money comes back with a refund (`returns_with_refund`).
            _ => return Err(op.unsupported("Alipay")),
        })
    }

    /// The signed common + business parameters of one call.
    fn signed_params(
        &self,
        method: &str,
        biz_content: String,
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
        p.push("sign_type", signing::SIGN_TYPE);
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
        p.push("biz_content", biz_content);
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

    fn create_biz(p: &PaymentIntent) -> CreateBiz<'_> {
        let barcode = p.scene == Scene::Barcode;
        CreateBiz {
            out_trade_no: &p.out_trade_no,
            total_amount: p.amount.to_yuan(),
            subject: &p.subject,
            body: p.description.as_deref(),
            product_code: p.scene.into(),
            scene: barcode.then_some(tf::CodeScene::BarCode),
            auth_code: barcode.then(|| p.auth_code.as_deref().unwrap_or_default()),
            time_expire: p.expires_at.map(tf::china_timestamp),
            extend_params: p.split.then_some(tf::ExtendParams {
                royalty_freeze: "true",
            }),
        }
    }

    fn refund_biz(r: &RefundIntent) -> Result<tf::RefundBiz<'_>, BuildError> {
        let returns = r
            .returns
            .iter()
            .map(|ret| {
                Ok(tf::RefundRoyaltyParameter {
                    royalty_type: tf::RoyaltyType::Transfer,
                    trans_out_type: account_type(ret.receiver_type)?,
                    trans_out: &ret.account,
                    amount: ret.amount.to_yuan(),
                })
            })
            .collect::<Result<_, BuildError>>()?;
        Ok(tf::RefundBiz {
            out_trade_no: &r.out_trade_no,
            refund_amount: r.amount.to_yuan(),
            out_request_no: &r.out_refund_no,
            refund_reason: r.reason.as_deref().unwrap_or_default(),
            refund_royalty_parameters: returns,
        })
    }

    fn settle_biz(s: &SplitIntent) -> Result<tf::SettleBiz<'_>, BuildError> {
        if s.shares.is_empty() {
            return Err(BuildError::Invalid(
                "an Alipay settle needs at least one share".into(),
            ));
        }
        let shares = s
            .shares
            .iter()
            .map(|share| {
                Ok(tf::RoyaltyParameter {
                    royalty_type: tf::RoyaltyType::Transfer,
                    trans_in_type: account_type(share.receiver_type)?,
                    trans_in: &share.account,
                    amount: share.amount.to_yuan(),
                    desc: &share.description,
                })
            })
            .collect::<Result<_, BuildError>>()?;
        Ok(tf::SettleBiz {
            out_request_no: &s.out_split_no,
            trade_no: trade_no_of(s)?,
            royalty_parameters: shares,
            extend_params: tf::SettleExtendParams {
                royalty_finish: if s.finish { "true" } else { "false" },
            },
            royalty_mode: tf::RoyaltyMode::Async,
        })
    }

    /// The `biz_content` text of one call (what the signature covers).
    fn biz_content(op: Op<'_>) -> Result<String, BuildError> {
        let text = match op {
            Op::Create(p) => serde_json::to_string(&Self::create_biz(p)),
            Op::Query { out_trade_no, .. }
            | Op::Close { out_trade_no, .. }
            | Op::Cancel { out_trade_no, .. } => {
                serde_json::to_string(&tf::TradeBiz { out_trade_no })
            }
            Op::Refund(r) => serde_json::to_string(&Self::refund_biz(r)?),
            Op::RefundQuery(r) => serde_json::to_string(&tf::RefundQueryBiz {
                out_trade_no: &r.out_trade_no,
                out_request_no: &r.out_refund_no,
            }),
            Op::BindReceiver { receiver, .. } => serde_json::to_string(&tf::RelationBindBiz {
                out_request_no: &receiver.request_no,
                receiver_list: vec![tf::RoyaltyReceiver {
                    account_type: account_type(receiver.receiver_type)?,
                    account: &receiver.account,
                    name: receiver.name.as_deref(),
                }],
            }),
            Op::Split(s) => serde_json::to_string(&Self::settle_biz(s)?),
            Op::SplitQuery(s) => serde_json::to_string(&tf::SettleQueryBiz {
                out_request_no: &s.out_split_no,
                trade_no: trade_no_of(s)?,
            }),
            Op::BillQuery { date } => serde_json::to_string(&bill::BillQueryBiz::trade(date)),
            _ => return Err(op.unsupported("Alipay")),
        };
        text.map_err(|e| BuildError::Invalid(format!("biz_content: {e}")))
    }

    fn interpret_success(op: Op<'_>, v: &VerifiedResponse<'_>) -> Outcome {
        match op {
            Op::Create(p) if p.scene == Scene::Barcode => {
                let Some(r) = v.fields::<PayResponse>() else {
                    return malformed("pay");
                };
                Outcome::Payment(PaymentReport {
                    state: ChannelPayState::Paid,
                    amount: r.total_amount,
                    channel_trade_no: r.trade_no,
                    action: None,
                })
            }
            Op::Create(_) => {
                let Some(r) = v.fields::<PrecreateResponse>() else {
                    return malformed("precreate");
                };
                match r.qr_code {
                    Some(code_url) => Outcome::Payment(PaymentReport {
                        state: ChannelPayState::Waiting,
                        channel_trade_no: r.trade_no,
                        amount: None,
                        action: Some(ClientAction::QrCode { code_url }),
                    }),
                    None => unknown("precreate succeeded without qr_code"),
                }
            }
            Op::Query { .. } => {
                let Some(r) = v.fields::<QueryResponse>() else {
                    return malformed("query");
                };
                let Some(status) = r.trade_status.as_ref().and_then(Known::known) else {
                    return unknown("query answer without a known trade_status");
                };
                Outcome::Payment(PaymentReport {
                    state: status.into(),
                    amount: r.total_amount,
                    channel_trade_no: r.trade_no,
                    action: None,
                })
            }
            Op::Close { .. } => Outcome::Closed,
            Op::Cancel { .. } => {
                let Some(r) = v.fields::<CancelResponse>() else {
                    return malformed("cancel");
                };
                match r.retry_flag {
                    Some(Known::Known(Flag::Y)) => unknown("cancel asks to be retried"),
                    None | Some(Known::Known(Flag::N)) => Outcome::Closed,
                    Some(Known::Other(flag)) => {
                        unknown(&format!("cancel answered an unfamiliar retry_flag {flag}"))
                    }
                }
            }
            Op::Refund(_) => {
                let Some(r) = v.fields::<RefundResponse>() else {
                    return malformed("refund");
                };
                Outcome::Refund(RefundReport {
                    // code 10000 only means accepted; money moved iff fund_change = Y.
                    state: match r.fund_change {
                        Some(Known::Known(Flag::Y)) => ChannelRefundState::Succeeded,
                        _ => ChannelRefundState::Processing,
                    },
                    channel_refund_no: r.trade_no,
                })
            }
            Op::RefundQuery(_) => {
                let Some(r) = v.fields::<RefundQueryResponse>() else {
                    return malformed("refund query");
                };
                let state = match r.refund_status {
                    Some(Known::Known(RefundStatus::RefundSuccess)) => {
                        ChannelRefundState::Succeeded
                    }
                    // An absent refund_status means the refund was not received (or failed).
                    None => ChannelRefundState::NotFound,
                    Some(Known::Other(status)) => {
                        return unknown(&format!("refund query answered refund_status {status}"))
                    }
                };
                Outcome::Refund(RefundReport {
                    state,
                    channel_refund_no: r.trade_no,
                })
            }
            Op::BindReceiver { .. } => {
                let Some(r) = v.fields::<RelationBindResponse>() else {
                    return malformed("relation bind");
                };
                match r.result_code {
                    Some(Known::Known(BindResult::Success)) => Outcome::Bound,
                    Some(Known::Known(BindResult::Fail)) => Outcome::Declined {
                        code: "FAIL".into(),
                        message: "the royalty relation was not bound".into(),
                    },
                    Some(Known::Other(code)) => {
                        unknown(&format!("relation bind answered result_code {code}"))
                    }
                    None => unknown("relation bind answer without result_code"),
                }
            }
            Op::Split(s) => {
                let Some(r) = v.fields::<SettleResponse>() else {
                    return malformed("settle");
                };
                match r.settle_no {
                    // Accepted: the shares' results come by query (`royalty_mode` async).
                    Some(settle_no) => Outcome::Split(SplitReport {
                        state: ChannelSplitState::Processing,
                        channel_split_no: Some(settle_no),
                        shares: Vec::new(),
                    }),
                    None if s.channel_split_no.is_some() => Outcome::Split(SplitReport {
                        state: ChannelSplitState::Processing,
                        channel_split_no: s.channel_split_no.clone(),
                        shares: Vec::new(),
                    }),
                    None => unknown("settle succeeded without settle_no"),
                }
            }
            Op::SplitQuery(s) => match v.fields::<SettleQueryResponse>() {
                Some(r) => split_report(s, r),
                None => malformed("settle query"),
            },
            Op::BillQuery { .. } => match v.fields::<bill::BillQueryResponse>() {
                Some(r) => bill_location(r),
                None => malformed("bill download URL query"),
            },
            _ => unknown("answer to an operation this adapter does not send"),
        }
    }

    fn interpret_error(op: Op<'_>, v: &VerifiedResponse) -> Outcome {
        let code = v.sub_code.clone().unwrap_or_else(|| v.code.clone());
        let message = v.sub_msg.clone().unwrap_or_else(|| v.msg.clone());
        match errors::disposition(&v.code, v.sub_code.as_deref(), op.kind()) {
            Disposition::Failed => Outcome::Declined { code, message },
            Disposition::NotAccepted => Outcome::NotAccepted { code, message },
            Disposition::Unknown => unknown(&format!("{code}: {message}")),
            Disposition::Business(BusinessResult::BuyerPaying) => Outcome::Payment(PaymentReport {
                state: ChannelPayState::Waiting,
                channel_trade_no: v.fields::<PayResponse>().and_then(|r| r.trade_no),
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
                Op::SplitQuery(_) => Outcome::Split(SplitReport {
                    state: ChannelSplitState::NotFound,
                    channel_split_no: None,
                    shares: Vec::new(),
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
            Disposition::Business(BusinessResult::BillNotReady) => Outcome::BillNotReady,
        }
    }
}

/// Alipay's account type of a receiver; other types are a local mistake (routing only sends
/// split payments here with the receiver types of `receiver_types`).
fn account_type(t: ReceiverType) -> Result<tf::AccountType, BuildError> {
    tf::AccountType::of(t)
        .ok_or_else(|| BuildError::Invalid(format!("Alipay takes no {} receivers", t.as_str())))
}

/// The paid trade's Alipay number, which settles and their queries require.
fn trade_no_of(s: &SplitIntent) -> Result<&str, BuildError> {
    s.channel_trade_no
        .as_deref()
        .ok_or_else(|| BuildError::Invalid("a settle needs the trade's trade_no".into()))
}

/// A settle query's details as a split report: each transfer is a share; the split is
/// finished when every share is final. An unfamiliar state, operation or amount makes the
/// whole answer unknown (never a definite result from an answer not understood).
fn split_report(s: &SplitIntent, r: SettleQueryResponse) -> Outcome {
    if r.out_request_no
        .as_deref()
        .is_some_and(|no| no != s.out_split_no)
    {
        return unknown("settle query answered about another out_request_no");
    }
    let mut shares = Vec::with_capacity(r.royalty_detail_list.len());
    for d in r.royalty_detail_list {
        match d.operation_type {
            None | Some(Known::Known(OperationType::Transfer)) => {}
            Some(Known::Other(t)) => {
                return unknown(&format!("settle query answered operation_type {t}"))
            }
        }
        let state = match d.state {
            Some(Known::Known(RoyaltyState::Success)) => ShareState::Succeeded,
            Some(Known::Known(RoyaltyState::Fail)) => ShareState::Failed,
            Some(Known::Known(RoyaltyState::Processing)) => ShareState::Pending,
            Some(Known::Other(state)) => {
                return unknown(&format!("settle query answered state {state}"))
            }
            None => return unknown("settle query detail without state"),
        };
        let (Some(account), Some(amount)) =
            (d.trans_in, d.amount.as_deref().and_then(Fen::from_yuan))
        else {
            return unknown("settle query detail without trans_in or a readable amount");
        };
        shares.push(ShareReport {
            account,
            amount,
            state,
            fail_reason: (state == ShareState::Failed).then(|| {
                d.error_code
                    .or(d.error_desc)
                    .unwrap_or_else(|| "FAIL".into())
            }),
            detail_id: d.detail_id,
        });
    }
    let done = !shares.is_empty() && shares.iter().all(|x| x.state != ShareState::Pending);
    Outcome::Split(SplitReport {
        state: if done {
            ChannelSplitState::Finished
        } else {
            ChannelSplitState::Processing
        },
        channel_split_no: r.settle_no.or_else(|| s.channel_split_no.clone()),
        shares,
    })
}

/// Where the statement is: an `http(s)` address, else the answer is not understood.
fn bill_location(r: bill::BillQueryResponse) -> Outcome {
    let Some(url) = r.bill_download_url.filter(|u| !u.is_empty()) else {
        return unknown("bill query succeeded without bill_download_url");
    };
    let readable = url
        .parse::<http::Uri>()
        .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
    if !readable {
        return unknown("bill query answered a bill_download_url that is not an http(s) address");
    }
    Outcome::Bill(BillLocation {
        url,
        sha1: None,
        format: StatementFormat::Zip,
    })
}

fn unknown(reason: &str) -> Outcome {
    Outcome::Unknown {
        reason: reason.to_string(),
    }
}

/// A verified answer whose fields do not have the types the operation expects.
fn malformed(operation: &str) -> Outcome {
    unknown(&format!("{operation} answer has malformed fields"))
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

    fn can_split(&self) -> bool {
        true
    }

    fn receiver_types(&self) -> &'static [ReceiverType] {
        &[ReceiverType::User, ReceiverType::LoginName]
    }

    /// Split money comes back to the buyer with a refund (`refund_royalty_parameters`).
    fn returns_with_refund(&self) -> bool {
        true
    }

    /// A plain GET: the address carries its own short-lived token, and is not signed.
    fn download_request(
        &self,
        location: &BillLocation,
        _now: DateTime<Utc>,
    ) -> Result<http::Request<Bytes>, BuildError> {
        if location.format != StatementFormat::Zip {
            return Err(BuildError::Invalid(
                "Alipay statements are ZIP files".into(),
            ));
        }
        http::Request::get(location.url.as_str())
            .body(Bytes::new())
            .map_err(|e| BuildError::Invalid(format!("bill_download_url: {e}")))
    }

    fn statement_lines(&self, file: StatementFile) -> Result<Lines, BillError> {
        bill::read_statement(file)
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
        let params = self.signed_params(method, Self::biz_content(op)?, now, with_notify);
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
                let query = params.encode(|k| signing::URL_PARAMS.contains(&k));
                let body = params.encode(|k| !signing::URL_PARAMS.contains(&k));
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
        match signing::verify_response(
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
        if !signing::verify_notification(&params, &self.cfg.alipay_public_key) {
            return Err(NotifyError::BadSignature);
        }
        let note = TradeNotification::from_params(&params)
            .ok_or_else(|| NotifyError::Malformed("unreadable parameters".into()))?;
        if note.app_id.as_deref() != Some(self.cfg.app_id.as_str()) {
            return Err(NotifyError::WrongAccount);
        }
        let missing = |k: &str| NotifyError::Malformed(format!("missing {k}"));
        let out_trade_no = note.out_trade_no.ok_or_else(|| missing("out_trade_no"))?;
        let status = note
            .trade_status
            .ok_or_else(|| missing("trade_status"))?
            .known()
            .ok_or_else(|| NotifyError::Malformed("unknown trade_status".into()))?;
        let total_amount = note.total_amount.ok_or_else(|| missing("total_amount"))?;
        let amount = Fen::from_yuan(&total_amount)
            .ok_or_else(|| NotifyError::Malformed("bad total_amount".into()))?;
        Ok(NotificationEvent::Payment {
            out_trade_no,
            report: PaymentReport {
                state: status.into(),
                channel_trade_no: note.trade_no,
                amount: Some(amount),
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
