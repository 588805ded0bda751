//! Short-lived credentials: Ed25519-signed JWTs that target systems verify
//! offline with the published JWKS, or online with token introspection.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use hoist_api::{CredentialClaims, Jwk, Jwks};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use sha2::{Digest, Sha256};

use crate::store::{Store, StoreError};

pub struct Signer {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: Jwk,
}

#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the stored signing key is unusable: {0}")]
    BadKey(String),
}

impl Signer {
    /// Loads the broker's signing key, creating and storing one on first start.
    pub fn load_or_create(store: &dyn Store) -> Result<Self, SignerError> {
        let mut tx = store.transaction()?;
        let (kid, pkcs8) = match tx.signing_key()? {
            Some(key) => key,
            None => {
                let key = SigningKey::generate(&mut rand::rngs::OsRng);
                let der = key
                    .to_pkcs8_der()
                    .map_err(|err| SignerError::BadKey(err.to_string()))?;
                let kid = hex::encode(&Sha256::digest(key.verifying_key().as_bytes())[..8]);
                tx.insert_signing_key(&kid, der.as_bytes(), crate::clock::now())?;
                (kid, der.as_bytes().to_vec())
            }
        };
        tx.commit()?;
        Self::from_pkcs8(kid, &pkcs8)
    }

    /// A signer with a key kept outside the store (`hoistd serve --signing-key`).
    pub fn from_key(key: &SigningKey) -> Result<Self, SignerError> {
        let der = key
            .to_pkcs8_der()
            .map_err(|err| SignerError::BadKey(err.to_string()))?;
        Self::from_pkcs8(crate::keys::key_id(&key.verifying_key()), der.as_bytes())
    }

    fn from_pkcs8(kid: String, pkcs8: &[u8]) -> Result<Self, SignerError> {
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        let key = SigningKey::from_pkcs8_der(pkcs8)
            .map_err(|err| SignerError::BadKey(err.to_string()))?;
        let x = URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
        let decoding = DecodingKey::from_ed_components(&x)
            .map_err(|err| SignerError::BadKey(err.to_string()))?;
        Ok(Signer {
            jwk: Jwk {
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                x,
                kid: kid.clone(),
                alg: "EdDSA".into(),
                use_: "sig".into(),
            },
            kid,
            encoding: EncodingKey::from_ed_der(pkcs8),
            decoding,
        })
    }

    /// Signs any claims with the credential key (hoistd's own identity
    /// token for a target's sign-in).
    pub fn sign(&self, claims: &serde_json::Value) -> Result<String, SignerError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|err| SignerError::BadKey(err.to_string()))
    }

    pub fn issue(&self, claims: &CredentialClaims) -> Result<String, SignerError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|err| SignerError::BadKey(err.to_string()))
    }

    /// The claims of a token this broker signed and that has not expired,
    /// by hoistd's clock ([`crate::clock`]: the one its end was set by,
    /// not the host's).
    pub fn verify(&self, token: &str, issuer: &str) -> Option<CredentialClaims> {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.validate_exp = false;
        validation.set_issuer(&[issuer]);
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        let claims = jsonwebtoken::decode::<CredentialClaims>(token, &self.decoding, &validation)
            .ok()?
            .claims;
        (claims.exp >= crate::clock::now().timestamp()).then_some(claims)
    }

    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: vec![self.jwk.clone()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> CredentialClaims {
        CredentialClaims {
            iss: "https://hoist.example".into(),
            sub: "alice".into(),
            aud: "db".into(),
            iat: exp - 600,
            exp,
            jti: "j1".into(),
            role: "db".into(),
            grant_id: "gr_1".into(),
            scope: "db".into(),
            act: None,
        }
    }

    /// A credential ends by hoistd's clock, the one its end was set by:
    /// with this process's clock an hour ahead of the database server's
    /// (the clock followed an hour back), one that ends in half an hour by
    /// the server's is taken, though this host has it ended; and one past
    /// its end by the server's clock is not. (Moves the process's clock:
    /// each test runs in a process of its own.)
    #[test]
    fn a_credential_ends_by_hoistds_clock_not_the_hosts() {
        let signer = Signer::from_key(&SigningKey::generate(&mut rand::rngs::OsRng)).unwrap();
        assert!(crate::clock::follow(
            chrono::TimeDelta::hours(-1),
            chrono::TimeDelta::zero()
        ));
        let now = crate::clock::now().timestamp();
        let live = signer.issue(&claims(now + 1_800)).unwrap();
        let taken = signer.verify(&live, "https://hoist.example");
        assert_eq!(taken.map(|c| c.exp), Some(now + 1_800));
        let ended = signer.issue(&claims(now - 5)).unwrap();
        assert!(signer.verify(&ended, "https://hoist.example").is_none());
        crate::clock::follow(chrono::TimeDelta::zero(), chrono::TimeDelta::zero());
    }
}
