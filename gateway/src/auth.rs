//! Bearer tokens: JSON Web Tokens signed and checked with the `jsonwebtoken`
//! crate (its pure-Rust `rust_crypto` backend: no OpenSSL, no C), carrying the
//! user id in `sub`.
//!
//! Algorithms: HS256 (a shared secret) and EdDSA (Ed25519: the gateway needs
//! only the public key, so a service that mints tokens can keep the private one
//! to itself). Several keys at once, chosen by the token's `kid`, so keys can be
//! rotated: `gateway.jwt_keys` lists `KID=PATH`, the current key first (it
//! signs); a token keeps working until its key's entry is removed, then gets
//! 401. `gateway.jwt_secret` stays the shorthand for one HS256 key for tokens
//! without a `kid`; with neither, a development secret is generated once into
//! `DATA_DIR/gateway/jwt_secret` (mode 0600), so `courier token USER` and a
//! gateway started with the same `--data`/`--config` agree, also across
//! restarts.
//!
//! Checked on every token: the signature with the key its `kid` names and that
//! key's algorithm only (never the header's say-so: no `alg: none`, no HS256
//! signed with a public key), `exp`, `nbf`, `iat` not in the future, `iss` and
//! `aud` (`gateway.jwt_issuer`, `gateway.jwt_audience`), each time with
//! `gateway.jwt_leeway_secs` for clocks that differ.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::GatewayConfig;

/// Why a token was refused (the 401 message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token: expected a JSON Web Token (three base64url parts separated by dots)")]
    Malformed,
    #[error(
        "unsupported token algorithm: expected the algorithm of the key it names (HS256 or EdDSA)"
    )]
    Algorithm,
    #[error("token names key `{0}`, which this gateway does not accept (unknown or rotated out)")]
    UnknownKey(String),
    #[error("token names no key (`kid`), and this gateway has no key for such tokens")]
    NoKeyless,
    #[error("token signature does not match this gateway's key")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet (`nbf` is in the future)")]
    NotYetValid,
    #[error("token issued in the future (`iat`)")]
    IssuedInFuture,
    #[error("token has the wrong issuer (`iss`)")]
    Issuer,
    #[error("token is for another audience (`aud`)")]
    Audience,
    #[error("token lacks the `{0}` claim")]
    Missing(String),
    #[error("token has no usable `sub` (user id)")]
    Subject,
    #[error("this gateway cannot mint tokens: {0}")]
    CannotMint(String),
}

/// The claims courier reads (others, `iss` and `aud` among them, are checked by
/// the library and otherwise ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Issued at, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Not before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

/// What `courier token` writes.
#[derive(Serialize)]
struct Minted<'a> {
    sub: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    #[serde(skip_serializing_if = "str::is_empty")]
    iss: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    aud: &'a str,
}

/// A key that verifies tokens, and the one algorithm it verifies.
struct Verifier {
    alg: Algorithm,
    key: DecodingKey,
}

/// The key tokens are minted with.
struct Signer {
    kid: Option<String>,
    alg: Algorithm,
    key: EncodingKey,
}

/// Every token key of a gateway, and the rules its tokens are held to.
pub struct Keys {
    /// By `kid`; `None` holds the key for tokens without one.
    verifiers: HashMap<Option<String>, Verifier>,
    /// The current key, or why there is none (a public key only verifies).
    signer: Result<Signer, String>,
    issuer: String,
    audience: String,
    leeway: u64,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kids: Vec<String> = self
            .verifiers
            .keys()
            .map(|k| k.clone().unwrap_or_else(|| "(none)".into()))
            .collect();
        kids.sort();
        f.debug_struct("Keys").field("kids", &kids).finish()
    }
}

/// Where the development secret lives under a data directory.
pub fn dev_secret_path(data_dir: &Path) -> PathBuf {
    data_dir.join("gateway").join("jwt_secret")
}

/// Shortest HS256 secret accepted from a key file: the hash's own size.
pub const MIN_SECRET_BYTES: usize = 32;

impl Keys {
    /// One HS256 key for tokens without a `kid`, with `[gateway]`'s default
    /// issuer, audience and leeway (tests and benchmarks).
    pub fn hs256(secret: &[u8]) -> Keys {
        Keys::from_parts(&GatewayConfig::default(), Some(secret.to_vec()), Vec::new())
    }

    /// The keys of `[gateway]` (see the module doc), the development secret of
    /// `data_dir` when none is configured (generated on first use).
    pub fn load(config: &GatewayConfig, data_dir: &Path) -> std::io::Result<Keys> {
        let shorthand = config
            .jwt_secret
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| s.as_bytes().to_vec());
        let mut listed = Vec::new();
        for entry in &config.jwt_keys {
            listed.push(load_entry(entry)?);
        }
        let keyless = match shorthand {
            Some(s) => Some(s),
            None if listed.is_empty() => Some(dev_secret(data_dir)?),
            None => None,
        };
        let mut seen = std::collections::HashSet::new();
        for (kid, _) in &listed {
            if !seen.insert(kid.clone()) {
                return Err(invalid(format!("gateway.jwt_keys names key `{kid}` twice")));
            }
        }
        Ok(Keys::from_parts(config, keyless, listed))
    }

    fn from_parts(
        config: &GatewayConfig,
        keyless: Option<Vec<u8>>,
        listed: Vec<(String, Material)>,
    ) -> Keys {
        let mut verifiers = HashMap::new();
        let mut signer = Err("no key is configured".to_string());
        if let Some(secret) = &keyless {
            verifiers.insert(
                None,
                Verifier {
                    alg: Algorithm::HS256,
                    key: DecodingKey::from_secret(secret).expect("HMAC takes any key"),
                },
            );
            signer = Ok(Signer {
                kid: None,
                alg: Algorithm::HS256,
                key: EncodingKey::from_secret(secret).expect("HMAC takes any key"),
            });
        }
        // The first listed key is the current one, ahead of the shorthand.
        for (i, (kid, material)) in listed.into_iter().enumerate() {
            let (verifier, signing) = material.into_keys();
            if i == 0 {
                signer = match signing {
                    Some((alg, key)) => Ok(Signer {
                        kid: Some(kid.clone()),
                        alg,
                        key,
                    }),
                    None => Err(format!(
                        "its current key `{kid}` is a public key, which verifies tokens but \
                         cannot sign them"
                    )),
                };
            }
            verifiers.insert(Some(kid), verifier);
        }
        Keys {
            verifiers,
            signer,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
            leeway: config.jwt_leeway_secs,
        }
    }

    /// A token for `user` valid for `ttl_secs`, signed with the current key.
    pub fn mint(&self, user: &str, ttl_secs: u64) -> Result<String, TokenError> {
        let signer = self
            .signer
            .as_ref()
            .map_err(|why| TokenError::CannotMint(why.clone()))?;
        let now = now_secs();
        let claims = Minted {
            sub: user,
            iat: now,
            nbf: now,
            exp: now.saturating_add(ttl_secs),
            iss: &self.issuer,
            aud: &self.audience,
        };
        let mut header = Header::new(signer.alg);
        header.kid = signer.kid.clone();
        jsonwebtoken::encode(&header, &claims, &signer.key)
            .map_err(|e| TokenError::CannotMint(e.to_string()))
    }

    /// The claims of a valid token (see the module doc for what is checked).
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            // An algorithm the library does not know (`none` among them).
            ErrorKind::Json(_) if token.split('.').count() == 3 => TokenError::Algorithm,
            _ => TokenError::Malformed,
        })?;
        let verifier = self
            .verifiers
            .get(&header.kid)
            .ok_or_else(|| match &header.kid {
                Some(kid) => TokenError::UnknownKey(kid.chars().take(64).collect()),
                None => TokenError::NoKeyless,
            })?;
        let mut rules = Validation::new(verifier.alg);
        rules.leeway = self.leeway;
        rules.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if !self.issuer.is_empty() {
            rules.set_issuer(&[&self.issuer]);
            required.push("iss");
        }
        if self.audience.is_empty() {
            rules.validate_aud = false;
        } else {
            rules.set_audience(&[&self.audience]);
            required.push("aud");
        }
        rules.set_required_spec_claims(&required);
        let data =
            jsonwebtoken::decode::<Claims>(token, &verifier.key, &rules).map_err(|e| {
                match e.into_kind() {
                    ErrorKind::InvalidSignature => TokenError::Signature,
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        TokenError::Algorithm
                    }
                    ErrorKind::ExpiredSignature => TokenError::Expired,
                    ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                    ErrorKind::InvalidIssuer => TokenError::Issuer,
                    ErrorKind::InvalidAudience => TokenError::Audience,
                    ErrorKind::MissingRequiredClaim(c) => TokenError::Missing(c),
                    _ => TokenError::Malformed,
                }
            })?;
        let claims = data.claims;
        if claims.iat.is_some_and(|iat| iat > now_secs() + self.leeway) {
            return Err(TokenError::IssuedInFuture);
        }
        if crate::validate::id("sub", &claims.sub).is_err() {
            return Err(TokenError::Subject);
        }
        Ok(claims)
    }

    /// When a token with these claims stops being accepted: the live stream it
    /// opened is closed then. `verify` accepts it through the whole second
    /// `exp` + leeway (whole seconds, as the claims are).
    pub fn valid_until(&self, claims: &Claims) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(claims.exp.saturating_add(self.leeway).saturating_add(1))
    }
}

/// What a key file holds.
enum Material {
    Secret(Vec<u8>),
    EdPrivate(EncodingKey),
    EdPublic(DecodingKey),
}

impl Material {
    /// The verifying key, and the signing key if this is one.
    fn into_keys(self) -> (Verifier, Option<(Algorithm, EncodingKey)>) {
        match self {
            Material::Secret(s) => (
                Verifier {
                    alg: Algorithm::HS256,
                    key: DecodingKey::from_secret(&s).expect("HMAC takes any key"),
                },
                Some((
                    Algorithm::HS256,
                    EncodingKey::from_secret(&s).expect("HMAC takes any key"),
                )),
            ),
            Material::EdPrivate(private) => {
                let public = jsonwebtoken::jwk::Jwk::from_encoding_key(&private, Algorithm::EdDSA)
                    .and_then(|jwk| DecodingKey::from_jwk(&jwk))
                    .expect("a parsed Ed25519 private key has a public key");
                (
                    Verifier {
                        alg: Algorithm::EdDSA,
                        key: public,
                    },
                    Some((Algorithm::EdDSA, private)),
                )
            }
            Material::EdPublic(public) => (
                Verifier {
                    alg: Algorithm::EdDSA,
                    key: public,
                },
                None,
            ),
        }
    }
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, message)
}

/// One `KID=PATH` entry of `gateway.jwt_keys`, read.
fn load_entry(entry: &str) -> std::io::Result<(String, Material)> {
    let Some((kid, path)) = entry.split_once('=') else {
        return Err(invalid(format!(
            "gateway.jwt_keys: `{entry}` should be KID=PATH (the key's id, then the file holding it)"
        )));
    };
    let (kid, path) = (kid.trim(), Path::new(path.trim()));
    if kid.is_empty() || kid.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(format!(
            "gateway.jwt_keys: `{entry}` has no usable key id before `=`"
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "gateway.jwt_keys: reading key `{kid}` from {}: {e}",
                path.display()
            ),
        )
    })?;
    let bad = |what: &str| {
        invalid(format!(
            "gateway.jwt_keys: key `{kid}` ({}) {what}",
            path.display()
        ))
    };
    let material = if bytes.starts_with(b"-----BEGIN") {
        if let Ok(key) = EncodingKey::from_ed_pem(&bytes) {
            Material::EdPrivate(key)
        } else if let Ok(key) = DecodingKey::from_ed_pem(&bytes) {
            Material::EdPublic(key)
        } else {
            return Err(bad(
                "is a PEM file but not an Ed25519 private or public key (PKCS#8); \
                 courier's asymmetric tokens are EdDSA",
            ));
        }
    } else {
        let secret = bytes.trim_ascii().to_vec();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(bad(&format!(
                "is an HS256 secret of {} bytes; it must have at least {MIN_SECRET_BYTES}",
                secret.len()
            )));
        }
        Material::Secret(secret)
    };
    if !matches!(material, Material::EdPublic(_)) {
        warn_if_others_read(path);
    }
    Ok((kid.to_string(), material))
}

/// A secret or private key file others may read is worth a warning (not a
/// refusal: some secret stores mount files 0644 inside a private mount).
fn warn_if_others_read(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path)
            && m.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", m.permissions().mode() & 0o777), "a token key file is readable by others; make it 0600");
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// The development secret of `data_dir`, generated (two UUIDv4s: 244 random
/// bits) on first use.
fn dev_secret(data_dir: &Path) -> std::io::Result<Vec<u8>> {
    let path = dev_secret_path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => {
            owner_only(&path)?;
            return Ok(s.trim().as_bytes().to_vec());
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
    Ok(std::fs::read_to_string(&path)?.trim().as_bytes().to_vec())
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
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use serde_json::json;

    /// Ed25519 keys made for these tests only (`openssl genpkey -algorithm ed25519`).
    const ED_A: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIM+K3B+1uz4DKcOthH1fvONFdAX4I54Cx/VOX8/gZ0h7\n-----END PRIVATE KEY-----\n";
    const ED_A_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAkbf7J2E4HwFj+Jfedh31vFLdebCIzsQSGtkbJbtcwVo=\n-----END PUBLIC KEY-----\n";
    const ED_B: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEILNEvbAX4X6jTGgWhQhcslqyh9A+VefY98InuiFN1LxL\n-----END PRIVATE KEY-----\n";
    const SECRET_1: &str = "0123456789abcdef0123456789abcdef-one";
    const SECRET_2: &str = "0123456789abcdef0123456789abcdef-two";

    /// `[gateway]` with these `KID=CONTENT` keys written to files under `dir`.
    fn with_keys(dir: &Path, keys: &[(&str, &str)]) -> GatewayConfig {
        let mut c = GatewayConfig::default();
        for (kid, content) in keys {
            let path = dir.join(format!("{kid}.key"));
            std::fs::write(&path, content).unwrap();
            c.jwt_keys.push(format!("{kid}={}", path.display()));
        }
        c
    }

    /// A token with these claims, signed HS256 with `secret` under `kid`.
    fn hs256(secret: &str, kid: Option<&str>, claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn claims(now: u64) -> serde_json::Value {
        json!({"sub": "alice", "iat": now, "exp": now + 3600, "iss": "courier", "aud": "courier"})
    }

    #[test]
    fn a_minted_token_verifies_and_names_its_user() {
        let k = Keys::hs256(b"k");
        let t = k.mint("alice", 60).unwrap();
        let c = k.verify(&t).unwrap();
        assert_eq!(c.sub, "alice");
        assert_eq!(c.nbf, c.iat);
        let header = jsonwebtoken::decode_header(&t).unwrap();
        assert_eq!((header.alg, header.kid), (Algorithm::HS256, None));
    }

    #[test]
    fn another_key_a_tampered_payload_alg_none_or_an_expired_token_is_refused() {
        let k = Keys::hs256(b"k");
        let t = k.mint("alice", 60).unwrap();
        assert_eq!(Keys::hs256(b"other").verify(&t), Err(TokenError::Signature));
        let parts: Vec<&str> = t.split('.').collect();
        let forged = B64
            .encode(br#"{"sub":"bob","iat":0,"exp":99999999999,"iss":"courier","aud":"courier"}"#);
        let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(k.verify(&tampered), Err(TokenError::Signature));
        let none = format!("{}.{forged}.", B64.encode(br#"{"alg":"none","typ":"JWT"}"#));
        assert_eq!(k.verify(&none), Err(TokenError::Algorithm));
        let now = now_secs();
        let mut expired = claims(now);
        expired["exp"] = json!(now - 31);
        assert_eq!(
            k.verify(&hs256("k", None, expired.clone())),
            Err(TokenError::Expired)
        );
        // Within the leeway, clocks differ.
        expired["exp"] = json!(now - 5);
        assert!(k.verify(&hs256("k", None, expired)).is_ok());
        assert_eq!(k.verify("abc"), Err(TokenError::Malformed));
    }

    #[test]
    fn the_issuer_and_the_audience_are_required_and_checked() {
        let k = Keys::hs256(b"k");
        let now = now_secs();
        for (field, value, error) in [
            ("iss", json!("someone-else"), TokenError::Issuer),
            ("aud", json!("another-service"), TokenError::Audience),
            (
                "iss",
                serde_json::Value::Null,
                TokenError::Missing("iss".into()),
            ),
            (
                "aud",
                serde_json::Value::Null,
                TokenError::Missing("aud".into()),
            ),
        ] {
            let mut c = claims(now);
            if value.is_null() {
                c.as_object_mut().unwrap().remove(field);
            } else {
                c[field] = value;
            }
            assert_eq!(k.verify(&hs256("k", None, c)), Err(error), "{field}");
        }
        let mut many = claims(now);
        many["aud"] = json!(["another-service", "courier"]);
        assert!(k.verify(&hs256("k", None, many)).is_ok());
    }

    #[test]
    fn the_development_secret_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let c = GatewayConfig::default();
        let a = Keys::load(&c, dir.path()).unwrap();
        let b = Keys::load(&c, dir.path()).unwrap();
        let t = a.mint("u1", 60).unwrap();
        assert!(b.verify(&t).is_ok(), "the same secret after a restart");
        assert_eq!(
            std::fs::read_to_string(dev_secret_path(dir.path()))
                .unwrap()
                .len(),
            64
        );
        let configured = GatewayConfig {
            jwt_secret: Some("configured".into()),
            ..GatewayConfig::default()
        };
        let other = Keys::load(&configured, dir.path()).unwrap();
        assert_eq!(other.verify(&t), Err(TokenError::Signature));
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
        let c = GatewayConfig::default();
        let s = Keys::load(&c, dir.path()).unwrap();
        let path = dev_secret_path(dir.path());
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let again = Keys::load(&c, dir.path()).unwrap();
        assert!(
            again.verify(&s.mint("u", 60).unwrap()).is_ok(),
            "the same secret"
        );
        assert_eq!(mode(&path), 0o600, "tightened");
    }

    /// Issue 16: `nbf` was ignored and a token issued in the future accepted.
    #[test]
    fn a_token_not_valid_yet_or_issued_in_the_future_is_refused_beyond_the_leeway() {
        let k = Keys::hs256(b"k");
        let now = now_secs();
        let token = |iat: u64, nbf: Option<u64>| {
            let mut c = claims(now);
            c["iat"] = json!(iat);
            if let Some(n) = nbf {
                c["nbf"] = json!(n);
            }
            hs256("k", None, c)
        };
        assert!(k.verify(&token(now, None)).is_ok());
        assert!(k.verify(&token(now, Some(now))).is_ok());
        // Within the leeway: clocks differ.
        assert!(k.verify(&token(now + 5, Some(now + 5))).is_ok());
        assert_eq!(
            k.verify(&token(now, Some(now + 600))),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(
            k.verify(&token(now + 600, None)),
            Err(TokenError::IssuedInFuture)
        );
    }

    /// Rotation: tokens name their key by `kid`; the first listed key signs;
    /// a token keeps working while its key is listed, and gets 401 once it is
    /// removed.
    #[test]
    fn keys_rotate_by_kid_and_a_removed_key_s_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let old = Keys::load(&with_keys(dir.path(), &[("k1", SECRET_1)]), dir.path()).unwrap();
        let t1 = old.mint("alice", 600).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&t1).unwrap().kid.as_deref(),
            Some("k1")
        );
        // k2 becomes current; k1 still verifies.
        let both = Keys::load(
            &with_keys(dir.path(), &[("k2", SECRET_2), ("k1", SECRET_1)]),
            dir.path(),
        )
        .unwrap();
        let t2 = both.mint("bob", 600).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&t2).unwrap().kid.as_deref(),
            Some("k2")
        );
        assert_eq!(both.verify(&t1).unwrap().sub, "alice");
        assert_eq!(both.verify(&t2).unwrap().sub, "bob");
        // k1 removed: its tokens are refused, k2's are not.
        let new = Keys::load(&with_keys(dir.path(), &[("k2", SECRET_2)]), dir.path()).unwrap();
        assert_eq!(new.verify(&t1), Err(TokenError::UnknownKey("k1".into())));
        assert!(new.verify(&t2).is_ok());
        // A token signed with k1's secret but claiming k2 is forged.
        let forged = hs256(SECRET_1, Some("k2"), claims(now_secs()));
        assert_eq!(new.verify(&forged), Err(TokenError::Signature));
        // No kid-less key is configured, and no development secret was made.
        let keyless = hs256(SECRET_2, None, claims(now_secs()));
        assert_eq!(new.verify(&keyless), Err(TokenError::NoKeyless));
        assert!(!dev_secret_path(dir.path()).exists());
    }

    #[test]
    fn eddsa_keys_sign_and_verify_and_a_public_key_only_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let signer = Keys::load(&with_keys(dir.path(), &[("ed-a", ED_A)]), dir.path()).unwrap();
        let t = signer.mint("alice", 600).unwrap();
        let header = jsonwebtoken::decode_header(&t).unwrap();
        assert_eq!(
            (header.alg, header.kid.as_deref()),
            (Algorithm::EdDSA, Some("ed-a"))
        );
        assert_eq!(signer.verify(&t).unwrap().sub, "alice");
        // A gateway holding only the public key verifies, and mints nothing.
        let verifier =
            Keys::load(&with_keys(dir.path(), &[("ed-a", ED_A_PUBLIC)]), dir.path()).unwrap();
        assert_eq!(verifier.verify(&t).unwrap().sub, "alice");
        assert!(matches!(
            verifier.mint("alice", 60),
            Err(TokenError::CannotMint(_))
        ));
        // Another Ed25519 key under the same kid does not verify.
        let impostor = Keys::load(&with_keys(dir.path(), &[("ed-a", ED_B)]), dir.path()).unwrap();
        assert_eq!(
            verifier.verify(&impostor.mint("alice", 600).unwrap()),
            Err(TokenError::Signature)
        );
        // Algorithm confusion: HS256 "signed" with the public key's text under
        // the EdDSA key's kid is refused for its algorithm.
        let confused = hs256(ED_A_PUBLIC, Some("ed-a"), claims(now_secs()));
        assert_eq!(verifier.verify(&confused), Err(TokenError::Algorithm));
    }

    #[test]
    fn bad_key_entries_are_refused_with_a_message_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        for (keys, says) in [
            (vec!["no-equals-sign".to_string()], "KID=PATH"),
            (vec!["k=/does/not/exist".to_string()], "reading key `k`"),
        ] {
            let c = GatewayConfig {
                jwt_keys: keys,
                ..GatewayConfig::default()
            };
            let e = Keys::load(&c, dir.path()).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
        let short = with_keys(dir.path(), &[("short", "tooshort")]);
        let e = Keys::load(&short, dir.path()).unwrap_err().to_string();
        assert!(e.contains("at least 32"), "{e}");
        let twice = with_keys(dir.path(), &[("k", SECRET_1), ("k", SECRET_2)]);
        let e = Keys::load(&twice, dir.path()).unwrap_err().to_string();
        assert!(e.contains("twice"), "{e}");
    }
}
