//! JSON Web Tokens (`access::jwt`): the header and claims parser behind `Authorization:
//! Bearer`, with an HS256 verifier whose secret only this target knows.
//!
//! The first byte picks the mode; the rest is the input.
//!
//! - Even: the input is a token as a client would send it. `verify` never panics, and a token
//!   it accepts really is signed with the secret: its signature is the HMAC of its first two
//!   parts (so only a seed signed here can pass, and no parser quirk lets a forgery through).
//!   Every claim `claim_value` gives as a header value is free of control characters.
//! - Odd: the input is a claims object (JSON; anything else becomes `{"sub": TEXT}`), its
//!   registered claims of the wrong type dropped (the verifier refuses those, rightly). Signed
//!   here with a far `exp` and no `nbf`, it verifies to exactly the claims signed (as their
//!   JSON text parses); the same
//!   token with one character of its signature changed (not the last, whose low bits are
//!   padding), or its payload re-encoded with one claim added, or its header naming another
//!   algorithm, is refused.
#![no_main]

use jsonwebtoken::{crypto, encode, Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use revproxy::access::jwt::{claim_value, Claims, Expect, JwtError, JwtVerifier, KeySource};

const SECRET: &[u8] = b"fuzz-secret-fuzz-secret-fuzz-sec";
/// 2100-01-01: far enough that a run never sees its tokens expire.
const FAR_EXP: u64 = 4_102_444_800;
const BASE64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn verifier() -> JwtVerifier {
    JwtVerifier::new(
        Algorithm::HS256,
        KeySource::Secret(SECRET),
        &Expect::default(),
    )
    .expect("a 32-byte secret makes a verifier")
}

fn sign(claims: &Claims, header: &Header) -> String {
    encode(header, claims, &EncodingKey::from_secret(SECRET)).expect("claims serialize")
}

fn check_claim_values(claims: &Claims) {
    for name in claims.keys() {
        if let Some(value) = claim_value(claims, name) {
            assert!(
                !value.bytes().any(|b| b < 0x20 || b == 0x7f),
                "claim {name:?} gives a header value with a control character: {value:?}"
            );
        }
    }
}

fn as_client_token(v: &JwtVerifier, token: &str) {
    let Ok(claims) = v.verify(token) else {
        return;
    };
    let (signing_input, signature) = token
        .rsplit_once('.')
        .expect("an accepted token has three parts");
    let expected = crypto::sign(
        signing_input.as_bytes(),
        &EncodingKey::from_secret(SECRET),
        Algorithm::HS256,
    )
    .expect("HMAC signs anything");
    assert_eq!(
        signature, expected,
        "accepted a token not signed with the secret: {token:?}"
    );
    check_claim_values(&claims);
}

fn as_claims(v: &JwtVerifier, input: &[u8], pick: u8) {
    let mut claims = match serde_json::from_slice::<serde_json::Value>(input) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => {
            let mut map = Claims::new();
            let text = String::from_utf8_lossy(input).into_owned();
            map.insert("sub".to_owned(), serde_json::Value::String(text));
            map
        }
    };
    claims.insert("exp".to_owned(), FAR_EXP.into());
    claims.remove("nbf");
    // Registered claims of the wrong type (a `sub` that is an array) are refused by
    // jsonwebtoken, rightly (RFC 7519 section 4.1); this mode is about claims that are valid.
    claims.retain(|name, value| match name.as_str() {
        "sub" | "iss" | "jti" => value.is_string(),
        "aud" => {
            value.is_string()
                || value
                    .as_array()
                    .is_some_and(|items| items.iter().all(serde_json::Value::is_string))
        }
        "iat" => value.is_number(),
        _ => true,
    });
    let token = sign(&claims, &Header::new(Algorithm::HS256));
    let got = v
        .verify(&token)
        .unwrap_or_else(|e| panic!("{e}: {token:?}"));
    // Compared with the signed JSON text as parsed, not with the map it was written from:
    // serde_json's default float parsing is not an exact round trip (the first run found
    // 1.8446744770309554e19 read back as 1.844674477030955e19), and that is not the proxy's.
    let signed: Claims =
        serde_json::from_str(&serde_json::to_string(&claims).expect("claims serialize"))
            .expect("serde_json reads what it wrote");
    assert_eq!(got, signed, "the claims signed are the claims verified");
    check_claim_values(&got);

    // One character of the signature changed.
    let dot = token.rfind('.').expect("three parts");
    let signature_len = token.len() - dot - 1;
    assert!(signature_len > 1);
    let at = dot + 1 + usize::from(pick) % (signature_len - 1);
    let old = token.as_bytes()[at];
    let new = BASE64URL
        [(BASE64URL.iter().position(|&c| c == old).unwrap_or(0) + 1 + usize::from(pick) % 63) % 64];
    let mut tampered = token.clone().into_bytes();
    tampered[at] = new;
    let tampered = String::from_utf8(tampered).expect("base64url is ASCII");
    assert!(
        matches!(v.verify(&tampered), Err(JwtError::Invalid(_))),
        "a changed signature was accepted: {tampered:?}"
    );

    // Another payload under the original signature.
    let mut more = claims.clone();
    more.insert("admin".to_owned(), true.into());
    let forged_payload = sign(&more, &Header::new(Algorithm::HS256));
    let (forged_input, _) = forged_payload.rsplit_once('.').expect("three parts");
    let forged = format!("{forged_input}{}", &token[dot..]);
    assert!(v.verify(&forged).is_err(), "a changed payload was accepted");

    // The header names another algorithm, signed with the same secret.
    let other = if pick % 2 == 0 {
        Algorithm::HS384
    } else {
        Algorithm::HS512
    };
    assert_eq!(
        v.verify(&sign(&claims, &Header::new(other))),
        Err(JwtError::WrongAlgorithm)
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let v = verifier();
    if mode % 2 == 0 {
        if let Ok(token) = std::str::from_utf8(input) {
            as_client_token(&v, token);
        }
    } else {
        as_claims(&v, input, mode / 2);
    }
});
