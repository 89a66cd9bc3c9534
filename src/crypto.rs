//! Key loading and RSA signatures.
//!
//! Signing and verification use `aws-lc-rs`: on the project's machines it signs RSA-2048 about
//! 2.2x faster than ring and 16x faster than the `rsa` crate, and RSA is most of payroute's CPU.
//! The `rsa` crate is used only off the payment path: generating sandbox keys, converting key
//! encodings, and RSA-OAEP encryption (WeChat Pay's encrypted fields).

use std::fmt;
use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, KeyPair as _, ParsedPublicKey, RsaKeyPair};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

/// Why a key could not be loaded. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
    #[error("not PEM and not base64 DER")]
    Encoding,
    #[error("not an RSA private key in PKCS#1 or PKCS#8 form")]
    NotPrivateKey,
    #[error("not an RSA public key in SubjectPublicKeyInfo or PKCS#1 form")]
    NotPublicKey,
    #[error("RSA key is {0} bits; RSA2 needs 2048 bits or more")]
    TooSmall(usize),
    #[error("not an X.509 certificate with an RSA public key")]
    NotCertificate,
    #[error("not a 32-byte (32 ASCII characters) APIv3 key")]
    BadSymmetricKey,
    #[error("text too long to encrypt with this key")]
    TooLong,
}

/// A value that must never be printed: `Debug` shows `[redacted]`.
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a secret value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }
    /// Borrows the secret; callers must not log what they get.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// An RSA private key used for SHA256withRSA (PKCS#1 v1.5) signatures.
pub struct PrivateKey {
    pair: Secret<RsaKeyPair>,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey([redacted])")
    }
}

/// An RSA public key: parsed once for verification, and kept as PKCS#1 `RSAPublicKey` DER for
/// its fingerprint and the other encodings.
#[derive(Clone)]
pub struct PublicKey {
    parsed: ParsedPublicKey,
    pkcs1_der: Vec<u8>,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({} bytes)", self.pkcs1_der.len())
    }
}

/// The DER bytes of a PEM document or of bare base64 text, with the PEM label if there was one.
fn decode_text(text: &str) -> Result<(Option<String>, Vec<u8>), KeyError> {
    let text = text.trim();
    let mut label = None;
    let mut body = String::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("-----BEGIN ") {
            label = Some(rest.trim_end_matches('-').trim().to_string());
        } else if line.starts_with("-----END ") {
            break;
        } else if !line.contains(':') {
            body.push_str(line);
        }
    }
    let der = B64
        .decode(body.as_bytes())
        .map_err(|_| KeyError::Encoding)?;
    if der.is_empty() {
        return Err(KeyError::Encoding);
    }
    Ok((label, der))
}

impl PrivateKey {
    /// Parses PEM (`RSA PRIVATE KEY` or `PRIVATE KEY`) or Alipay-style bare base64 (PKCS#1 or #8).
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let (_, der) = decode_text(text)?;
        Self::from_der(&der)
    }

    /// Parses PKCS#8 or PKCS#1 DER, whichever it is.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        let pair = RsaKeyPair::from_pkcs8(der)
            .or_else(|_| RsaKeyPair::from_der(der))
            .map_err(|_| KeyError::NotPrivateKey)?;
        let bits = pair.public_modulus_len() * 8;
        if bits < 2048 {
            return Err(KeyError::TooSmall(bits));
        }
        Ok(PrivateKey {
            pair: Secret::new(pair),
        })
    }

    /// Loads a key from a file (a Kubernetes Secret mount, typically).
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        Self::from_text(&read_key_file(path)?)
    }

    /// SHA256withRSA over `message`, base64 (standard alphabet, padded).
    pub fn sign_sha256_b64(&self, message: &[u8]) -> String {
        let pair = self.pair.expose();
        let mut sig = vec![0u8; pair.public_modulus_len()];
        // RSA PKCS#1 v1.5 signing is deterministic (aws-lc-rs ignores the RNG argument), and the
        // buffer has the exact modulus length.
        pair.sign(
            &signature::RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            message,
            &mut sig,
        )
        .expect("RSA signing with a correctly sized buffer");
        B64.encode(sig)
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_pkcs1(self.pair.expose().public_key().as_ref().to_vec())
            .expect("a key pair's own public key")
    }
}

impl PublicKey {
    /// Parses PEM (`PUBLIC KEY` or `RSA PUBLIC KEY`) or bare base64 of either DER form.
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let (_, der) = decode_text(text)?;
        Self::from_der(&der)
    }

    /// Parses SubjectPublicKeyInfo or PKCS#1 `RSAPublicKey` DER.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        use rsa::pkcs1::{DecodeRsaPublicKey, EncodeRsaPublicKey};
        use rsa::pkcs8::DecodePublicKey;
        let key = rsa::PublicKey::from_public_key_der(der)
            .or_else(|_| rsa::PublicKey::from_pkcs1_der(der))
            .map_err(|_| KeyError::NotPublicKey)?;
        // Named here: the verifier below refuses a short key without saying why.
        let bits = rsa::traits::PublicKeyParts::size(&key) * 8;
        if bits < 2048 {
            return Err(KeyError::TooSmall(bits));
        }
        let pkcs1 = key.to_pkcs1_der().map_err(|_| KeyError::NotPublicKey)?;
        Self::from_pkcs1(pkcs1.as_bytes().to_vec())
    }

    fn from_pkcs1(pkcs1_der: Vec<u8>) -> Result<Self, KeyError> {
        let parsed = ParsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &pkcs1_der)
            .map_err(|_| KeyError::NotPublicKey)?;
        Ok(PublicKey { parsed, pkcs1_der })
    }

    /// Loads a public key file.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        Self::from_text(&read_key_file(path)?)
    }

    /// Checks a base64 SHA256withRSA signature over `message`.
    pub fn verify_sha256_b64(&self, message: &[u8], signature_b64: &str) -> bool {
        let Ok(sig) = B64.decode(signature_b64.trim().as_bytes()) else {
            return false;
        };
        self.parsed.verify_sig(message, &sig).is_ok()
    }

    /// RSA-OAEP (SHA-1 and MGF1-SHA-1, empty label) encryption of `plaintext`, base64: how
    /// WeChat Pay wants sensitive fields (a profit-sharing receiver's `name`). Randomized, so
    /// two encryptions of the same text differ.
    pub fn encrypt_oaep_sha1_b64(&self, plaintext: &[u8]) -> Result<String, KeyError> {
        use rsa::pkcs1::DecodeRsaPublicKey;
        let key =
            rsa::PublicKey::from_pkcs1_der(&self.pkcs1_der).map_err(|_| KeyError::NotPublicKey)?;
        key.oaep_encrypt_with_rng::<sha1::Sha1, _>(&mut getrandom::SysRng, plaintext)
            .map(|c| B64.encode(c))
            .map_err(|_| KeyError::TooLong)
    }

    /// SHA-256 (hex) of the key's PKCS#1 `RSAPublicKey` DER: the same for every encoding of the
    /// key and of its private half; identifies a key without revealing it.
    pub fn fingerprint(&self) -> String {
        sha256_hex(&self.pkcs1_der)
    }

    /// PEM text (`PUBLIC KEY`, SubjectPublicKeyInfo) of this key.
    pub fn to_pem(&self) -> String {
        use rsa::pkcs1::DecodeRsaPublicKey;
        use rsa::pkcs8::{EncodePublicKey, LineEnding};
        let key = rsa::PublicKey::from_pkcs1_der(&self.pkcs1_der).expect("own PKCS#1 DER");
        key.to_public_key_pem(LineEnding::LF)
            .expect("SPKI encoding of a valid key")
    }
}

/// An X.509 certificate's serial number (upper-case hex, no leading zero bytes, as WeChat
/// Pay writes it) and its RSA public key.
pub fn certificate_serial_and_key(text: &str) -> Result<(String, PublicKey), KeyError> {
    use x509_cert::der::{Decode, Encode};
    let (_, der) = decode_text(text)?;
    let cert = x509_cert::Certificate::from_der(&der).map_err(|_| KeyError::NotCertificate)?;
    let tbs = cert.tbs_certificate();
    let serial_bytes = tbs.serial_number().as_bytes();
    let trimmed: &[u8] = match serial_bytes.iter().position(|b| *b != 0) {
        Some(i) => &serial_bytes[i..],
        None => &[0],
    };
    let spki = tbs
        .subject_public_key_info()
        .to_der()
        .map_err(|_| KeyError::NotCertificate)?;
    let key = PublicKey::from_der(&spki).map_err(|_| KeyError::NotCertificate)?;
    Ok((hex::encode_upper(trimmed), key))
}

/// A 32-byte symmetric key (WeChat Pay's APIv3 key), kept secret: its text, and the AES-256-GCM
/// key built from it once.
pub struct SymmetricKey {
    text: Secret<[u8; 32]>,
    aead: aws_lc_rs::aead::LessSafeKey,
}

impl fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SymmetricKey([redacted])")
    }
}

impl SymmetricKey {
    /// The APIv3 key is 32 ASCII characters used directly as the AES-256 key.
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let bytes: [u8; 32] = text
            .trim()
            .as_bytes()
            .try_into()
            .map_err(|_| KeyError::BadSymmetricKey)?;
        Self::from_bytes(bytes)
    }

    /// Loads the key from a file.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        Self::from_text(&read_key_file(path)?)
    }

    /// A random key of 32 alphanumeric characters (for the sandbox).
    pub fn generate() -> Self {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).expect("operating system RNG");
        let bytes = raw.map(|b| ALPHABET[usize::from(b) % ALPHABET.len()]);
        Self::from_bytes(bytes).expect("32 bytes make an AES-256 key")
    }

    fn from_bytes(bytes: [u8; 32]) -> Result<Self, KeyError> {
        use aws_lc_rs::aead::{LessSafeKey, UnboundKey, AES_256_GCM};
        let unbound =
            UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| KeyError::BadSymmetricKey)?;
        Ok(SymmetricKey {
            text: Secret::new(bytes),
            aead: LessSafeKey::new(unbound),
        })
    }

    /// AES-256-GCM decryption of `ciphertext ‖ tag` with a 12-byte nonce and associated data.
    pub fn open(&self, nonce: &[u8], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        use aws_lc_rs::aead::{Aad, Nonce};
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let plain = self
            .aead
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .ok()?;
        Some(plain.to_vec())
    }

    /// AES-256-GCM encryption; returns `ciphertext ‖ tag`.
    pub fn seal(&self, nonce: &[u8], aad: &[u8], plaintext: &[u8]) -> Option<Vec<u8>> {
        use aws_lc_rs::aead::{Aad, Nonce};
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = plaintext.to_vec();
        self.aead
            .seal_in_place_append_tag(nonce, Aad::from(aad), &mut buf)
            .ok()?;
        Some(buf)
    }

    /// The key's text, for handing to a simulator in the same process.
    pub fn expose_text(&self) -> String {
        String::from_utf8_lossy(self.text.expose()).into_owned()
    }
}

fn read_key_file(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// A freshly generated 2048-bit key pair, as PKCS#8 PEM text, for the sandbox.
pub fn generate_private_key_pem() -> Secret<String> {
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    let mut rng = getrandom::SysRng;
    let key = rsa::PrivateKey::new(&mut rng, 2048).expect("RSA key generation");
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .expect("PKCS#8 encoding of a fresh key");
    Secret::new(pem.to_string())
}

/// `n` random bytes from the operating system, hex-encoded.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).expect("operating system RNG");
    hex::encode(buf)
}

/// SHA-256 of `data`, hex-encoded.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_signs_and_verifies() {
        let pem = generate_private_key_pem();
        let key = PrivateKey::from_text(pem.expose()).unwrap();
        let sig = key.sign_sha256_b64(b"hello");
        let public = PublicKey::from_text(&key.public_key().to_pem()).unwrap();
        assert!(public.verify_sha256_b64(b"hello", &sig));
        assert!(!public.verify_sha256_b64(b"hellO", &sig));
        assert!(!public.verify_sha256_b64(b"hello", "not base64!"));
    }

    #[test]
    fn oaep_encryption_decrypts_with_the_private_half() {
        use rsa::pkcs8::DecodePrivateKey;
        let pem = generate_private_key_pem();
        let private = rsa::PrivateKey::from_pkcs8_pem(pem.expose()).unwrap();
        let public = PrivateKey::from_text(pem.expose()).unwrap().public_key();
        let a = public.encrypt_oaep_sha1_b64("张三".as_bytes()).unwrap();
        let b = public.encrypt_oaep_sha1_b64("张三".as_bytes()).unwrap();
        assert_ne!(a, b, "OAEP is randomized");
        let sealed = B64.decode(a).unwrap();
        assert_eq!(sealed.len(), 256);
        let plain = private.oaep_decrypt::<sha1::Sha1>(&sealed).unwrap();
        assert_eq!(plain, "张三".as_bytes());
        assert!(matches!(
            public.encrypt_oaep_sha1_b64(&[b'x'; 300]),
            Err(KeyError::TooLong)
        ));
    }

    #[test]
    fn secrets_do_not_print() {
        let pem = generate_private_key_pem();
        assert_eq!(format!("{pem:?}"), "[redacted]");
        let key = PrivateKey::from_text(pem.expose()).unwrap();
        assert!(!format!("{key:?}").contains("MII"));
    }

    #[test]
    fn garbage_is_rejected_with_a_reason() {
        assert!(matches!(
            PrivateKey::from_text("hello world"),
            Err(KeyError::Encoding)
        ));
        assert!(matches!(
            PrivateKey::from_text("aGVsbG8gd29ybGQ="),
            Err(KeyError::NotPrivateKey)
        ));
        assert!(matches!(
            PublicKey::from_text("aGVsbG8gd29ybGQ="),
            Err(KeyError::NotPublicKey)
        ));
    }

    #[test]
    fn a_short_public_key_is_refused_by_its_size() {
        use rsa::pkcs1::EncodeRsaPublicKey;
        use rsa::pkcs8::EncodePublicKey;
        let short = rsa::PrivateKey::new(&mut getrandom::SysRng, 1024).unwrap();
        let public = short.to_public_key();
        let spki = public.to_public_key_der().unwrap();
        let pkcs1 = public.to_pkcs1_der().unwrap();
        for der in [spki.as_bytes(), pkcs1.as_bytes()] {
            let err = PublicKey::from_der(der).unwrap_err();
            assert!(matches!(err, KeyError::TooSmall(1024)), "{err:?}");
            assert_eq!(
                err.to_string(),
                "RSA key is 1024 bits; RSA2 needs 2048 bits or more"
            );
        }
    }

    #[test]
    fn the_apiv3_key_seals_and_opens_with_aes_256_gcm() {
        let key = SymmetricKey::from_text("0123456789abcdefghijABCDEFGHIJ01").unwrap();
        let nonce = b"0123456789ab";
        let sealed = key.seal(nonce, b"certificate", b"plain text").unwrap();
        assert_eq!(sealed.len(), b"plain text".len() + 16, "ciphertext and tag");
        assert_eq!(
            key.open(nonce, b"certificate", &sealed).as_deref(),
            Some(&b"plain text"[..])
        );
        // The same key loaded again opens it: nothing depends on the loaded instance.
        let again = SymmetricKey::from_text(&key.expose_text()).unwrap();
        assert!(again.open(nonce, b"certificate", &sealed).is_some());
        assert_eq!(key.open(nonce, b"other", &sealed), None, "associated data");
        assert_eq!(key.open(b"bad nonce", b"certificate", &sealed), None);
        assert!(matches!(
            SymmetricKey::from_text("too short"),
            Err(KeyError::BadSymmetricKey)
        ));
    }
}
