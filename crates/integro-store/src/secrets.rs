//! Sealed secrets: channel credentials and provider API keys are stored encrypted
//! with AES-256-GCM under the master key. Each ciphertext is bound, as associated
//! data, to its owner (tenant, record kind, record id, field) and to the id of the
//! key that sealed it, so a ciphertext copied onto another row does not open, and
//! older keys can still open what they sealed while a rotation is under way.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};

use std::sync::{Arc, RwLock};

use crate::db::{Tx, now_ms};
use crate::{Db, StoreError};

const NONCE_LEN: usize = 12;

/// The 32-byte master key. Its id is derived from the key itself, so the same
/// key always has the same id on every machine.
#[derive(Clone)]
pub struct MasterKey {
    bytes: [u8; 32],
    id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error(
        "the master key is not valid base64 ({0}); generate one with `openssl rand -base64 32`"
    )]
    NotBase64(String),
    #[error(
        "the master key decodes to {0} bytes, but must be exactly 32; generate one with `openssl rand -base64 32`"
    )]
    WrongLength(usize),
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        let digest = Sha256::digest(
            b"integro-key-id\0"
                .iter()
                .chain(&bytes)
                .copied()
                .collect::<Vec<u8>>(),
        );
        let id = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        MasterKey { bytes, id }
    }

    pub fn generate() -> MasterKey {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        MasterKey::from_bytes(bytes)
    }

    pub fn from_base64(text: &str) -> Result<MasterKey, KeyError> {
        let raw = B64
            .decode(text.trim())
            .map_err(|e| KeyError::NotBase64(e.to_string()))?;
        let bytes: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::WrongLength(raw.len()))?;
        Ok(MasterKey::from_bytes(bytes))
    }

    pub fn to_base64(&self) -> String {
        B64.encode(self.bytes)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// A key for another purpose (e.g. signing access tokens), derived so that
    /// it reveals nothing about the master key.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"integro-derive\0");
        h.update(purpose.as_bytes());
        h.update([0]);
        h.update(self.bytes);
        h.finalize().into()
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(&self.bytes).expect("32-byte key")
    }
}

/// Whose secret this is. Every part goes into the associated data.
#[derive(Debug, Clone, Copy)]
pub struct SecretOwner<'a> {
    pub tenant_id: &'a str,
    pub kind: &'a str,
    pub id: &'a str,
    pub field: &'a str,
}

impl SecretOwner<'_> {
    fn associated_data(&self, key_id: &str) -> Vec<u8> {
        // Length-prefixed, so that ("ab","c") and ("a","bc") differ.
        let mut aad = b"integro-secret-v1".to_vec();
        for part in [self.tenant_id, self.kind, self.id, self.field, key_id] {
            aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
            aad.extend_from_slice(part.as_bytes());
        }
        aad
    }
}

/// A sealed value as stored: which key sealed it, and base64(nonce || ciphertext || tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub ciphertext: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error(
        "sealed with key `{0}`, which is not configured (set it in INTEGRO_PREVIOUS_MASTER_KEYS)"
    )]
    UnknownKey(String),
    #[error("the sealed secret does not open: it was altered, or belongs to another record")]
    Corrupt,
}

/// The current master key plus older ones still accepted for opening.
#[derive(Debug, Clone)]
pub struct Keys {
    pub current: MasterKey,
    pub previous: Vec<MasterKey>,
}

/// Reads the keys again from where they came from (the key files), for a
/// running process whose keys were rotated under it.
pub type Reload = Arc<dyn Fn() -> Option<Keys> + Send + Sync>;

/// The keys a process seals and opens with. Clones share them: a reload
/// (after `integro secrets rotate` replaced the key files) reaches every
/// part of the process at once.
#[derive(Clone)]
pub struct Keyring {
    keys: Arc<RwLock<Keys>>,
    reload: Option<Reload>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = self.keys.read().expect("keyring");
        f.debug_struct("Keyring")
            .field("current", &keys.current)
            .field("previous", &keys.previous)
            .finish()
    }
}

impl Keyring {
    pub fn new(current: MasterKey, previous: Vec<MasterKey>) -> Keyring {
        Keyring {
            keys: Arc::new(RwLock::new(Keys { current, previous })),
            reload: None,
        }
    }

    /// Lets the keyring read its keys again when it meets a secret sealed
    /// with a key it does not know.
    pub fn with_reload(mut self, reload: Reload) -> Keyring {
        self.reload = Some(reload);
        self
    }

    pub fn current(&self) -> MasterKey {
        self.keys.read().expect("keyring").current.clone()
    }

    /// Whether a key of this id is the current or a previous one.
    pub fn knows(&self, id: &str) -> bool {
        self.key(id).is_some()
    }

    fn key(&self, id: &str) -> Option<MasterKey> {
        let keys = self.keys.read().expect("keyring");
        std::iter::once(&keys.current)
            .chain(&keys.previous)
            .find(|k| k.id == id)
            .cloned()
    }

    /// The key of this id, reading the keys again once if it is unknown.
    fn key_or_reload(&self, id: &str) -> Option<MasterKey> {
        if let Some(key) = self.key(id) {
            return Some(key);
        }
        let fresh = self.reload.as_ref().and_then(|reload| reload())?;
        tracing::info!(current = fresh.current.id(), "master keys read again");
        *self.keys.write().expect("keyring") = fresh;
        self.key(id)
    }

    pub fn seal(&self, owner: SecretOwner<'_>, plaintext: &[u8]) -> Sealed {
        let key = &self.current();
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let aad = owner.associated_data(&key.id);
        let ct = key
            .cipher()
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Sealed {
            key_id: key.id.clone(),
            ciphertext: B64.encode(out),
        }
    }

    pub fn open(&self, owner: SecretOwner<'_>, sealed: &Sealed) -> Result<Vec<u8>, OpenError> {
        let key = self
            .key_or_reload(&sealed.key_id)
            .ok_or_else(|| OpenError::UnknownKey(sealed.key_id.clone()))?;
        let raw = B64
            .decode(&sealed.ciphertext)
            .map_err(|_| OpenError::Corrupt)?;
        if raw.len() < NONCE_LEN {
            return Err(OpenError::Corrupt);
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at nonce length");
        let aad = owner.associated_data(&sealed.key_id);
        key.cipher()
            .decrypt(&Nonce::from(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| OpenError::Corrupt)
    }
}

/// Sealed secrets in the `sealed_secrets` table, one row per owner field.
pub struct SecretStore;

impl SecretStore {
    /// Seals and stores (or replaces) a secret inside the caller's transaction.
    pub async fn put(
        tx: &mut Tx<'_>,
        keyring: &Keyring,
        owner: SecretOwner<'_>,
        plaintext: &str,
    ) -> Result<(), StoreError> {
        let sealed = keyring.seal(owner, plaintext.as_bytes());
        let now = now_ms();
        sqlx::query(
            "INSERT INTO sealed_secrets (tenant_id, owner_kind, owner_id, field, key_id, ciphertext, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT (tenant_id, owner_kind, owner_id, field) \
             DO UPDATE SET key_id = excluded.key_id, ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
        )
        .bind(owner.tenant_id)
        .bind(owner.kind)
        .bind(owner.id)
        .bind(owner.field)
        .bind(sealed.key_id)
        .bind(sealed.ciphertext)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Opens a stored secret; `None` when the owner has none.
    pub async fn get(
        db: &Db,
        keyring: &Keyring,
        owner: SecretOwner<'_>,
    ) -> Result<Option<String>, StoreError> {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT key_id, ciphertext FROM sealed_secrets \
             WHERE tenant_id = $1 AND owner_kind = $2 AND owner_id = $3 AND field = $4",
        )
        .bind(owner.tenant_id)
        .bind(owner.kind)
        .bind(owner.id)
        .bind(owner.field)
        .fetch_optional(db.pool())
        .await?;
        let Some((key_id, ciphertext)) = row else {
            return Ok(None);
        };
        let plain = keyring
            .open(owner, &Sealed { key_id, ciphertext })
            .map_err(|e| StoreError::Crypto(e.to_string()))?;
        String::from_utf8(plain)
            .map(Some)
            .map_err(|_| StoreError::Crypto("sealed secret is not UTF-8".into()))
    }

    /// The ids of keys that sealed stored secrets but that the keyring does
    /// not hold (after reading its keys again): those secrets cannot be
    /// opened. Empty when all is well.
    pub async fn unknown_keys(db: &Db, keyring: &Keyring) -> Result<Vec<String>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT DISTINCT key_id FROM sealed_secrets")
            .fetch_all(db.pool())
            .await?;
        Ok(ids
            .into_iter()
            .filter(|id| keyring.key_or_reload(id).is_none())
            .collect())
    }

    /// Re-seals every secret not sealed with the current key. Returns how many
    /// were re-sealed. Run after moving the old key to the previous keys.
    pub async fn rotate(db: &Db, keyring: &Keyring) -> Result<u64, StoreError> {
        let rows: Vec<(String, String, String, String, String, String)> = sqlx::query_as(
            "SELECT tenant_id, owner_kind, owner_id, field, key_id, ciphertext FROM sealed_secrets WHERE key_id <> $1",
        )
        .bind(keyring.current().id())
        .fetch_all(db.pool())
        .await?;
        let mut tx = db.begin().await?;
        let mut count = 0;
        for (tenant_id, kind, id, field, key_id, ciphertext) in rows {
            let owner = SecretOwner {
                tenant_id: &tenant_id,
                kind: &kind,
                id: &id,
                field: &field,
            };
            let plain = keyring
                .open(owner, &Sealed { key_id, ciphertext })
                .map_err(|e| StoreError::Crypto(format!("{tenant_id}/{kind}/{id}/{field}: {e}")))?;
            let plain = String::from_utf8(plain)
                .map_err(|_| StoreError::Crypto("sealed secret is not UTF-8".into()))?;
            SecretStore::put(&mut tx, keyring, owner, &plain).await?;
            count += 1;
        }
        tx.commit().await?;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner<'a>(id: &'a str, field: &'a str) -> SecretOwner<'a> {
        SecretOwner {
            tenant_id: "t1",
            kind: "account",
            id,
            field,
        }
    }

    #[test]
    fn seals_and_opens() {
        let ring = Keyring::new(MasterKey::generate(), vec![]);
        let sealed = ring.seal(owner("a1", "auth_token"), b"hunter2");
        assert_eq!(
            ring.open(owner("a1", "auth_token"), &sealed).unwrap(),
            b"hunter2"
        );
        assert!(!sealed.ciphertext.contains("hunter2"));
    }

    #[test]
    fn tampered_ciphertext_does_not_open() {
        let ring = Keyring::new(MasterKey::generate(), vec![]);
        let sealed = ring.seal(owner("a1", "auth_token"), b"hunter2");
        let mut raw = B64.decode(&sealed.ciphertext).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let tampered = Sealed {
            key_id: sealed.key_id.clone(),
            ciphertext: B64.encode(raw),
        };
        assert_eq!(
            ring.open(owner("a1", "auth_token"), &tampered),
            Err(OpenError::Corrupt)
        );
    }

    #[test]
    fn ciphertext_bound_to_its_owner() {
        let ring = Keyring::new(MasterKey::generate(), vec![]);
        let sealed = ring.seal(owner("a1", "auth_token"), b"hunter2");
        assert_eq!(
            ring.open(owner("a2", "auth_token"), &sealed),
            Err(OpenError::Corrupt)
        );
        assert_eq!(
            ring.open(owner("a1", "app_secret"), &sealed),
            Err(OpenError::Corrupt)
        );
    }

    #[test]
    fn previous_keys_still_open_after_rotation() {
        let old = MasterKey::generate();
        let sealed = Keyring::new(old.clone(), vec![]).seal(owner("a1", "f"), b"x");
        let rotated = Keyring::new(MasterKey::generate(), vec![old]);
        assert_eq!(rotated.open(owner("a1", "f"), &sealed).unwrap(), b"x");
        let forgotten = Keyring::new(MasterKey::generate(), vec![]);
        assert!(matches!(
            forgotten.open(owner("a1", "f"), &sealed),
            Err(OpenError::UnknownKey(_))
        ));
    }

    #[test]
    fn master_key_parsing_explains_mistakes() {
        assert!(matches!(
            MasterKey::from_base64("not base64!"),
            Err(KeyError::NotBase64(_))
        ));
        assert_eq!(
            MasterKey::from_base64("c2hvcnQ=").unwrap_err(),
            KeyError::WrongLength(5)
        );
        let key = MasterKey::generate();
        assert_eq!(
            MasterKey::from_base64(&key.to_base64()).unwrap().id(),
            key.id()
        );
    }
}
