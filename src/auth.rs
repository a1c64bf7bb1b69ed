//! Access: upload tokens (an HMAC of the upload id, so any instance can check one with no
//! store look-up) and API keys that guard creating uploads. Every comparison is constant-time.

use std::io;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::UploadId;

type HmacSha256 = Hmac<Sha256>;

/// Binds a token to its purpose and format version.
const TOKEN_CONTEXT: &[u8] = b"ferry upload token v1:";

/// Issues and checks upload tokens under one secret.
#[derive(Clone)]
pub struct TokenSigner {
    secret: Vec<u8>,
}

impl TokenSigner {
    /// A signer keyed by `secret`.
    pub fn new(secret: &[u8]) -> Self {
        Self { secret: secret.to_vec() }
    }

    fn mac(&self, id: &UploadId) -> HmacSha256 {
        // HMAC takes keys of any length: this cannot fail.
        let mut mac = HmacSha256::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!());
        mac.update(TOKEN_CONTEXT);
        mac.update(id.to_string().as_bytes());
        mac
    }

    /// The token for upload `id`.
    pub fn issue(&self, id: &UploadId) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(id).finalize().into_bytes())
    }

    /// Whether `token` is the token of upload `id` (in constant time).
    pub fn verify(&self, id: &UploadId, token: &str) -> bool {
        match URL_SAFE_NO_PAD.decode(token) {
            Ok(tag) => self.mac(id).verify_slice(&tag).is_ok(),
            Err(_) => false,
        }
    }
}

/// The API keys allowed to create uploads, kept as SHA-256 digests.
#[derive(Clone, Default)]
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

impl ApiKeys {
    /// The set of `keys`; empty means creating uploads is open.
    pub fn new(keys: &[String]) -> Self {
        Self { digests: keys.iter().map(|k| Sha256::digest(k.trim().as_bytes()).into()).collect() }
    }

    /// Whether any key is configured.
    pub fn required(&self) -> bool {
        !self.digests.is_empty()
    }

    /// Whether `key` is one of the keys. Compares digests in constant time and checks every
    /// key, so timing says nothing about which key came close.
    pub fn allows(&self, key: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        self.digests.iter().fold(subtle::Choice::from(0), |found, d| found | d.ct_eq(&digest)).into()
    }
}

/// Reads the secret kept at `path`, or makes a random one and keeps it there (mode 0600).
pub fn load_or_create_secret(path: &Path) -> io::Result<Vec<u8>> {
    match std::fs::read_to_string(path) {
        Ok(text) => URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut secret = vec![0u8; 32];
            rand::rng().fill_bytes(&mut secret);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            write_private(path, URL_SAFE_NO_PAD.encode(&secret).as_bytes())?;
            Ok(secret)
        }
        Err(e) => Err(e),
    }
}

fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_its_own_upload_only() {
        let signer = TokenSigner::new(b"0123456789abcdef0123456789abcdef");
        let (a, b) = (UploadId::new(), UploadId::new());
        let token = signer.issue(&a);
        assert!(signer.verify(&a, &token));
        assert!(!signer.verify(&b, &token));
        assert!(!signer.verify(&a, "not-a-token"));
        assert!(!TokenSigner::new(b"another secret, another token!!").verify(&a, &token));
    }

    #[test]
    fn api_keys_match_exactly() {
        let keys = ApiKeys::new(&["alpha".into(), "beta".into()]);
        assert!(keys.required());
        assert!(keys.allows("beta"));
        assert!(!keys.allows("bet"));
        assert!(!ApiKeys::new(&[]).required());
    }

    #[test]
    fn a_generated_secret_is_kept_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth-secret");
        let first = load_or_create_secret(&path).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(load_or_create_secret(&path).unwrap(), first);
    }
}
