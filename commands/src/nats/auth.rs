//! Who is acting, over NATS: the actor of a command or query comes from a signed token, not
//! from the body (docs/contract.md, NATS, Who is acting).
//!
//! A caller sends `Authorization: Bearer <jwt>` as a NATS message header. The JWT's header
//! names its key (`kid`) and algorithm (`EdDSA`, Ed25519; or `ES256`); its claims are `sub`
//! (the actor's id), `role` (the actor's role) and `exp` (required), and `iss` / `aud` when
//! the operator configured them. The public keys are loaded at start from a keys file
//! ([`Verifier::load`]):
//!
//! ```json
//! {"keys": [{"kid": "crm", "alg": "EdDSA", "roles": ["service"],
//!            "pem": "-----BEGIN PUBLIC KEY-----\n...\n-----END PUBLIC KEY-----\n"}]}
//! ```
//!
//! `roles` is what tokens signed by that key may assert (least privilege across issuers: the
//! CRM's key cannot mint supervisors). `system`, the engine's own role, is never accepted
//! from outside: a keys file listing it is refused at start, and so is any token claiming it.
//! The engine's own SLA scheduler and process managers call the handler in process and never
//! pass through here.
//!
//! `exp` is checked against a time the caller of [`Verifier::verify`] gives: the time of
//! receipt for request/reply and queries, the time JetStream stored the message for durable
//! intake (a command stored while no `serve` ran is not refused for having waited).
//!
//! A body `actor` must equal the token's ([`Caller::bind`]); queries may omit it.
//! `--insecure-no-auth` ([`Auth::Insecure`]) trusts the body, for development only.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use closeloop_core::domain::{Actor, Rejection, RejectionCode, Role};
use jsonwebtoken::{errors::ErrorKind as JwtErrorKind, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Default allowed clock difference between an issuer and `serve`, in seconds, for `exp`
/// and `nbf`.
pub const LEEWAY_SECONDS: i64 = 60;

/// The NATS header carrying the token: `Authorization: Bearer <jwt>`.
pub const AUTHORIZATION: &str = "Authorization";

/// Why a credential was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthErrorKind {
    /// No `Authorization` header.
    Missing,
    /// The header is not `Bearer <jwt>`, or the JWT cannot be decoded, has no `kid`, uses
    /// another algorithm than its key, or lacks `sub`, `role` or `exp`.
    Malformed,
    /// The `kid` names no configured key.
    UnknownKey,
    /// The signature does not verify with the key `kid` names.
    BadSignature,
    /// `exp` has passed (or `nbf` is still to come).
    Expired,
    /// `iss` or `aud` is not the configured one.
    WrongIssuerOrAudience,
    /// The key may not assert this role (`system` is never allowed).
    RoleNotAllowed,
}

/// A refused credential: its kind and a message for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AuthError {
    pub kind: AuthErrorKind,
    pub message: String,
}

impl AuthError {
    fn new(kind: AuthErrorKind, message: impl Into<String>) -> AuthError {
        AuthError {
            kind,
            message: message.into(),
        }
    }

    /// The `unauthorized` rejection a caller gets.
    pub fn rejection(&self) -> Rejection {
        Rejection::new(RejectionCode::Unauthorized, self.message.clone())
    }
}

/// A keys file that cannot be used: `serve` does not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("auth keys: {0}")]
pub struct KeysError(pub String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    keys: Vec<KeyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    kid: String,
    alg: String,
    pem: String,
    roles: Vec<Role>,
}

struct Key {
    algorithm: Algorithm,
    decoding: DecodingKey,
    roles: Vec<Role>,
}

/// The claims read from a token; others are ignored.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    role: String,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
}

/// Verifies tokens against the configured public keys.
pub struct Verifier {
    keys: HashMap<String, Key>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: i64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kids: Vec<&String> = self.keys.keys().collect();
        kids.sort();
        f.debug_struct("Verifier")
            .field("kids", &kids)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl Verifier {
    /// Reads the keys file at `path` (format in the module doc).
    pub fn load(path: &Path) -> Result<Verifier, KeysError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| KeysError(format!("reading {}: {e}", path.display())))?;
        Verifier::from_json(&text)
            .map_err(|KeysError(e)| KeysError(format!("{}: {e}", path.display())))
    }

    /// Parses a keys file's text. Refuses an empty list, a `kid` twice, an unknown
    /// algorithm, a key that is not a public key of its algorithm, and the role `system`.
    pub fn from_json(text: &str) -> Result<Verifier, KeysError> {
        let file: KeysFile =
            serde_json::from_str(text).map_err(|e| KeysError(format!("not a keys file: {e}")))?;
        if file.keys.is_empty() {
            return Err(KeysError("no keys".into()));
        }
        let mut keys = HashMap::new();
        for entry in file.keys {
            let kid = entry.kid;
            let (algorithm, decoding) = match entry.alg.as_str() {
                "EdDSA" => (
                    Algorithm::EdDSA,
                    DecodingKey::from_ed_pem(entry.pem.as_bytes()),
                ),
                "ES256" => (
                    Algorithm::ES256,
                    DecodingKey::from_ec_pem(entry.pem.as_bytes()),
                ),
                other => {
                    return Err(KeysError(format!(
                        "key `{kid}`: algorithm `{other}`; expected EdDSA or ES256"
                    )))
                }
            };
            let decoding = decoding.map_err(|e| {
                KeysError(format!(
                    "key `{kid}`: not a {} public key in PEM: {e}",
                    entry.alg
                ))
            })?;
            if entry.roles.contains(&Role::System) {
                return Err(KeysError(format!(
                    "key `{kid}`: role `system` is the engine's own and is never accepted from outside"
                )));
            }
            if entry.roles.is_empty() {
                return Err(KeysError(format!("key `{kid}`: no roles")));
            }
            let key = Key {
                algorithm,
                decoding,
                roles: entry.roles,
            };
            if keys.insert(kid.clone(), key).is_some() {
                return Err(KeysError(format!("key `{kid}` is listed twice")));
            }
        }
        Ok(Verifier {
            keys,
            issuer: None,
            audience: None,
            leeway: LEEWAY_SECONDS,
        })
    }

    /// Requires `iss` to equal `issuer`.
    pub fn with_issuer(mut self, issuer: Option<String>) -> Verifier {
        self.issuer = issuer;
        self
    }

    /// Requires `aud` to be (or contain) `audience`.
    pub fn with_audience(mut self, audience: Option<String>) -> Verifier {
        self.audience = audience;
        self
    }

    /// Allows this clock difference for `exp` and `nbf`, in seconds ([`LEEWAY_SECONDS`]
    /// unless set).
    pub fn with_leeway(mut self, seconds: i64) -> Verifier {
        self.leeway = seconds.max(0);
        self
    }

    /// The configured key ids, sorted.
    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }

    /// Verifies `token` as of `now` (Unix seconds) and returns the actor it names.
    pub fn verify(&self, token: &str, now: i64) -> Result<Actor, AuthError> {
        use AuthErrorKind::*;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::new(Malformed, format!("malformed token: {e}")))?;
        let kid = header
            .kid
            .ok_or_else(|| AuthError::new(Malformed, "the token's header has no `kid`"))?;
        let key = self.keys.get(&kid).ok_or_else(|| {
            AuthError::new(
                UnknownKey,
                format!("the token's key `{kid}` is not configured"),
            )
        })?;
        if header.alg != key.algorithm {
            return Err(AuthError::new(
                Malformed,
                format!(
                    "the token is signed with {:?} but key `{kid}` is {:?}",
                    header.alg, key.algorithm
                ),
            ));
        }
        let mut validation = Validation::new(key.algorithm);
        // `exp` and `nbf` are checked below against `now`, not the wall clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims = ["exp", "sub"].into_iter().map(String::from).collect();
        match &self.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".into());
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map_err(|e| {
                let kind = match e.kind() {
                    JwtErrorKind::InvalidSignature => BadSignature,
                    JwtErrorKind::InvalidIssuer | JwtErrorKind::InvalidAudience => {
                        WrongIssuerOrAudience
                    }
                    JwtErrorKind::ExpiredSignature | JwtErrorKind::ImmatureSignature => Expired,
                    _ => Malformed,
                };
                let what = match kind {
                    BadSignature => {
                        format!("the token's signature does not verify with key `{kid}`")
                    }
                    WrongIssuerOrAudience => {
                        format!("the token's issuer or audience is not accepted: {e}")
                    }
                    _ => format!("malformed token: {e}"),
                };
                AuthError::new(kind, what)
            })?
            .claims;
        if claims.exp + self.leeway < now {
            return Err(AuthError::new(
                Expired,
                format!("the token expired at {} (Unix seconds)", claims.exp),
            ));
        }
        if claims.nbf.is_some_and(|nbf| nbf - self.leeway > now) {
            return Err(AuthError::new(Expired, "the token is not valid yet (nbf)"));
        }
        let role: Role = serde_json::from_value(serde_json::Value::String(claims.role.clone()))
            .map_err(|_| {
                AuthError::new(
                    Malformed,
                    format!("the token's role `{}` is not a role", claims.role),
                )
            })?;
        if role == Role::System {
            return Err(AuthError::new(
                RoleNotAllowed,
                "role `system` is the engine's own and is never accepted from outside",
            ));
        }
        if !key.roles.contains(&role) {
            return Err(AuthError::new(
                RoleNotAllowed,
                format!("key `{kid}` may not assert role `{role}`"),
            ));
        }
        if claims.sub.is_empty() {
            return Err(AuthError::new(Malformed, "the token's `sub` is empty"));
        }
        Ok(Actor {
            id: claims.sub,
            role,
        })
    }
}

/// How `serve` decides who is acting.
#[derive(Debug, Clone)]
pub enum Auth {
    /// From a verified token (the default; with no keys, every request is refused).
    Tokens(Arc<Verifier>),
    /// From the body, unverified: `--insecure-no-auth`, for development only. `system` is
    /// still refused.
    Insecure,
}

impl Default for Auth {
    fn default() -> Auth {
        Auth::Tokens(Arc::new(Verifier {
            keys: HashMap::new(),
            issuer: None,
            audience: None,
            leeway: LEEWAY_SECONDS,
        }))
    }
}

/// Who sent a message, as far as the credential says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The token's actor.
    Verified(Actor),
    /// No verification (`--insecure-no-auth`): the body's actor is taken.
    Unverified,
}

impl Auth {
    /// The caller of a message with `headers`, as of `now` (Unix seconds).
    pub fn authenticate(
        &self,
        headers: Option<&async_nats::HeaderMap>,
        now: i64,
    ) -> Result<Caller, AuthError> {
        match self {
            Auth::Insecure => Ok(Caller::Unverified),
            Auth::Tokens(verifier) => {
                let token = bearer(headers)?;
                verifier.verify(token, now).map(Caller::Verified)
            }
        }
    }
}

/// The token of an `Authorization: Bearer <jwt>` header.
pub fn bearer(headers: Option<&async_nats::HeaderMap>) -> Result<&str, AuthError> {
    let value = headers
        .and_then(|h| h.get(AUTHORIZATION))
        .map(|v| v.as_str())
        .ok_or_else(|| {
            AuthError::new(
                AuthErrorKind::Missing,
                "no credential: send the header `Authorization: Bearer <jwt>`",
            )
        })?;
    let value = value.trim();
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(AuthError::new(
            AuthErrorKind::Malformed,
            "the Authorization header must be `Bearer <jwt>`",
        )),
    }
}

impl Caller {
    /// The actor acting: the token's, which a body `actor` must equal (else `forbidden` at
    /// `/actor`); without verification, the body's (required). `system` is refused.
    pub fn bind(&self, body: Option<&Actor>) -> Result<Actor, Rejection> {
        let actor = match (self, body) {
            (Caller::Verified(token), None) => token.clone(),
            (Caller::Verified(token), Some(body)) if body == token => token.clone(),
            (Caller::Verified(token), Some(body)) => {
                return Err(Rejection::at(
                    RejectionCode::Forbidden,
                    "/actor",
                    format!(
                        "the body's actor {} `{}` is not the token's {} `{}`",
                        body.role, body.id, token.role, token.id
                    ),
                ))
            }
            (Caller::Unverified, Some(body)) => body.clone(),
            (Caller::Unverified, None) => {
                return Err(Rejection::validation("/actor", "missing required field"))
            }
        };
        if actor.role == Role::System {
            return Err(Rejection::at(
                RejectionCode::Forbidden,
                "/actor/role",
                "role `system` is the engine's own and is never accepted from outside",
            ));
        }
        Ok(actor)
    }
}

/// Unix seconds now.
pub(crate) fn now_seconds() -> i64 {
    jiff::Timestamp::now().as_second()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use jsonwebtoken::{EncodingKey, Header};
    use ring::rand::SystemRandom;
    use ring::signature::{self, KeyPair};

    const NOW: i64 = 1_800_000_000;

    fn pem(der: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n")
    }

    /// An Ed25519 key pair: signing key and public key PEM.
    fn ed25519() -> (EncodingKey, String) {
        let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let mut spki = hex("302a300506032b6570032100");
        spki.extend_from_slice(pair.public_key().as_ref());
        (EncodingKey::from_ed_der(pkcs8.as_ref()), pem(&spki))
    }

    /// A P-256 key pair for ES256.
    fn p256() -> (EncodingKey, String) {
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let rng = SystemRandom::new();
        let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        let mut spki = hex("3059301306072a8648ce3d020106082a8648ce3d030107034200");
        spki.extend_from_slice(pair.public_key().as_ref());
        (EncodingKey::from_ec_der(pkcs8.as_ref()), pem(&spki))
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn keys_file(entries: &[(&str, &str, &str, &[&str])]) -> String {
        let keys: Vec<serde_json::Value> = entries
            .iter()
            .map(|(kid, alg, pem, roles)| {
                serde_json::json!({"kid": kid, "alg": alg, "pem": pem, "roles": roles})
            })
            .collect();
        serde_json::json!({ "keys": keys }).to_string()
    }

    fn token(key: &EncodingKey, alg: Algorithm, kid: &str, claims: serde_json::Value) -> String {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    }

    struct Fixture {
        verifier: Verifier,
        crm: EncodingKey,
        desk: EncodingKey,
        other: EncodingKey,
    }

    fn fixture() -> Fixture {
        let (crm, crm_pem) = ed25519();
        let (desk, desk_pem) = p256();
        let (other, _) = ed25519();
        let text = keys_file(&[
            ("crm", "EdDSA", &crm_pem, &["service"]),
            ("desk", "ES256", &desk_pem, &["agent", "supervisor"]),
        ]);
        Fixture {
            verifier: Verifier::from_json(&text).unwrap(),
            crm,
            desk,
            other,
        }
    }

    fn claims(sub: &str, role: &str, exp: i64) -> serde_json::Value {
        serde_json::json!({"sub": sub, "role": role, "exp": exp})
    }

    fn kind(result: Result<Actor, AuthError>) -> AuthErrorKind {
        result.expect_err("refused").kind
    }

    #[test]
    fn each_key_verifies_its_own_tokens_with_its_roles() {
        let f = fixture();
        let t = token(
            &f.crm,
            Algorithm::EdDSA,
            "crm",
            claims("crm", "service", NOW + 60),
        );
        assert_eq!(
            f.verifier.verify(&t, NOW).unwrap(),
            Actor {
                id: "crm".into(),
                role: Role::Service
            }
        );
        let t = token(
            &f.desk,
            Algorithm::ES256,
            "desk",
            claims("lead-1", "supervisor", NOW + 60),
        );
        assert_eq!(
            f.verifier.verify(&t, NOW).unwrap(),
            Actor {
                id: "lead-1".into(),
                role: Role::Supervisor
            }
        );
        assert_eq!(f.verifier.kids(), ["crm", "desk"]);
    }

    #[test]
    fn refusals_have_their_kind() {
        use AuthErrorKind::*;
        let f = fixture();
        let v = &f.verifier;
        // Signed by a key the file does not hold, under a configured kid.
        let t = token(
            &f.other,
            Algorithm::EdDSA,
            "crm",
            claims("crm", "service", NOW + 60),
        );
        assert_eq!(kind(v.verify(&t, NOW)), BadSignature);
        // An unknown kid.
        let t = token(
            &f.other,
            Algorithm::EdDSA,
            "eve",
            claims("crm", "service", NOW + 60),
        );
        assert_eq!(kind(v.verify(&t, NOW)), UnknownKey);
        // Expired beyond the leeway; within it still accepted.
        let t = token(
            &f.crm,
            Algorithm::EdDSA,
            "crm",
            claims("crm", "service", NOW - 3600),
        );
        assert_eq!(kind(v.verify(&t, NOW)), Expired);
        let t = token(
            &f.crm,
            Algorithm::EdDSA,
            "crm",
            claims("crm", "service", NOW - 10),
        );
        assert!(v.verify(&t, NOW).is_ok());
        // ... and as of an earlier time (a durable command stored back then), accepted.
        let t = token(
            &f.crm,
            Algorithm::EdDSA,
            "crm",
            claims("crm", "service", NOW - 3600),
        );
        assert!(v.verify(&t, NOW - 3660).is_ok());
        // A role the key may not assert; `system` never.
        let t = token(
            &f.crm,
            Algorithm::EdDSA,
            "crm",
            claims("crm", "supervisor", NOW + 60),
        );
        assert_eq!(kind(v.verify(&t, NOW)), RoleNotAllowed);
        let t = token(
            &f.crm,
            Algorithm::EdDSA,
            "crm",
            claims("ops", "system", NOW + 60),
        );
        assert_eq!(kind(v.verify(&t, NOW)), RoleNotAllowed);
        // Malformed: garbage, no exp, no kid, an unknown role, another algorithm than the key's.
        assert_eq!(kind(v.verify("not.a.jwt", NOW)), Malformed);
        let t = token(
            &f.crm,
            Algorithm::EdDSA,
            "crm",
            serde_json::json!({"sub": "crm", "role": "service"}),
        );
        assert_eq!(kind(v.verify(&t, NOW)), Malformed);
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &claims("crm", "service", NOW + 60),
            &f.crm,
        )
        .unwrap();
        assert_eq!(kind(v.verify(&t, NOW)), Malformed);
        let t = token(
            &f.crm,
            Algorithm::EdDSA,
            "crm",
            claims("crm", "wizard", NOW + 60),
        );
        assert_eq!(kind(v.verify(&t, NOW)), Malformed);
        let t = token(
            &f.desk,
            Algorithm::ES256,
            "crm",
            claims("crm", "service", NOW + 60),
        );
        assert_eq!(kind(v.verify(&t, NOW)), Malformed);
        // HS256 with the public key as secret (the classic confusion) is refused too.
        let t = token(
            &EncodingKey::from_secret(b"anything"),
            Algorithm::HS256,
            "crm",
            claims("crm", "service", NOW + 60),
        );
        assert_eq!(kind(v.verify(&t, NOW)), Malformed);
    }

    /// The README's recipe: a key pair from `openssl genpkey -algorithm ed25519` and a token
    /// signed with `openssl pkeyutl -sign -rawin` (expiring in 2100).
    #[test]
    fn a_token_made_with_openssl_verifies() {
        let pem = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAeUnonqWFQCfjunIR6KXd7ZvUytRKb+2uB50AeUGifvo=\n-----END PUBLIC KEY-----\n";
        let verifier =
            Verifier::from_json(&keys_file(&[("crm", "EdDSA", pem, &["service"])])).unwrap();
        let token = "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCIsImtpZCI6ImNybSJ9.eyJzdWIiOiJjcm0iLCJyb2xlIjoic2VydmljZSIsImV4cCI6NDEwMjQ0NDgwMH0.TYDkGlme54y73BxpRA1I8dguRYie66eZBnvi8sl8m8wHHwREyva8mokz6MFC_lniMOKI4pzxNK77QP35nGcLAg";
        assert_eq!(
            verifier.verify(token, NOW).unwrap(),
            Actor {
                id: "crm".into(),
                role: Role::Service
            }
        );
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let f = fixture();
        let v = f
            .verifier
            .with_issuer(Some("idp".into()))
            .with_audience(Some("closeloop".into()));
        let mut c = claims("crm", "service", NOW + 60);
        let t = token(&f.crm, Algorithm::EdDSA, "crm", c.clone());
        assert_eq!(kind(v.verify(&t, NOW)), AuthErrorKind::Malformed);
        c["iss"] = "idp".into();
        c["aud"] = "closeloop".into();
        let t = token(&f.crm, Algorithm::EdDSA, "crm", c.clone());
        assert!(v.verify(&t, NOW).is_ok());
        c["aud"] = "billing".into();
        let t = token(&f.crm, Algorithm::EdDSA, "crm", c);
        assert_eq!(
            kind(v.verify(&t, NOW)),
            AuthErrorKind::WrongIssuerOrAudience
        );
    }

    #[test]
    fn keys_files_that_cannot_be_used_are_refused() {
        let (_, pem) = ed25519();
        let refused = |text: String| Verifier::from_json(&text).expect_err("refused").0;
        assert!(refused(keys_file(&[])).contains("no keys"));
        assert!(refused(keys_file(&[("a", "EdDSA", &pem, &["system"])])).contains("system"));
        assert!(refused(keys_file(&[("a", "HS256", &pem, &["agent"])])).contains("HS256"));
        assert!(refused(keys_file(&[("a", "ES256", "nonsense", &["agent"])])).contains("PEM"));
        assert!(refused(keys_file(&[("a", "EdDSA", &pem, &[])])).contains("no roles"));
        assert!(refused(keys_file(&[
            ("a", "EdDSA", &pem, &["agent"]),
            ("a", "EdDSA", &pem, &["agent"])
        ]))
        .contains("twice"));
    }

    #[test]
    fn headers_and_binding() {
        let mut headers = async_nats::HeaderMap::new();
        assert_eq!(bearer(None).unwrap_err().kind, AuthErrorKind::Missing);
        assert_eq!(
            bearer(Some(&headers)).unwrap_err().kind,
            AuthErrorKind::Missing
        );
        headers.insert(AUTHORIZATION, "Basic abc");
        assert_eq!(
            bearer(Some(&headers)).unwrap_err().kind,
            AuthErrorKind::Malformed
        );
        headers.insert(AUTHORIZATION, "Bearer abc.def.ghi");
        assert_eq!(bearer(Some(&headers)).unwrap(), "abc.def.ghi");
        assert_eq!(
            Auth::default()
                .authenticate(Some(&headers), NOW)
                .unwrap_err()
                .kind,
            AuthErrorKind::Malformed
        );

        let crm = Actor {
            id: "crm".into(),
            role: Role::Service,
        };
        let verified = Caller::Verified(crm.clone());
        assert_eq!(verified.bind(None).unwrap(), crm);
        assert_eq!(verified.bind(Some(&crm)).unwrap(), crm);
        let other = Actor {
            id: "crm".into(),
            role: Role::Auditor,
        };
        let refused = verified.bind(Some(&other)).unwrap_err();
        assert_eq!(
            (refused.code, refused.details[0].path.as_str()),
            (RejectionCode::Forbidden, "/actor")
        );
        assert_eq!(Caller::Unverified.bind(Some(&other)).unwrap(), other);
        assert_eq!(
            Caller::Unverified.bind(None).unwrap_err().code,
            RejectionCode::Validation
        );
        assert_eq!(
            Caller::Unverified
                .bind(Some(&Actor::system("ops")))
                .unwrap_err()
                .code,
            RejectionCode::Forbidden
        );
    }
}
