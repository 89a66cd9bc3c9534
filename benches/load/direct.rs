//! Requests straight to the simulator, pre-signed with payroute's own Alipay adapter: the
//! latency floor that payroute's latency is compared with.

use std::sync::Arc;

use anyhow::{anyhow, bail};

use payroute::channels::alipay::{Alipay, AlipayConfig};
use payroute::channels::{Channel as _, Op, PaymentIntent, Prepared};
use payroute::crypto::{PrivateKey, PublicKey};
use payroute::domain::{PayMethod, Scene};

use crate::client::{MakeReq, Req};
use crate::processes::{Setup, APP_ID, CHANNEL};

/// A precreate the simulator accepted (Alipay's success code in the body).
pub fn simulator_ok(status: u16, body: &[u8]) -> bool {
    const SUCCESS: &[u8] = b"\"code\":\"10000\"";
    status == 200 && body.windows(SUCCESS.len()).any(|w| w == SUCCESS)
}

/// `n` precreate requests signed by payroute's own Alipay adapter, as payroute would send them.
pub fn presigned_requests(setup: &Setup, run: &str, n: u64) -> anyhow::Result<MakeReq> {
    let adapter = Alipay::new(AlipayConfig {
        name: CHANNEL.into(),
        app_id: APP_ID.into(),
        gateway: setup.endpoint.clone(),
        app_private_key: Arc::new(PrivateKey::from_file(&setup.app_private)?),
        alipay_public_key: PublicKey::from_file(&setup.platform_public)?,
        notify_url: Some(format!("http://{}/notify/{CHANNEL}", setup.notify)),
        return_url: None,
        scenes: vec![Scene::Qr],
    });
    let mut reqs = Vec::new();
    for i in 0..n {
        let intent = PaymentIntent {
            out_trade_no: format!("B{run}S{i:09}"),
            amount: payroute::money::Fen(1000 + (i % 9000)),
            method: PayMethod::Alipay,
            scene: Scene::Qr,
            subject: "Bench order".into(),
            description: None,
            auth_code: None,
            payer_id: None,
            client_ip: None,
            expires_at: None,
            split: false,
        };
        let Prepared::Send(req) = adapter.build(Op::Create(&intent), chrono::Utc::now())? else {
            bail!("the Alipay adapter did not prepare a gateway call for a QR payment");
        };
        let target = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .ok_or_else(|| anyhow!("gateway URL without a path"))?;
        reqs.push(Req {
            method: http::Method::POST,
            target,
            content_type: "application/x-www-form-urlencoded;charset=utf-8",
            body: req.into_body(),
        });
    }
    let reqs = Arc::new(reqs);
    Ok(Arc::new(move |i| {
        // The open loop never asks for more than `n`; the modulo only keeps this total.
        reqs[usize::try_from(i).unwrap_or(0) % reqs.len()].clone()
    }))
}
