//! Short-lived JWT access tokens (HS256), signed with a key derived from the
//! master key, so that no second secret has to be configured.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const ISSUER: &str = "integro";

#[derive(Debug, Serialize, Deserialize)]
pub struct AccessClaims {
    pub sub: Uuid,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    /// Always `access`: no other kind of token is accepted as one.
    pub typ: String,
    /// The user's token generation when it was issued; a token of an older
    /// generation is refused (its sessions were ended).
    #[serde(default)]
    pub generation: i64,
}

#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl TokenKeys {
    pub fn new(secret: &[u8; 32]) -> TokenKeys {
        TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    /// An access token for `user` (at its token `generation`) valid for
    /// `ttl_secs` (negative: already expired).
    pub fn sign(&self, user: Uuid, generation: i64, ttl_secs: i64) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = AccessClaims {
            sub: user,
            iat: now,
            exp: now + ttl_secs,
            iss: ISSUER.into(),
            typ: "access".into(),
            generation,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of serialisable claims cannot fail")
    }

    /// The user an access token was issued to and its token generation then,
    /// or why it is refused.
    pub fn verify(&self, token: &str) -> Result<(Uuid, i64), &'static str> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        match decode::<AccessClaims>(token, &self.decoding, &validation) {
            Ok(data) if data.claims.typ == "access" => {
                Ok((data.claims.sub, data.claims.generation))
            }
            Ok(_) => Err("not an access token"),
            Err(e) => match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    Err("the access token has expired; refresh it")
                }
                _ => Err("the access token is invalid"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_until_they_expire() {
        let keys = TokenKeys::new(&[7; 32]);
        let user = Uuid::now_v7();
        assert_eq!(keys.verify(&keys.sign(user, 3, 60)), Ok((user, 3)));
        assert!(
            keys.verify(&keys.sign(user, 0, -1))
                .unwrap_err()
                .contains("expired")
        );
    }

    #[test]
    fn other_keys_and_tampering_are_refused() {
        let keys = TokenKeys::new(&[7; 32]);
        let token = keys.sign(Uuid::now_v7(), 0, 60);
        assert!(TokenKeys::new(&[8; 32]).verify(&token).is_err());
        let mut tampered = token.clone();
        tampered.replace_range(tampered.len() - 2.., "xx");
        assert!(keys.verify(&tampered).is_err());
    }
}
