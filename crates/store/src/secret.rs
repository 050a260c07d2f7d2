//! Secrets stored in the database (a calendar link's URL and credentials)
//! are sealed with the server's key, `MUSTER_SECRET_KEY`: XChaCha20-Poly1305
//! from RustCrypto's `chacha20poly1305` (an AEAD: a tampered or foreign
//! ciphertext fails to open rather than decrypting to garbage), with a
//! random 24-byte nonce per message, which that cipher's nonce size makes
//! safe to draw at random. A sealed value is the nonce followed by the
//! ciphertext and its tag.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, Generate, KeyInit};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};

/// The length of a key, in bytes.
pub const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;

/// The server's secret key. Its `Debug` never shows it.
#[derive(Clone)]
pub struct SecretKey {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

/// Why a key or a sealed value could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The key is not 32 bytes in standard base64.
    #[error(
        "MUSTER_SECRET_KEY must be {KEY_BYTES} bytes in standard base64 (`openssl rand -base64 32`)"
    )]
    BadKey,
    /// The value was sealed with another key, or changed since.
    #[error("a sealed value does not open with this MUSTER_SECRET_KEY")]
    WrongKey,
}

impl SecretKey {
    /// The key `text` holds: 32 bytes in standard base64.
    pub fn from_base64(text: &str) -> Result<Self, SecretError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| SecretError::BadKey)?;
        let key = Key::try_from(bytes.as_slice()).map_err(|_| SecretError::BadKey)?;
        Ok(Self {
            cipher: XChaCha20Poly1305::new(&key),
        })
    }

    /// A fresh random key and its base64 form (to be kept by whoever
    /// generated it: values sealed with it open only with it).
    pub fn generate() -> (Self, String) {
        let key = Key::generate();
        let text = STANDARD.encode(key.as_slice());
        (
            Self {
                cipher: XChaCha20Poly1305::new(&key),
            },
            text,
        )
    }

    /// `plain`, sealed.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let nonce = XNonce::generate();
        let sealed = self
            .cipher
            .encrypt(&nonce, plain)
            .expect("sealing in memory cannot fail");
        let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
        out.extend_from_slice(nonce.as_slice());
        out.extend_from_slice(&sealed);
        out
    }

    /// What `sealed` holds, if this key sealed it.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, SecretError> {
        if sealed.len() < NONCE_BYTES {
            return Err(SecretError::WrongKey);
        }
        let (nonce, body) = sealed.split_at(NONCE_BYTES);
        let nonce = XNonce::try_from(nonce).map_err(|_| SecretError::WrongKey)?;
        self.cipher
            .decrypt(&nonce, body)
            .map_err(|_| SecretError::WrongKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_with_its_key_only() {
        let (key, text) = SecretKey::generate();
        let sealed = key.seal(b"hunter2");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(key.open(&sealed).unwrap(), b"hunter2");
        assert_ne!(key.seal(b"hunter2"), sealed, "a fresh nonce each time");
        let again = SecretKey::from_base64(&text).unwrap();
        assert_eq!(again.open(&sealed).unwrap(), b"hunter2");
        let (other, _) = SecretKey::generate();
        assert_eq!(other.open(&sealed), Err(SecretError::WrongKey));
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(key.open(&tampered), Err(SecretError::WrongKey));
        assert_eq!(key.open(b"short"), Err(SecretError::WrongKey));
        assert_eq!(
            SecretKey::from_base64("dG9vIHNob3J0").unwrap_err(),
            SecretError::BadKey
        );
        assert_eq!(format!("{key:?}"), "SecretKey(…)");
    }
}
