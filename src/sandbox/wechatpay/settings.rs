//! A WeChat Pay channel of routes.yaml, as the sandbox reads and rewrites it.

use serde_saphyr::Spanned;

use crate::channels::wechatpay::settings::WechatpaySettings;
use crate::config::KeyRef;
use crate::sandbox::rewrite::{Inline, SimSettings};
use crate::sandbox::{Credentials, SimChannel};

impl SimSettings for WechatpaySettings {
    fn merchant_key(&self) -> Option<&Spanned<KeyRef>> {
        self.merchant_private_key.as_ref()
    }

    fn merchant_key_mut(&mut self) -> &mut Option<Spanned<KeyRef>> {
        &mut self.merchant_private_key
    }

    fn describe(&self, c: &mut SimChannel) {
        c.app_id = self.app_id.clone().unwrap_or_default();
        c.mchid = self.mchid.clone().unwrap_or_default();
        c.merchant_serial = self.merchant_serial_no.clone().unwrap_or_default();
    }

    /// The platform public key and its id replace the platform certificates.
    fn point_at(&mut self, creds: &Credentials, inline: &Inline) {
        inline.set(
            &mut self.wechatpay_public_key,
            creds.platform_public_key.to_pem(),
        );
        self.wechatpay_public_key_id = creds.platform_key_id.clone();
        self.platform_certificates = None;
        if let Some(k) = &creds.apiv3_key {
            inline.set(&mut self.apiv3_key, k.expose_text());
        }
    }
}
