//! The gateway's envelope: a request's parameters, the signature and argument checks every
//! method passes first, and signed answers.

use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{json, Map, Value};

use super::handlers::GwError;
use super::Gateway;
use crate::channels::alipay::signing::{self, Params};
use crate::channels::alipay::transformers as tf;
use crate::sandbox::kit::spoil_at;
use crate::sandbox::GatewayRequest;

impl Gateway {
    /// Verifies the request as the gateway does; returns the method and business content.
    pub(super) fn authenticate(
        &self,
        params: &Params,
    ) -> Result<(String, Map<String, Value>), GwError> {
        if params.has_duplicate_keys() {
            return Err((
                "40002",
                "Invalid Arguments",
                "isv.invalid-parameter".into(),
                "a parameter is repeated".into(),
            ));
        }
        let missing = |what: &str| {
            (
                "40001",
                "Missing Required Arguments",
                format!("isv.missing-{what}"),
                format!("missing {what}"),
            )
        };
        let method = params
            .get("method")
            .ok_or_else(|| missing("method"))?
            .to_string();
        let app_id = params.get("app_id").ok_or_else(|| missing("app-id"))?;
        let sign = params.get("sign").ok_or_else(|| missing("signature"))?;
        params
            .get("sign_type")
            .ok_or_else(|| missing("signature-type"))?;
        params
            .get("timestamp")
            .ok_or_else(|| missing("timestamp"))?;
        params.get("version").ok_or_else(|| missing("version"))?;
        let invalid = |sub: &str, msg: String| ("40002", "Invalid Arguments", sub.to_string(), msg);
        if app_id != self.app_id {
            return Err(invalid("isv.invalid-app-id", "unknown app_id".into()));
        }
        if params.get("sign_type") != Some(signing::SIGN_TYPE) {
            return Err(invalid(
                "isv.invalid-signature-type",
                "only RSA2 is accepted".into(),
            ));
        }
        let content = signing::sign_content(params.iter(), &[]);
        if !self
            .merchant_key
            .verify_sha256_b64(content.as_bytes(), sign)
        {
            let shown = content.replace('&', "&amp;");
            return Err(invalid("isv.invalid-signature", format!("验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配，网关生成的验签字符串为：{shown}")));
        }
        let sent = params.get("timestamp").and_then(tf::parse_china_timestamp);
        match sent {
            Some(t) if (Utc::now() - t).num_minutes().abs() <= 15 => {}
            _ => {
                return Err(invalid(
                    "isv.invalid-timestamp",
                    "timestamp is missing, malformed or more than 15 minutes off".into(),
                ))
            }
        }
        let biz = match params.get("biz_content") {
            None => Map::new(),
            Some(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(m)) => m,
                _ => {
                    return Err(invalid(
                        "isv.invalid-biz-content",
                        "biz_content is not a JSON object".into(),
                    ))
                }
            },
        };
        Ok((method, biz))
    }

    /// The signed answer (`tamper`: under a signature that does not match it).
    pub(super) fn respond(&self, method: &str, obj: &Map<String, Value>, tamper: bool) -> Response {
        // Alipay escapes `/` in its JSON; keep that so clients must verify the raw bytes.
        let text = Value::Object(obj.clone()).to_string().replace('/', "\\/");
        let key = if method.is_empty() {
            "error_response".to_string()
        } else {
            signing::response_key(method)
        };
        let mut body = signing::sign_response(&key, &text, &self.platform_key);
        if tamper {
            if let Some(i) = body.rfind("\"sign\":\"") {
                spoil_at(&mut body, i + 8);
            }
        }
        (
            [(http::header::CONTENT_TYPE, "application/json;charset=utf-8")],
            body,
        )
            .into_response()
    }

    pub(super) fn error_obj((code, msg, sub_code, sub_msg): GwError) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("code".into(), json!(code));
        m.insert("msg".into(), json!(msg));
        m.insert("sub_code".into(), json!(sub_code));
        m.insert("sub_msg".into(), json!(sub_msg));
        m
    }
}

/// Methods a browser or app SDK opens (the cashier), answered with a page, not JSON.
pub(super) fn is_cashier(method: &str) -> bool {
    matches!(
        method,
        "alipay.trade.app.pay" | "alipay.trade.wap.pay" | "alipay.trade.page.pay"
    )
}

/// The request's parameters: the query string's and the form body's, merged.
pub(super) fn params(req: &GatewayRequest) -> Params {
    let mut params = Params::decode(req.uri.query().unwrap_or_default().as_bytes());
    params.0.extend(Params::decode(&req.body).0);
    params
}
