//! When a credential stops working, where its source says so: an annotation anyone can set on a
//! source Secret, the `expires_at` key of External Secrets' ECR generator, or the `exp` claim of
//! a password that is a JWT (Azure Container Registry tokens, for one). Pure.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;

/// The annotation on a source Secret that says when its credential expires (RFC 3339).
pub const EXPIRES_AT_ANNOTATION: &str = "regcred.dev/expires-at";

/// The source Secret key of External Secrets' ECR generator that holds the token's expiry, in
/// UNIX seconds.
pub const EXPIRES_AT_KEY: &str = "expires_at";

/// Where an expiry was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpirySource {
    Annotation,
    ExpiresAtKey,
    TokenClaim,
}

impl std::fmt::Display for ExpirySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExpirySource::Annotation => "the annotation regcred.dev/expires-at",
            ExpirySource::ExpiresAtKey => "the key expires_at",
            ExpirySource::TokenClaim => "the exp claim of the password (a JWT)",
        })
    }
}

/// An expiry and where it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    pub at: Timestamp,
    pub from: ExpirySource,
}

impl Expiry {
    /// The earlier of two expiries: a credential stops working at the first one.
    pub fn earliest(expiries: impl IntoIterator<Item = Expiry>) -> Option<Expiry> {
        expiries.into_iter().min_by_key(|expiry| expiry.at)
    }
}

/// The annotation's value: an RFC 3339 time such as `2026-12-04T18:00:00Z`.
pub fn parse_annotation(value: &str) -> Option<Timestamp> {
    value.trim().parse().ok()
}

/// The `expires_at` key's value: whole UNIX seconds, as the ECR generator writes them.
pub fn parse_unix_seconds(value: &str) -> Option<Timestamp> {
    Timestamp::from_second(value.trim().parse().ok()?).ok()
}

/// The `exp` claim of `token` when it is a JWT (three base64url parts, a header naming its `alg`);
/// None for any other password. Neither the token nor its claims are kept.
pub fn token_expiry(token: &str) -> Option<Timestamp> {
    let mut parts = token.split('.');
    let (header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let decode = |part: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?).ok()
    };
    decode(header)?.get("alg")?.as_str()?;
    let exp = decode(payload)?.get("exp")?.as_f64()?;
    // Seconds since the epoch; fractions are allowed by the JWT spec and dropped here.
    Timestamp::from_second(exp.floor() as i64).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(header: &str, payload: &str) -> String {
        format!("{}.{}.c2lnbmF0dXJl", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload))
    }

    #[test]
    fn a_jwt_password_expires_at_its_exp_claim() {
        let token = jwt(r#"{"alg":"RS256","typ":"JWT"}"#, r#"{"exp":1796400000,"sub":"x"}"#);
        assert_eq!(token_expiry(&token), Some(Timestamp::from_second(1_796_400_000).unwrap()));
        let fractional = jwt(r#"{"alg":"ES256"}"#, r#"{"exp":1796400000.75}"#);
        assert_eq!(token_expiry(&fractional), Some(Timestamp::from_second(1_796_400_000).unwrap()));
    }

    #[test]
    fn passwords_that_are_not_jwts_have_no_expiry() {
        for password in [
            "hunter2",
            "ya29.a0AfH6SMBx.y", // a Google access token: dots, not a JWT
            &jwt(r#"{"typ":"JWT"}"#, r#"{"exp":1796400000}"#), // no alg: not a JWS header
            &jwt(r#"{"alg":"none"}"#, r#"{"sub":"x"}"#), // no exp
            &jwt(r#"{"alg":"none"}"#, r#"{"exp":"soon"}"#), // exp not a number
            &format!("{}.extra", jwt(r#"{"alg":"none"}"#, r#"{"exp":1}"#)),
            "a.b.c",
            "",
        ] {
            assert_eq!(token_expiry(password), None, "{password}");
        }
    }

    #[test]
    fn annotation_and_key_formats() {
        assert_eq!(parse_annotation(" 2026-12-04T18:00:00Z "), Some(Timestamp::from_second(1_796_407_200).unwrap()));
        assert_eq!(parse_annotation("2026-12-04T19:00:00+01:00"), parse_annotation("2026-12-04T18:00:00Z"));
        assert_eq!(parse_annotation("tomorrow"), None);
        assert_eq!(parse_annotation("1796407200"), None);
        assert_eq!(parse_unix_seconds("1796407200\n"), Some(Timestamp::from_second(1_796_407_200).unwrap()));
        assert_eq!(parse_unix_seconds("2026-12-04"), None);
        assert_eq!(parse_unix_seconds("99999999999999999"), None);
    }

    #[test]
    fn the_earliest_expiry_wins() {
        let at = |s| Timestamp::from_second(s).unwrap();
        let found = Expiry::earliest([
            Expiry { at: at(300), from: ExpirySource::Annotation },
            Expiry { at: at(100), from: ExpirySource::TokenClaim },
            Expiry { at: at(200), from: ExpirySource::ExpiresAtKey },
        ]);
        assert_eq!(found, Some(Expiry { at: at(100), from: ExpirySource::TokenClaim }));
        assert_eq!(Expiry::earliest([]), None);
    }
}
