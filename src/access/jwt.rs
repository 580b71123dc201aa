//! JSON Web Tokens (RFC 7519) in `Authorization: Bearer`, checked with `jsonwebtoken`.
//!
//! The algorithm is the operator's, fixed with the key, never the token's: a token whose
//! header names another one is refused. That closes both classic holes: `alg: none` (an
//! unsigned token; the crate has no such algorithm, so its header does not even parse) and
//! algorithm confusion (an RS256 public key, which is public, used as an HS256 secret to sign
//! a forged token).

use std::fmt;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};

/// A checked token's claims.
pub type Claims = serde_json::Map<String, serde_json::Value>;

/// Why a token was refused; shown only in debug logs, never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    /// Not three base64url parts, or a header that does not parse (`alg: none` lands here).
    Malformed,
    /// The header names another algorithm than the configured one.
    WrongAlgorithm,
    /// No configured key has the token's `kid`.
    UnknownKey,
    /// Signature, expiry, not-before, issuer or audience: the crate's reason.
    Invalid(String),
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtError::Malformed => f.write_str("malformed token"),
            JwtError::WrongAlgorithm => f.write_str("token algorithm is not the configured one"),
            JwtError::UnknownKey => f.write_str("no key for the token's kid"),
            JwtError::Invalid(why) => write!(f, "invalid token: {why}"),
        }
    }
}

impl std::error::Error for JwtError {}

/// How tokens are verified.
#[derive(Clone)]
pub struct JwtVerifier {
    algorithm: Algorithm,
    /// `(kid, key)`; a key without `kid` serves tokens without one.
    keys: Vec<(Option<String>, DecodingKey)>,
    validation: Validation,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithm", &self.algorithm)
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// Where the verification key comes from.
pub enum KeySource<'a> {
    /// HS256: the shared secret.
    Secret(&'a [u8]),
    /// RS256 or ES256: a public key in PEM.
    Pem(&'a [u8]),
    /// RS256 or ES256: a JWKS document (RFC 7517), keys chosen by `kid`.
    Jwks(&'a str),
}

/// What a token must say besides being well signed.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Seconds of clock skew allowed for `exp` and `nbf`.
    pub leeway_s: u64,
}

pub fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    match name {
        "HS256" => Ok(Algorithm::HS256),
        "RS256" => Ok(Algorithm::RS256),
        "ES256" => Ok(Algorithm::ES256),
        other => Err(format!("algorithm '{other}' must be HS256, RS256 or ES256")),
    }
}

impl JwtVerifier {
    pub fn new(
        algorithm: Algorithm,
        source: KeySource<'_>,
        expect: &Expect,
    ) -> Result<JwtVerifier, String> {
        let keys = match (algorithm, source) {
            (Algorithm::HS256, KeySource::Secret(secret)) => {
                // RFC 7518 section 3.2: a key at least as long as the hash.
                if secret.len() < 32 {
                    return Err("an HS256 secret must be at least 32 bytes".to_owned());
                }
                vec![(None, DecodingKey::from_secret(secret))]
            }
            (Algorithm::RS256, KeySource::Pem(pem)) => vec![(
                None,
                DecodingKey::from_rsa_pem(pem).map_err(|e| format!("RSA public key: {e}"))?,
            )],
            (Algorithm::ES256, KeySource::Pem(pem)) => vec![(
                None,
                DecodingKey::from_ec_pem(pem).map_err(|e| format!("EC public key: {e}"))?,
            )],
            (Algorithm::RS256 | Algorithm::ES256, KeySource::Jwks(text)) => jwks(algorithm, text)?,
            (Algorithm::HS256, _) => return Err("HS256 needs a secret".to_owned()),
            _ => return Err("RS256 and ES256 need a public key (PEM) or a JWKS file".to_owned()),
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = expect.leeway_s;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        match &expect.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &expect.audience {
            Some(aud) => validation.set_audience(&[aud]),
            // Without a configured audience a token's `aud` is not ours to judge.
            None => validation.validate_aud = false,
        }
        Ok(JwtVerifier {
            algorithm,
            keys,
            validation,
        })
    }

    /// The claims of `token` if it is well signed with our key and algorithm and currently
    /// valid.
    pub fn verify(&self, token: &str) -> Result<Claims, JwtError> {
        let header = decode_header(token).map_err(|_| JwtError::Malformed)?;
        if header.alg != self.algorithm {
            return Err(JwtError::WrongAlgorithm);
        }
        let key = self
            .keys
            .iter()
            .find(|(kid, _)| kid.is_none() || *kid == header.kid)
            .map(|(_, key)| key)
            .ok_or(JwtError::UnknownKey)?;
        decode::<Claims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| JwtError::Invalid(e.to_string()))
    }
}

fn jwks(algorithm: Algorithm, text: &str) -> Result<Vec<(Option<String>, DecodingKey)>, String> {
    let set: JwkSet = serde_json::from_str(text).map_err(|e| format!("JWKS: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        // A key that says it is for another algorithm is skipped, not trusted for ours.
        if let Some(alg) = jwk.common.key_algorithm {
            if alg.to_string() != format!("{algorithm:?}") {
                continue;
            }
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("JWKS key: {e}"))?;
        keys.push((jwk.common.key_id.clone(), key));
    }
    if keys.is_empty() {
        return Err(format!("JWKS has no key for {algorithm:?}"));
    }
    if keys.len() > 1 && keys.iter().any(|(kid, _)| kid.is_none()) {
        return Err("JWKS with several keys: every key needs a kid".to_owned());
    }
    Ok(keys)
}

/// A claim as a header value: strings as they are, numbers and booleans as JSON writes them;
/// objects, arrays and values with control characters are not forwarded.
pub fn claim_value(claims: &Claims, name: &str) -> Option<String> {
    let text = match claims.get(name)? {
        serde_json::Value::String(s) => s.clone(),
        v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => v.to_string(),
        _ => return None,
    };
    if text.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return None;
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn token(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    fn verifier() -> JwtVerifier {
        let expect = Expect {
            issuer: Some("auth.test".to_owned()),
            audience: Some("api".to_owned()),
            leeway_s: 5,
        };
        JwtVerifier::new(Algorithm::HS256, KeySource::Secret(SECRET), &expect).unwrap()
    }

    #[test]
    fn a_good_token_and_every_way_to_be_bad() {
        let v = verifier();
        let good = json!({"sub": "alice", "exp": now() + 60, "iss": "auth.test", "aud": "api"});
        let claims = v.verify(&token(good)).unwrap();
        assert_eq!(claim_value(&claims, "sub").as_deref(), Some("alice"));

        let cases = [
            (
                "expired",
                json!({"exp": now() - 60, "iss": "auth.test", "aud": "api"}),
            ),
            (
                "not yet valid",
                json!({"exp": now() + 120, "nbf": now() + 60, "iss": "auth.test", "aud": "api"}),
            ),
            (
                "issuer",
                json!({"exp": now() + 60, "iss": "evil.test", "aud": "api"}),
            ),
            (
                "audience",
                json!({"exp": now() + 60, "iss": "auth.test", "aud": "other"}),
            ),
            ("no exp", json!({"iss": "auth.test", "aud": "api"})),
        ];
        for (what, claims) in cases {
            assert!(v.verify(&token(claims)).is_err(), "{what}");
        }
        // Within the leeway: expired 2 s ago still passes.
        let late = json!({"exp": now() - 2, "iss": "auth.test", "aud": "api"});
        assert!(v.verify(&token(late)).is_ok());
        // Wrong secret.
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &json!({"exp": now() + 60, "iss": "auth.test", "aud": "api"}),
            &EncodingKey::from_secret(b"another secret that is long enough!!"),
        )
        .unwrap();
        assert!(matches!(v.verify(&forged), Err(JwtError::Invalid(_))));
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let v = verifier();
        let claims = json!({"exp": now() + 60, "iss": "auth.test", "aud": "api"}).to_string();
        let claims = base64_url(claims.as_bytes());
        let none = format!("{}.{claims}.", base64_url(br#"{"alg":"none","typ":"JWT"}"#));
        assert_eq!(v.verify(&none), Err(JwtError::Malformed));
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &json!({"exp": now() + 60, "iss": "auth.test", "aud": "api"}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(v.verify(&hs512), Err(JwtError::WrongAlgorithm));
        assert!(JwtVerifier::new(
            Algorithm::HS256,
            KeySource::Secret(b"short"),
            &Expect::default()
        )
        .is_err());
    }

    /// ES256 with a key pair made now (rcgen): from a PEM public key and from a JWKS with a
    /// `kid`; an HS256 token "signed" with the public key as its secret (algorithm
    /// confusion) is refused.
    #[test]
    fn es256_from_pem_and_jwks_and_algorithm_confusion() {
        let pair = rcgen::KeyPair::generate().unwrap();
        let public = pair.public_key_pem();
        let signer = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
        let claims = json!({"sub": "alice", "exp": now() + 60});
        let token = encode(&Header::new(Algorithm::ES256), &claims, &signer).unwrap();
        let expect = Expect {
            leeway_s: 5,
            ..Expect::default()
        };
        let v =
            JwtVerifier::new(Algorithm::ES256, KeySource::Pem(public.as_bytes()), &expect).unwrap();
        let got = v.verify(&token).unwrap();
        assert_eq!(claim_value(&got, "sub").as_deref(), Some("alice"));
        let confused = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(public.as_bytes()),
        )
        .unwrap();
        assert_eq!(v.verify(&confused), Err(JwtError::WrongAlgorithm));

        let raw = pair.public_key_raw(); // 0x04, x, y
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
            "x": base64_url(&raw[1..33]), "y": base64_url(&raw[33..65]),
        }]})
        .to_string();
        let v = JwtVerifier::new(Algorithm::ES256, KeySource::Jwks(&jwks), &expect).unwrap();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("k1".to_owned());
        assert!(v
            .verify(&encode(&header, &claims, &signer).unwrap())
            .is_ok());
        header.kid = Some("k2".to_owned());
        let other = encode(&header, &claims, &signer).unwrap();
        assert_eq!(v.verify(&other), Err(JwtError::UnknownKey));
        assert_eq!(
            v.verify(&token),
            Err(JwtError::UnknownKey),
            "no kid, and the set has one"
        );
        assert!(JwtVerifier::new(Algorithm::RS256, KeySource::Jwks(&jwks), &expect).is_err());
    }

    /// An RS256 token made once with a throwaway key (`openssl genpkey`, then discarded: no
    /// private key is committed), `{"sub":"rsa-user","exp":4102444800}`, and its public key.
    const RSA_TOKEN: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJyc2EtdXNlciIsImV4cCI6NDEwMjQ0NDgwMH0.X_kRit8HYseroqtH2LNLWsBOUkAOvD91k-SAi_xumrv1bGHDfFR0YRMckZf-WuilWkbdukwNeKmRUzi1A1zaKcEHYgjaviK_lmr8oREUR1WL5JBQztIpFfa_FMv3eTNG0dQfHIurD-MsDY0WJRh927i9cM6RgdVquoOSCHFCa6yM6TOkT84nbMn8y3Vdq1Qiv_HRM55MGVBCrqX4dogC_-C7HcWT2fqoFbgcgXDiDawpzLsPOXLTPdbfwCqQg1YdzvDUhGyzevi53lJUhzGQGmDO_bCYRdM11H9qil5t8t1K0H1z-8gnW3wazPHVLLeofubaeIqm4sUMDXfhBaFRfA";
    const RSA_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAgwxttz1euTFpGfMt5hTe
q9M342wIPaNyTO4bUvcAQbRsCapuTTeoOHgpc8kR0Yup8A9AkM2uMNLVCVo5C/Ym
3z09GA3Yp6dtlL2nbA6KIKqnlfR+YZ/ZYWgjtI5506LIeyxzJXJS1OL/TLTaY9ng
JIkuYUUv+JFWMBvgn2SM1QbBNpmK2SrLSvk9miqHSCAEcVFC+7a7L0kB8wqlaeDL
+Zov4ylkjCECEYsw/EhGGxrVsnQX60fg0PfywxzCzaSuIARdrJQnIafmig8BbogY
qAum1p4I8kZ0+QMgHX/skZ8AWG2oeMrVbk9MzDLBBk3aWfAl24tBHNYZcgzwa4qk
DwIDAQAB
-----END PUBLIC KEY-----
";

    /// RS256 from a PEM public key, and the classic confusion: an HS256 token whose HMAC key
    /// is that public key, which a verifier taking the algorithm from the token would accept.
    #[test]
    fn rs256_from_pem_and_the_public_key_as_hmac_secret_refused() {
        let v = JwtVerifier::new(
            Algorithm::RS256,
            KeySource::Pem(RSA_PUBLIC.as_bytes()),
            &Expect::default(),
        )
        .unwrap();
        let claims = v.verify(RSA_TOKEN).unwrap();
        assert_eq!(claim_value(&claims, "sub").as_deref(), Some("rsa-user"));
        let confused = encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "admin", "exp": now() + 60}),
            &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
        )
        .unwrap();
        assert_eq!(v.verify(&confused), Err(JwtError::WrongAlgorithm));
        // One changed character inside the signature (not the last, whose low bits are
        // padding).
        let mut tampered = RSA_TOKEN.to_owned();
        let at = tampered.len() - 10;
        let swap = if &tampered[at..=at] == "A" { "B" } else { "A" };
        tampered.replace_range(at..=at, swap);
        assert!(matches!(v.verify(&tampered), Err(JwtError::Invalid(_))));
    }

    /// base64url without padding, enough for a test header.
    fn base64_url(bytes: &[u8]) -> String {
        const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }
}
