//! Bearer tokens: HS256 JSON Web Tokens, hand-rolled on `hmac` + `sha2` (no
//! OpenSSL), carrying the user id in `sub` and an expiry in `exp`.
//!
//! The secret is the configured `gateway.jwt_secret`, or a development secret
//! generated once into `DATA_DIR/gateway/jwt_secret`, so `courier token USER` and
//! a gateway started with the same `--data`/`--config` agree.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a token was refused (the 401 message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token: expected three base64url parts separated by dots")]
    Malformed,
    #[error("unsupported token algorithm: expected HS256")]
    Algorithm,
    #[error("token signature does not match this gateway's secret")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet (`nbf` is in the future)")]
    NotYetValid,
    #[error("token issued in the future (`iat`)")]
    IssuedInFuture,
    #[error("token has no usable `sub` (user id)")]
    Subject,
}

/// The claims courier reads and writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Not before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

/// How far apart the clocks of whoever minted a token and of this gateway may
/// be, in seconds, when `nbf` and `iat` are checked.
pub const LEEWAY_SECS: u64 = 30;

/// The HS256 key.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Where the development secret lives under a data directory.
pub fn dev_secret_path(data_dir: &Path) -> PathBuf {
    data_dir.join("gateway").join("jwt_secret")
}

impl Secret {
    /// A secret from configured text.
    pub fn from_text(s: &str) -> Secret {
        Secret(s.as_bytes().to_vec())
    }

    /// The configured secret if any, else the development secret of `data_dir`,
    /// generated (32 random bytes from two UUIDv4-grade sources) on first use.
    pub fn load(configured: Option<&str>, data_dir: &Path) -> std::io::Result<Secret> {
        if let Some(s) = configured.filter(|s| !s.is_empty()) {
            return Ok(Secret::from_text(s));
        }
        let path = dev_secret_path(data_dir);
        match std::fs::read_to_string(&path) {
            Ok(s) if !s.trim().is_empty() => {
                owner_only(&path)?;
                return Ok(Secret::from_text(s.trim()));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let dir = path.parent().unwrap_or(data_dir);
        std::fs::create_dir_all(dir)?;
        owner_only_dir(dir)?;
        let fresh = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        // Written to a temp file and renamed so two processes starting at once
        // both end up with the same secret (the rename's winner). Created 0600:
        // whoever reads it can sign in as anyone.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        write_owner_only(&tmp, fresh.as_bytes())?;
        if path.exists() {
            std::fs::remove_file(&tmp)?;
        } else {
            std::fs::rename(&tmp, &path)?;
        }
        Ok(Secret::from_text(std::fs::read_to_string(&path)?.trim()))
    }

    fn sign(&self, input: &[u8]) -> Vec<u8> {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(input);
        mac.finalize().into_bytes().to_vec()
    }

    /// A token for `user` valid for `ttl_secs`.
    pub fn mint(&self, user: &str, ttl_secs: u64) -> String {
        let now = now_secs();
        let claims = Claims {
            sub: user.to_string(),
            iat: now,
            exp: now.saturating_add(ttl_secs),
            nbf: Some(now),
        };
        let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = B64.encode(serde_json::to_vec(&claims).expect("claims serialize"));
        let signing_input = format!("{header}.{payload}");
        let sig = B64.encode(self.sign(signing_input.as_bytes()));
        format!("{signing_input}.{sig}")
    }

    /// When a token with these claims stops being accepted: the live stream it
    /// opened is closed then.
    pub fn valid_until(&self, claims: &Claims) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_secs(claims.exp)
    }

    /// The claims of a valid, unexpired token.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: serde_json::Value = B64
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
            return Err(TokenError::Algorithm);
        }
        let sig = B64.decode(s).map_err(|_| TokenError::Malformed)?;
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(format!("{h}.{p}").as_bytes());
        // Constant-time comparison.
        mac.verify_slice(&sig).map_err(|_| TokenError::Signature)?;
        let claims: Claims = B64
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        let now = now_secs();
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| nbf > now + LEEWAY_SECS) {
            return Err(TokenError::NotYetValid);
        }
        if claims.iat > now + LEEWAY_SECS {
            return Err(TokenError::IssuedInFuture);
        }
        if crate::validate::id("sub", &claims.sub).is_err() {
            return Err(TokenError::Subject);
        }
        Ok(claims)
    }
}

/// Writes a new file readable and writable by its owner only (0600).
fn write_owner_only(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Tightens a secret file that others may read (a data directory from before
/// it was created 0600) to 0600; refuses it, saying why, when that fails.
fn owner_only(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
                |e| {
                    std::io::Error::new(
                        e.kind(),
                        format!(
                            "{} is readable by others (mode {:o}) and could not be made 0600: {e}; \
                             run `chmod 600` on it",
                            path.display(),
                            mode & 0o777
                        ),
                    )
                },
            )?;
            tracing::warn!(path = %path.display(), was = format!("{:o}", mode & 0o777), "the token secret was readable by others; made it 0600");
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Makes a directory the gateway created for its secret 0700.
fn owner_only_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_token_verifies_and_names_its_user() {
        let s = Secret::from_text("k");
        let t = s.mint("alice", 60);
        assert_eq!(s.verify(&t).unwrap().sub, "alice");
    }

    #[test]
    fn another_secret_a_tampered_payload_or_an_expired_token_is_refused() {
        let s = Secret::from_text("k");
        let t = s.mint("alice", 60);
        assert_eq!(
            Secret::from_text("other").verify(&t),
            Err(TokenError::Signature)
        );
        let parts: Vec<&str> = t.split('.').collect();
        let forged = B64.encode(br#"{"sub":"bob","iat":0,"exp":99999999999}"#);
        let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(s.verify(&tampered), Err(TokenError::Signature));
        assert_eq!(s.verify(&s.mint("alice", 0)), Err(TokenError::Expired));
        assert_eq!(s.verify("abc"), Err(TokenError::Malformed));
    }

    #[test]
    fn the_development_secret_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = Secret::load(None, dir.path()).unwrap();
        let b = Secret::load(None, dir.path()).unwrap();
        assert_eq!(a.0, b.0);
        assert_eq!(a.0.len(), 64);
        let t = a.mint("u1", 60);
        assert!(b.verify(&t).is_ok());
        assert_ne!(Secret::load(Some("configured"), dir.path()).unwrap().0, a.0);
    }

    /// Issue 16: `DATA_DIR/gateway/jwt_secret` was created 0644, so any local
    /// user could mint tokens for anyone. It is created 0600, and an existing
    /// one others may read is tightened.
    #[cfg(unix)]
    #[test]
    fn the_development_secret_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let s = Secret::load(None, dir.path()).unwrap();
        let path = dev_secret_path(dir.path());
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let again = Secret::load(None, dir.path()).unwrap();
        assert_eq!(again.0, s.0, "the same secret");
        assert_eq!(mode(&path), 0o600, "tightened");
    }

    /// Issue 16: `nbf` was ignored and a token issued in the future accepted.
    #[test]
    fn a_token_not_valid_yet_or_issued_in_the_future_is_refused_beyond_the_leeway() {
        let s = Secret::from_text("k");
        let now = now_secs();
        let signed = |payload: serde_json::Value| {
            let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
            let input = format!("{header}.{}", B64.encode(payload.to_string()));
            format!("{input}.{}", B64.encode(s.sign(input.as_bytes())))
        };
        let claims = |iat: u64, nbf: Option<u64>| {
            let mut c = serde_json::json!({"sub": "alice", "iat": iat, "exp": now + 3600});
            if let Some(n) = nbf {
                c["nbf"] = n.into();
            }
            signed(c)
        };
        assert!(s.verify(&claims(now, None)).is_ok());
        assert!(s.verify(&claims(now, Some(now))).is_ok());
        // Within the leeway: clocks differ.
        assert!(s.verify(&claims(now + 5, Some(now + 5))).is_ok());
        assert_eq!(
            s.verify(&claims(now, Some(now + 600))),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(
            s.verify(&claims(now + 600, None)),
            Err(TokenError::IssuedInFuture)
        );
    }
}
