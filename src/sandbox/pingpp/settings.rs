//! A Ping++ channel of routes.yaml, as the sandbox reads and rewrites it.

use serde_saphyr::Spanned;

use crate::channels::pingpp::settings::PingppSettings;
use crate::config::KeyRef;
use crate::sandbox::rewrite::{Inline, SimSettings};
use crate::sandbox::{Credentials, SimChannel};

impl SimSettings for PingppSettings {
    fn merchant_key(&self) -> Option<&Spanned<KeyRef>> {
        self.merchant_private_key.as_ref()
    }

    fn merchant_key_mut(&mut self) -> &mut Option<Spanned<KeyRef>> {
        &mut self.merchant_private_key
    }

    fn describe(&self, c: &mut SimChannel) {
        c.app_id = self.app_id.clone().unwrap_or_default();
    }

    /// A configured secret key is kept: the simulator accepts the merchant's own.
    fn secret_key(&self) -> Option<&KeyRef> {
        self.secret_key.as_ref().map(|k| &k.value)
    }

    fn point_at(&mut self, creds: &Credentials, inline: &Inline) {
        inline.set(
            &mut self.pingpp_public_key,
            creds.platform_public_key.to_pem(),
        );
        if let Some(k) = &creds.secret_key {
            inline.set(&mut self.secret_key, k.clone());
        }
    }
}
