//! An Alipay channel of routes.yaml, as the sandbox reads and rewrites it.

use serde_saphyr::Spanned;

use crate::channels::alipay::settings::AlipaySettings;
use crate::config::KeyRef;
use crate::sandbox::rewrite::{Inline, SimSettings};
use crate::sandbox::{Credentials, SimChannel};

impl SimSettings for AlipaySettings {
    fn merchant_key(&self) -> Option<&Spanned<KeyRef>> {
        self.app_private_key.as_ref()
    }

    fn merchant_key_mut(&mut self) -> &mut Option<Spanned<KeyRef>> {
        &mut self.app_private_key
    }

    fn describe(&self, c: &mut SimChannel) {
        c.app_id = self.app_id.clone().unwrap_or_default();
    }

    fn point_at(&mut self, creds: &Credentials, inline: &Inline) {
        inline.set(
            &mut self.alipay_public_key,
            creds.platform_public_key.to_pem(),
        );
    }
}
