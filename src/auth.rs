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

/// Binds a part URL's signature to its purpose and format version.
const PART_URL_CONTEXT: &[u8] = b"ferry direct part url v1:";

impl TokenSigner {
    fn part_mac(&self, id: &UploadId, part_number: u32, expires: i64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!());
        mac.update(PART_URL_CONTEXT);
        mac.update(format!("{id}:{part_number}:{expires}").as_bytes());
        mac
    }

    /// The signature of ferry's own URL for part `part_number` of upload `id`, valid until
    /// `expires` (Unix seconds): a direct transfer's URL on a store without presigning.
    pub fn sign_part(&self, id: &UploadId, part_number: u32, expires: i64) -> String {
        URL_SAFE_NO_PAD.encode(self.part_mac(id, part_number, expires).finalize().into_bytes())
    }

    /// Whether `signature` is that of the part URL (in constant time); expiry is the caller's.
    pub fn verify_part(&self, id: &UploadId, part_number: u32, expires: i64, signature: &str) -> bool {
        match URL_SAFE_NO_PAD.decode(signature) {
            Ok(tag) => self.part_mac(id, part_number, expires).verify_slice(&tag).is_ok(),
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

/// Shortest key accepted from a secret file: as long as the HMAC-SHA256 output.
pub const MIN_SECRET_BYTES: usize = 32;

/// Reads the secret kept at `path`, or makes a random one and keeps it there (mode 0600).
/// A file that holds less than `MIN_SECRET_BYTES` of key is refused, never replaced: an
/// operator may have put it there.
pub fn load_or_create_secret(path: &Path) -> io::Result<Vec<u8>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let invalid =
                |why: String| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {why}", path.display()));
            let secret = URL_SAFE_NO_PAD
                .decode(text.trim())
                .map_err(|e| invalid(format!("not an unpadded URL-safe base64 key ({e})")))?;
            if secret.len() < MIN_SECRET_BYTES {
                return Err(invalid(format!(
                    "holds a {}-byte key, under the {MIN_SECRET_BYTES} bytes required; put a longer one there \
                     (or remove the file to have ferry make one, which invalidates every upload token)",
                    secret.len()
                )));
            }
            Ok(secret)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut secret = vec![0u8; MIN_SECRET_BYTES];
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

/// Writes `contents` to `path` whole or not at all: a temporary file beside it (mode 0600),
/// synced, renamed into place, and the folder synced so the name survives a crash.
fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
    let temp = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = (|| {
        let mut file = options.open(&temp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written?;
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
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
    fn a_part_signature_opens_its_own_part_until_its_expiry_only() {
        let signer = TokenSigner::new(b"0123456789abcdef0123456789abcdef");
        let (a, b) = (UploadId::new(), UploadId::new());
        let signature = signer.sign_part(&a, 3, 1_000);
        assert!(signer.verify_part(&a, 3, 1_000, &signature));
        assert!(!signer.verify_part(&a, 4, 1_000, &signature));
        assert!(!signer.verify_part(&a, 3, 2_000, &signature));
        assert!(!signer.verify_part(&b, 3, 1_000, &signature));
        assert!(!signer.verify_part(&a, 3, 1_000, &signer.issue(&a)), "an upload token is no part signature");
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

    #[test]
    fn a_generated_secret_file_is_private_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions").join("auth-secret");
        load_or_create_secret(&path).unwrap();
        let names: Vec<_> =
            std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("auth-secret")]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn an_empty_or_short_secret_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth-secret");
        let short = URL_SAFE_NO_PAD.encode([7u8; MIN_SECRET_BYTES - 1]);
        for contents in ["", "\n", short.as_str()] {
            std::fs::write(&path, contents).unwrap();
            let err = load_or_create_secret(&path).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert!(err.to_string().contains(&path.display().to_string()), "{err}");
            assert!(err.to_string().contains("32 bytes"), "{err}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), contents, "the operator's file is kept");
        }
    }

    #[test]
    fn a_secret_file_that_is_not_base64_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth-secret");
        std::fs::write(&path, "not base64 at all!").unwrap();
        let err = load_or_create_secret(&path).unwrap_err();
        assert!(err.to_string().contains("auth-secret"), "{err}");
    }

    #[test]
    fn an_operator_made_secret_of_32_bytes_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth-secret");
        std::fs::write(&path, format!("{}\n", URL_SAFE_NO_PAD.encode([9u8; 32]))).unwrap();
        assert_eq!(load_or_create_secret(&path).unwrap(), vec![9u8; 32]);
    }
}
