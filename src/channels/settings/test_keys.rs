//! The keys payroute's sandbox and the protocol test vectors publish. They protect nothing, so a
//! channel that reaches a real gateway must not use one: `serve` and `check` refuse it.
//!
//! Keys are known by fingerprint only: an RSA key (private or public half, any encoding, or a
//! certificate holding it) by [`PublicKey::fingerprint`]; a symmetric secret (WeChat Pay APIv3 key,
//! Ping++ secret key) by the SHA-256 of its text. A test recomputes the table from the files.

use crate::crypto::{sha256_hex, PrivateKey, PublicKey, Secret, SymmetricKey};

/// A loaded key's fingerprint.
pub trait Fingerprint {
    fn fingerprint(&self) -> String;
}

impl Fingerprint for PrivateKey {
    fn fingerprint(&self) -> String {
        self.public_key().fingerprint()
    }
}

impl Fingerprint for PublicKey {
    fn fingerprint(&self) -> String {
        PublicKey::fingerprint(self)
    }
}

impl Fingerprint for SymmetricKey {
    fn fingerprint(&self) -> String {
        sha256_hex(self.expose_text().as_bytes())
    }
}

impl Fingerprint for Secret<String> {
    fn fingerprint(&self) -> String {
        sha256_hex(self.expose().trim().as_bytes())
    }
}

impl Fingerprint for (String, PublicKey) {
    fn fingerprint(&self) -> String {
        self.1.fingerprint()
    }
}

/// Where a fingerprint's key is published, if it is.
pub(crate) fn published(fingerprint: &str) -> Option<&'static str> {
    PUBLISHED
        .iter()
        .find(|(fp, _)| *fp == fingerprint)
        .map(|(_, source)| *source)
}

/// (fingerprint, where the key is published).
#[rustfmt::skip]
const PUBLISHED: &[(&str, &str)] = &[
    ("02c7d65ad4fefb5d38fbb9dae1f6df916114b2bbd3746cb4adc18176875509a9", "sandbox/keys/pingpp_secret.key"),
    ("192e87490c9630dd2139349a498a881e5ade7311cec91b320a30413383c31aa0", "testvectors/keys/pingpp_sdk_example_webhook_public.pem"),
    ("1bc68e35736b26f192e7e884cbba2bffa867bbf5b0a85be987b81aba6e72bd6b", "testvectors/wechatpay.json constants.apiv3_key"),
    ("233b7bed06203a2e2767b051bcb4a5a6e00167e05dc39476f825bb9d3cad6db1", "sandbox/keys/pingpp_public.pem"),
    ("393e80a48d5ea459c3a52855d1f28c3ced04273b832d7a37903109a9b704f363", "sandbox/keys/alipay_app_private.pem"),
    ("4296139b925da16c0f4de366f946558b7055c55ca92f5689bc31a85e1a603345", "sandbox/keys/wechat_merchant_private.pem"),
    ("54826039156febbcf0ce9347c5e63e55a47b5e8df7d1b050faa18a58e9ae1845", "testvectors/keys/wechat_platform_cert.pem"),
    ("56a68022cd0de046b7da59cd2a739011391700efebc0a6d7e4d32ec4e0e57657", "testvectors/keys/alipay_cert/alipayRootCert.crt"),
    ("65a9aafe97f7da5a1c1335e0c2f5b2407b68713d04ccebeeee3d0921fea66104", "sandbox/keys/pingpp_merchant_private.pem"),
    ("76d5fa2792f18d344ad9a9f450bc9f59d89ba8b6d8efe6a8381257a5356a87ba", "sandbox/keys/alipay_public.pem"),
    ("93d7305911692ff91056302e1ebc1c2e5e0797db823bef91ee83d566c743e2b8", "sandbox/keys/wechatpay_public.pem"),
    ("9a69374d0175b7515388498aa01533a02d53bf8d90a353566ee6cc28c79d69ab", "testvectors/keys/alipay_cert/inter.crt"),
    ("b4961cb57f597b2498c1fda1bf1cf9052fbd594b636941bbc0df94ec390cd585", "testvectors/keys/alipay_cert/alipayCertPublicKey_RSA2.crt"),
    ("cf91892f5949e053fb8a6271f12536f5b7e3245162d2569facf8c717ad5ad728", "testvectors/keys/wechat_merchant_cert.pem"),
    ("d25578508b88618afe4775d0c4997849aab7983d684c531620d70bad5cfe5315", "sandbox/keys/wechat_apiv3.key"),
    ("d69a90779e5ea3aa857acb91cf0ed8893c819339a0f186e212b7a5ed62a921d0", "testvectors/keys/pingpp_platform_private_pkcs8.pem"),
    ("db15368671abd2b5193a9bff9032cbf3011f549090fa7d7a42a5bd72583beff5", "testvectors/keys/pingpp_merchant_private_pkcs1.pem"),
    ("e4913dc27553f664cde2dd23b8e647b7e2d751af4db625030ab1d1b5d7cc78cd", "testvectors/keys/alipay_app_private_pkcs1.b64"),
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;

    /// Fingerprint of every key in `dir` (private keys, public keys, certificates, secrets).
    fn fingerprints(dir: &Path, label: &str, out: &mut BTreeMap<String, String>) {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            let name = format!("{label}/{}", f.file_name().unwrap().to_string_lossy());
            if f.is_dir() {
                fingerprints(&f, &name, out);
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&f) else {
                continue;
            };
            let fp = PrivateKey::from_text(&text)
                .map(|k| Fingerprint::fingerprint(&k))
                .or_else(|_| PublicKey::from_text(&text).map(|k| k.fingerprint()))
                .or_else(|_| {
                    crate::crypto::certificate_serial_and_key(&text).map(|c| c.fingerprint())
                })
                .or_else(|_| SymmetricKey::from_text(&text).map(|k| k.fingerprint()))
                .ok()
                .or_else(|| {
                    crate::channels::pingpp::settings::secret_key(&text)
                        .ok()
                        .map(|k| k.fingerprint())
                });
            if let Some(fp) = fp {
                out.entry(fp).or_insert(name);
            }
        }
    }

    /// Every published key, computed from the files: the sandbox's (always) and the protocol
    /// test vectors' (when `../shared` is checked out next to the repository).
    fn from_files() -> (BTreeMap<String, String>, bool) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut out = BTreeMap::new();
        fingerprints(&root.join("sandbox/keys"), "sandbox/keys", &mut out);
        let vectors = root.join("../shared/protocols/testvectors");
        let present = vectors.join("keys").is_dir();
        if present {
            fingerprints(&vectors.join("keys"), "testvectors/keys", &mut out);
            let wechat: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(vectors.join("wechatpay.json")).unwrap(),
            )
            .unwrap();
            let key = wechat["constants"]["apiv3_key"]
                .as_str()
                .expect("constants.apiv3_key in wechatpay.json");
            let key = SymmetricKey::from_text(key).unwrap();
            out.entry(key.fingerprint())
                .or_insert("testvectors/wechatpay.json constants.apiv3_key".into());
        }
        (out, present)
    }

    #[test]
    fn the_table_holds_every_published_key() {
        let (files, all) = from_files();
        let table: BTreeMap<String, String> = PUBLISHED
            .iter()
            .map(|(fp, src)| (fp.to_string(), src.to_string()))
            .collect();
        let rendered: String = files
            .iter()
            .map(|(fp, src)| format!("    (\"{fp}\", \"{src}\"),\n"))
            .collect();
        for (fp, src) in &files {
            assert!(
                table.contains_key(fp),
                "{src} is missing from PUBLISHED; the table from the files:\n{rendered}"
            );
        }
        if all {
            assert_eq!(
                table.len(),
                files.len(),
                "stale entries; the table:\n{rendered}"
            );
        }
        assert!(files.len() >= 8, "{files:?}");
    }
}
