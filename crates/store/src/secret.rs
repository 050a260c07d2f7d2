//! Secrets stored in the database (a calendar link's URL and credentials)
//! are sealed with the server's key, `MUSTER_SECRET_KEY`: XChaCha20-Poly1305
//! from RustCrypto's `chacha20poly1305` (an AEAD: a tampered or foreign
//! ciphertext fails to open rather than decrypting to garbage), with a
//! random 24-byte nonce per message, which that cipher's nonce size makes
//! safe to draw at random. A sealed value is the nonce followed by the
//! ciphertext and its tag.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};

/// The length of a key, in bytes.
pub const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;

/// The server's secret key. Its `Debug` never shows it.
///
/// It may carry another key that also opens (never seals): while the
/// server's key is rotated, every process opens what either key sealed
/// (`MUSTER_EXTRA_SECRET_KEY`, docs/personal-data.md).
#[derive(Clone)]
pub struct SecretKey {
    cipher: XChaCha20Poly1305,
    /// The key itself, for keyed digests.
    bytes: [u8; KEY_BYTES],
    /// Another key that opens what this one does not.
    also: Option<Box<SecretKey>>,
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
        Self::from_bytes(&bytes)
    }

    /// A fresh random key and its base64 form (to be kept by whoever
    /// generated it: values sealed with it open only with it).
    pub fn generate() -> (Self, String) {
        let (key, bytes) = Self::generate_raw();
        (key, STANDARD.encode(bytes))
    }

    /// A fresh random key and its bytes (a client's data key, which is
    /// kept only sealed with the server's).
    pub fn generate_raw() -> (Self, [u8; KEY_BYTES]) {
        let key = Key::generate();
        let mut bytes = [0; KEY_BYTES];
        bytes.copy_from_slice(key.as_slice());
        (
            Self {
                cipher: XChaCha20Poly1305::new(&key),
                bytes,
                also: None,
            },
            bytes,
        )
    }

    /// The key `bytes` are.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SecretError> {
        let key = Key::try_from(bytes).map_err(|_| SecretError::BadKey)?;
        let mut raw = [0; KEY_BYTES];
        raw.copy_from_slice(bytes);
        Ok(Self {
            cipher: XChaCha20Poly1305::new(&key),
            bytes: raw,
            also: None,
        })
    }

    /// This key, also opening what `other` sealed (it never seals with it).
    pub fn also_opening(mut self, other: SecretKey) -> Self {
        self.also = Some(Box::new(SecretKey {
            also: None,
            ..other
        }));
        self
    }

    /// Whether `other` is the same key as this one.
    pub fn same_as(&self, other: &SecretKey) -> bool {
        self.bytes == other.bytes
    }

    /// A keyed digest of `message` (HMAC-SHA256): the same for the same
    /// message under this key, and nothing to whoever lacks the key.
    pub fn digest(&self, message: &[u8]) -> Vec<u8> {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.bytes)
            .expect("HMAC takes a key of any length");
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }

    /// `plain`, sealed.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        self.seal_for(plain, b"")
    }

    /// `plain`, sealed and bound to `context` (authenticated, not stored):
    /// it opens only with the same context, so a sealed value copied to
    /// another row does not open there.
    pub fn seal_for(&self, plain: &[u8], context: &[u8]) -> Vec<u8> {
        let nonce = XNonce::generate();
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain,
                    aad: context,
                },
            )
            .expect("sealing in memory cannot fail");
        let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
        out.extend_from_slice(nonce.as_slice());
        out.extend_from_slice(&sealed);
        out
    }

    /// What `sealed` holds, if this key sealed it.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, SecretError> {
        self.open_for(sealed, b"")
    }

    /// What `sealed` holds, if this key sealed it for `context`.
    pub fn open_for(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, SecretError> {
        if sealed.len() < NONCE_BYTES {
            return Err(SecretError::WrongKey);
        }
        let (nonce, body) = sealed.split_at(NONCE_BYTES);
        let nonce = XNonce::try_from(nonce).map_err(|_| SecretError::WrongKey)?;
        self.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: body,
                    aad: context,
                },
            )
            .or_else(|_| match &self.also {
                Some(other) => other.open_for(sealed, context),
                None => Err(SecretError::WrongKey),
            })
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
        let bound = key.seal_for(b"hunter2", b"row 1");
        assert_eq!(key.open_for(&bound, b"row 1").unwrap(), b"hunter2");
        assert_eq!(key.open_for(&bound, b"row 2"), Err(SecretError::WrongKey));
        let (raw, bytes) = SecretKey::generate_raw();
        let again = SecretKey::from_bytes(&bytes).unwrap();
        assert_eq!(again.open(&raw.seal(b"x")).unwrap(), b"x");
        // During a rotation the new key opens what the old one sealed.
        let (new, _) = SecretKey::generate();
        let both = new.clone().also_opening(key.clone());
        assert_eq!(both.open_for(&bound, b"row 1").unwrap(), b"hunter2");
        assert_eq!(key.open(&both.seal(b"y")), Err(SecretError::WrongKey));
        assert_eq!(new.open(&both.seal(b"y")).unwrap(), b"y");
        assert!(both.same_as(&new) && !both.same_as(&key));
    }
}
