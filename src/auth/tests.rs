//! Tests of token verification ([`super::jwt`]). Valid tokens come from an
//! independent JWT library (the `jwt` crate, on the `hmac` and `sha2`
//! crates); tokens that no library would make (wrong types, `alg: none`,
//! duplicate names, ...) are assembled here with `hmac`, `sha2` and
//! `base64`, never with this module's own HMAC.

use super::error::{KeyError, Malformed, Part, TokenError};
use super::jwt::{
    self, ALGORITHM, Claims, KeySet, LEEWAY_SECONDS, MAX_KEYS, MAX_TOKEN_LEN, MIN_KEY_LEN, verify,
    verify_for_audience, verify_signature,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

const KEY_A: &[u8] = b"the first HS256 key, 32 bytes or more";
const KEY_B: &[u8] = b"the second HS256 key, rotated in, also long";
const KEY_C: &[u8] = b"a key this server does not know about at all";
/// 2026-05-28: the tests' "now".
const NOW: u64 = 1_780_000_000;
const SUBJECT: &str = "user-7f3a9c";
const NAME: &str = "Ann Example";
const ROOM: &str = "backstage-42";

fn keys(list: &[&[u8]]) -> KeySet {
    KeySet::new(list).expect("valid keys")
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// HMAC-SHA-256 by the `hmac` crate: independent of `super::hmac`.
fn reference_tag(key: &[u8], data: &[u8]) -> Vec<u8> {
    use ::hmac::Mac;
    let mut mac = ::hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// A token from raw header and claims text, signed with `key`.
fn assemble(header: &str, claims: &str, key: &[u8]) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let tag = reference_tag(key, input.as_bytes());
    format!("{input}.{}", b64(&tag))
}

/// A token from already-encoded parts, signed with `key`.
fn assemble_encoded(header: &str, claims: &str, key: &[u8]) -> String {
    let input = format!("{header}.{claims}");
    let tag = reference_tag(key, input.as_bytes());
    format!("{input}.{}", b64(&tag))
}

const HS256: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// A token made by the `jwt` crate (header `{"alg":"HS256"}`).
fn library_token(claims: serde_json::Value, key: &[u8]) -> String {
    use ::hmac::Mac;
    use ::jwt::SignWithKey;
    let key = ::hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key");
    claims.sign_with_key(&key).expect("signs")
}

/// The claims of a typical sign-in, valid at `NOW`.
fn typical_claims() -> serde_json::Value {
    json!({
        "sub": SUBJECT,
        "exp": NOW + 3600,
        "iat": NOW - 60,
        "nbf": NOW - 60,
        "name": NAME,
        "role": "op",
        "rooms": [ROOM, "staff"],
        "iss": "https://app.example",
    })
}

fn refusal(token: &str, keys: &KeySet) -> TokenError {
    match verify(token.as_bytes(), keys, NOW) {
        Ok(claims) => panic!("accepted: {claims:?}"),
        Err(error) => error,
    }
}

// ---------------------------------------------------------------------------
// RFC 7515 Appendix A.1
// ---------------------------------------------------------------------------

const A1_TOKEN: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9\
    .eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ\
    .dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const A1_KEY: &str =
    "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
const A1_CLAIMS: &[u8] =
    b"{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}";

fn a1_keys() -> KeySet {
    keys(&[&URL_SAFE_NO_PAD.decode(A1_KEY).unwrap()])
}

#[test]
fn rfc_7515_a1_passes_the_signature_layer() {
    assert_eq!(
        verify_signature(A1_TOKEN.as_bytes(), &a1_keys()).unwrap(),
        A1_CLAIMS
    );
    // The same example with the key rotated in as a second key.
    let key = URL_SAFE_NO_PAD.decode(A1_KEY).unwrap();
    let rotated = keys(&[KEY_A, &key]);
    assert_eq!(
        verify_signature(A1_TOKEN.as_bytes(), &rotated).unwrap(),
        A1_CLAIMS
    );
}

#[test]
fn rfc_7515_a1_with_one_bit_changed_or_another_key_is_refused() {
    let mut forged = A1_TOKEN.as_bytes().to_vec();
    // The last base64url digit carries the tag's last 4 bits (and 2 zero
    // bits): `k` (100100) → `o` (101000) changes two of them.
    let last = forged.len() - 1;
    assert_eq!(forged[last], b'k');
    forged[last] = b'o';
    assert_eq!(
        verify_signature(&forged, &a1_keys()),
        Err(TokenError::BadSignature)
    );
    assert_eq!(
        verify_signature(A1_TOKEN.as_bytes(), &keys(&[KEY_A])),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn rfc_7515_a1_is_refused_as_a_sign_in_for_its_missing_sub() {
    // Its exp (March 2011) has passed too, but a token without the user's
    // id is malformed for the chat whenever it is presented.
    for now in [NOW, 1_300_819_380 - 3600] {
        let error = verify(A1_TOKEN.as_bytes(), &a1_keys(), now).unwrap_err();
        assert_eq!(error, TokenError::Malformed(Malformed::Missing("sub")));
        assert_eq!(error.reason(), "token_malformed");
    }
    // With a `sub` added (and signed with the same key), what remains is
    // the past `exp`.
    let key = URL_SAFE_NO_PAD.decode(A1_KEY).unwrap();
    let with_sub = assemble(
        "{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}",
        "{\"iss\":\"joe\",\r\n \"sub\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}",
        &key,
    );
    assert_eq!(refusal(&with_sub, &a1_keys()), TokenError::Expired);
    let claims = verify(with_sub.as_bytes(), &a1_keys(), 1_300_819_380 - 1).unwrap();
    assert_eq!((claims.sub.as_str(), claims.exp), ("joe", 1_300_819_380));
}

// ---------------------------------------------------------------------------
// Tokens from an independent library
// ---------------------------------------------------------------------------

#[test]
fn a_token_from_an_independent_library_is_accepted_with_all_its_claims() {
    let token = library_token(typical_claims(), KEY_A);
    let claims = verify(token.as_bytes(), &keys(&[KEY_A]), NOW).unwrap();
    assert_eq!(
        claims,
        Claims {
            sub: SUBJECT.into(),
            exp: (NOW + 3600) as i64,
            name: Some(NAME.into()),
            nbf: Some((NOW - 60) as i64),
            iat: Some((NOW - 60) as i64),
            role: Some("op".into()),
            rooms: vec![ROOM.into(), "staff".into()],
        }
    );
    assert!(claims.is_operator());
    assert_eq!(claims.expires_at(), (NOW + 3600) as i64 + LEEWAY_SECONDS);
}

#[test]
fn only_sub_and_exp_are_required() {
    let token = library_token(json!({"sub": SUBJECT, "exp": NOW + 60}), KEY_A);
    let claims = verify(token.as_bytes(), &keys(&[KEY_A]), NOW).unwrap();
    assert_eq!(
        claims,
        Claims {
            sub: SUBJECT.into(),
            exp: (NOW + 60) as i64,
            name: None,
            nbf: None,
            iat: None,
            role: None,
            rooms: vec![],
        }
    );
    assert!(!claims.is_operator());
}

#[test]
fn unknown_claims_and_header_parameters_are_ignored() {
    let token = assemble(
        r#"{"alg":"HS256","typ":"JWT","kid":"2026-05"}"#,
        &format!(
            r#"{{"sub":"{SUBJECT}","exp":{},"iss":"app","jti":"x1","role":"admin","nested":{{"a":[1,{{}}]}}}}"#,
            NOW + 60
        ),
        KEY_A,
    );
    let claims = verify(token.as_bytes(), &keys(&[KEY_A]), NOW).unwrap();
    assert_eq!(claims.sub, SUBJECT);
    // A role other than "op" is carried but makes no operator.
    assert_eq!(claims.role.as_deref(), Some("admin"));
    assert!(!claims.is_operator());
}

#[test]
fn fractional_and_exponent_dates_round_towards_a_shorter_validity() {
    let token = assemble(
        HS256,
        &format!(r#"{{"sub":"u","exp":{NOW}.9,"nbf":{NOW}.1,"iat":1.5e0}}"#),
        KEY_A,
    );
    let claims = verify(token.as_bytes(), &keys(&[KEY_A]), NOW).unwrap();
    assert_eq!(claims.exp, NOW as i64);
    assert_eq!(claims.nbf, Some(NOW as i64 + 1));
    assert_eq!(claims.iat, Some(1));
    let token = assemble(HS256, r#"{"sub":"u","exp":1.78e9}"#, KEY_A);
    let claims = verify(token.as_bytes(), &keys(&[KEY_A]), 1_779_000_000).unwrap();
    assert_eq!(claims.exp, 1_780_000_000);
    // Beyond i64: saturates, valid for ever rather than wrapping negative.
    let token = assemble(HS256, r#"{"sub":"u","exp":1e30}"#, KEY_A);
    assert_eq!(
        verify(token.as_bytes(), &keys(&[KEY_A]), NOW).unwrap().exp,
        i64::MAX
    );
}

// ---------------------------------------------------------------------------
// Keys and rotation
// ---------------------------------------------------------------------------

#[test]
fn rotation_accepts_a_token_signed_with_either_key() {
    let rotating = keys(&[KEY_A, KEY_B]);
    for key in [KEY_A, KEY_B] {
        let token = library_token(typical_claims(), key);
        assert_eq!(
            verify(token.as_bytes(), &rotating, NOW).unwrap().sub,
            SUBJECT
        );
    }
    // After the old key is removed, its tokens are refused.
    let token = library_token(typical_claims(), KEY_A);
    assert_eq!(refusal(&token, &keys(&[KEY_B])), TokenError::BadSignature);
    // A key in neither slot.
    let token = library_token(typical_claims(), KEY_C);
    assert_eq!(refusal(&token, &rotating), TokenError::BadSignature);
}

#[test]
fn key_sets_hold_one_or_two_keys_of_at_least_32_bytes() {
    let short = [b'k'; MIN_KEY_LEN - 1];
    let exact = [b'k'; MIN_KEY_LEN];
    assert_eq!(KeySet::new(&[]).unwrap_err(), KeyError::NoKey);
    assert_eq!(
        KeySet::new(&[&short]).unwrap_err(),
        KeyError::TooShort { index: 1 }
    );
    assert_eq!(
        KeySet::new(&[KEY_A, &short]).unwrap_err(),
        KeyError::TooShort { index: 2 }
    );
    assert_eq!(KeySet::new(&[&exact]).unwrap().count(), 1);
    assert_eq!(KeySet::new(&[KEY_A, KEY_B]).unwrap().count(), MAX_KEYS);
    assert_eq!(
        KeySet::new(&[KEY_A, KEY_B, KEY_C]).unwrap_err(),
        KeyError::TooManyKeys
    );
    // A 32-byte key works end to end.
    let token = library_token(typical_claims(), &exact);
    assert!(verify(token.as_bytes(), &keys(&[&exact]), NOW).is_ok());
}

#[test]
fn the_secret_file_holds_a_key_per_line() {
    let file = [KEY_A, b"\r\n\n", KEY_B].concat();
    let set = KeySet::from_secret_file(&file).unwrap();
    assert_eq!(set.count(), 2);
    let token = library_token(typical_claims(), KEY_B);
    assert!(verify(token.as_bytes(), &set, NOW).is_ok());
    // Only the line ending is removed: a trailing space is part of the key.
    let spaced = KeySet::from_secret_file(&[KEY_A, b" \n"].concat()).unwrap();
    let token = library_token(typical_claims(), KEY_A);
    assert_eq!(refusal(&token, &spaced), TokenError::BadSignature);

    assert_eq!(
        KeySet::from_secret_file(b"\n\r\n").unwrap_err(),
        KeyError::NoKey
    );
    let three = [KEY_A, b"\n", KEY_B, b"\n", KEY_C, b"\n"].concat();
    assert_eq!(
        KeySet::from_secret_file(&three).unwrap_err(),
        KeyError::TooManyKeys
    );
}

#[test]
fn keys_never_show_in_debug_or_errors() {
    let set = keys(&[KEY_A, KEY_B]);
    let debug = format!("{set:?}");
    assert_eq!(debug, "KeySet { keys: 2, .. }");
    let short = b"a-short-secret-value";
    let error = KeySet::new(&[short]).unwrap_err();
    for text in [error.to_string(), format!("{error:?}")] {
        assert!(!text.contains("short-secret"), "{text}");
    }
}

// ---------------------------------------------------------------------------
// Each refusal, its reason, and no trace of the token in its text
// ---------------------------------------------------------------------------

/// Asserts that `error`'s `Display` and `Debug` quote nothing of `token`:
/// none of its three parts, no 8 consecutive bytes of it, and none of the
/// values the tests put in tokens.
fn assert_quotes_nothing_of(error: TokenError, token: &str) {
    let display = error.to_string();
    let debug = format!("{error:?}");
    for text in [&display, &debug] {
        for part in token.split('.').filter(|part| part.len() >= 4) {
            assert!(!text.contains(part), "{text:?} quotes a part of the token");
        }
        let bytes = token.as_bytes();
        for window in bytes.windows(8) {
            let window = String::from_utf8_lossy(window);
            assert!(!text.contains(&*window), "{text:?} quotes {window:?}");
        }
        for value in [
            SUBJECT, NAME, ROOM, "none", "HS512", "RS256", "hs256", "forged",
        ] {
            assert!(!text.contains(value), "{text:?} quotes {value:?}");
        }
    }
    assert!(display.contains(error.rfc_section()), "{display}");
    assert!(display.contains(error.reason()), "{display}");
}

/// Every kind of refused token: what it is, the token, and the refusal.
fn refused_tokens() -> Vec<(&'static str, String, TokenError)> {
    use super::error::Malformed::*;
    use super::error::TokenError::*;
    let valid = library_token(typical_claims(), KEY_A);
    let parts: Vec<&str> = valid.split('.').collect();
    let (header, claims, signature) = (parts[0], parts[1], parts[2]);
    let claims_with = |extra: &str| {
        format!(
            r#"{{"sub":"{SUBJECT}","exp":{},"name":"{NAME}"{extra}}}"#,
            NOW + 3600
        )
    };
    let signed = |claims: &str| assemble(HS256, claims, KEY_A);
    let forged_claims = b64(claims_with(r#","role":"op","rooms":["forged"]"#).as_bytes());

    vec![
        // Length, checked before anything else.
        ("oversized garbage", "x".repeat(MAX_TOKEN_LEN + 1), TooLong),
        (
            "oversized but well-formed",
            signed(&claims_with(&format!(
                r#","pad":"{}""#,
                "p".repeat(MAX_TOKEN_LEN)
            ))),
            TooLong,
        ),
        // Shape.
        ("empty", String::new(), Malformed(NotThreeParts)),
        ("one part", header.to_string(), Malformed(NotThreeParts)),
        (
            "truncated in the claims",
            valid[..header.len() + 1 + claims.len() / 2].to_string(),
            Malformed(NotThreeParts),
        ),
        (
            "four parts",
            format!("{valid}.{signature}"),
            Malformed(NotThreeParts),
        ),
        // Header.
        (
            "padded header",
            format!("{header}=.{claims}.{signature}"),
            Malformed(Base64(Part::Header)),
        ),
        (
            "plain base64 in the header",
            format!("{}.{claims}.{signature}", header.replace('J', "+")),
            Malformed(Base64(Part::Header)),
        ),
        (
            "header is not JSON",
            format!("{}.{claims}.{signature}", b64(b"{\"alg\":\"HS256\"")),
            Malformed(NotJsonObject(Part::Header)),
        ),
        (
            "header is a JSON array",
            format!("{}.{claims}.{signature}", b64(b"[\"HS256\"]")),
            Malformed(NotJsonObject(Part::Header)),
        ),
        (
            "header is not UTF-8",
            format!("{}.{claims}.{signature}", b64(b"{\"alg\":\"HS256\xff\"}")),
            Malformed(NotJsonObject(Part::Header)),
        ),
        (
            "header without alg",
            assemble(r#"{"typ":"JWT"}"#, &claims_with(""), KEY_A),
            Malformed(Missing("alg")),
        ),
        (
            "alg of the wrong type",
            assemble(r#"{"alg":256}"#, &claims_with(""), KEY_A),
            Malformed(WrongType("alg")),
        ),
        (
            "alg twice",
            assemble(r#"{"alg":"HS256","alg":"none"}"#, &claims_with(""), KEY_A),
            Malformed(DuplicateMember(Part::Header)),
        ),
        // alg: none, unsigned (RFC 7519 §6.1's unsecured JWT).
        (
            "alg none, no signature",
            format!(
                "{}.{}.",
                b64(br#"{"alg":"none"}"#),
                b64(claims_with("").as_bytes())
            ),
            AlgorithmNotAllowed,
        ),
        (
            "alg none, with a valid HMAC",
            assemble(r#"{"alg":"none"}"#, &claims_with(""), KEY_A),
            AlgorithmNotAllowed,
        ),
        (
            "alg HS512",
            assemble(r#"{"alg":"HS512"}"#, &claims_with(""), KEY_A),
            AlgorithmNotAllowed,
        ),
        (
            "alg RS256 (key confusion)",
            assemble(r#"{"alg":"RS256"}"#, &claims_with(""), KEY_A),
            AlgorithmNotAllowed,
        ),
        (
            "alg in the wrong case",
            assemble(r#"{"alg":"hs256"}"#, &claims_with(""), KEY_A),
            AlgorithmNotAllowed,
        ),
        (
            "alg none and a garbage signature: the header is checked first",
            format!("{}.{claims}.!!", b64(br#"{"alg":"none"}"#)),
            AlgorithmNotAllowed,
        ),
        (
            "crit",
            assemble(r#"{"alg":"HS256","crit":["exp"]}"#, &claims_with(""), KEY_A),
            CriticalExtension,
        ),
        // Signature.
        (
            "claims changed after signing",
            format!("{header}.{forged_claims}.{signature}"),
            BadSignature,
        ),
        (
            "signed with another key",
            library_token(typical_claims(), KEY_C),
            BadSignature,
        ),
        (
            "signature removed",
            format!("{header}.{claims}."),
            BadSignature,
        ),
        (
            "signature truncated to 24 bytes",
            format!("{header}.{claims}.{}", &signature[..32]),
            BadSignature,
        ),
        (
            "signature of another token",
            format!(
                "{header}.{claims}.{}",
                library_token(json!({"sub": "x", "exp": NOW + 1}), KEY_A)
                    .rsplit('.')
                    .next()
                    .unwrap()
            ),
            BadSignature,
        ),
        (
            "signature with padding",
            format!("{valid}="),
            Malformed(Base64(Part::Signature)),
        ),
        // Claims: read only once the signature holds.
        (
            "claims not base64url (signed)",
            assemble_encoded(&b64(HS256.as_bytes()), "e30=", KEY_A),
            Malformed(Base64(Part::Claims)),
        ),
        (
            "claims not JSON (signed)",
            signed(&format!(r#"{{"sub":"{SUBJECT}","exp":1"#)),
            Malformed(NotJsonObject(Part::Claims)),
        ),
        (
            "claims a JSON string (signed)",
            signed(&format!(r#""{SUBJECT}""#)),
            Malformed(NotJsonObject(Part::Claims)),
        ),
        (
            "sub twice",
            signed(&claims_with(r#","sub":"admin""#)),
            Malformed(DuplicateMember(Part::Claims)),
        ),
        (
            "no sub",
            signed(&format!(r#"{{"exp":{},"name":"{NAME}"}}"#, NOW + 60)),
            Malformed(Missing("sub")),
        ),
        (
            "no exp",
            signed(&format!(r#"{{"sub":"{SUBJECT}","name":"{NAME}"}}"#)),
            Malformed(Missing("exp")),
        ),
        (
            "empty sub",
            signed(&format!(r#"{{"sub":"","exp":{}}}"#, NOW + 60)),
            Malformed(EmptySubject),
        ),
        (
            "sub a number",
            signed(&format!(r#"{{"sub":7,"exp":{}}}"#, NOW + 60)),
            Malformed(WrongType("sub")),
        ),
        (
            "exp a string",
            signed(&format!(r#"{{"sub":"{SUBJECT}","exp":"{}"}}"#, NOW + 60)),
            Malformed(WrongType("exp")),
        ),
        (
            "exp beyond f64",
            signed(&format!(r#"{{"sub":"{SUBJECT}","exp":1e999}}"#)),
            Malformed(WrongType("exp")),
        ),
        (
            "nbf a boolean",
            signed(&claims_with(r#","nbf":true"#)),
            Malformed(WrongType("nbf")),
        ),
        (
            "iat null",
            signed(&claims_with(r#","iat":null"#)),
            Malformed(WrongType("iat")),
        ),
        (
            "name a number",
            signed(&format!(
                r#"{{"sub":"{SUBJECT}","exp":{},"name":1}}"#,
                NOW + 60
            )),
            Malformed(WrongType("name")),
        ),
        (
            "role an object",
            signed(&claims_with(r#","role":{"op":true}"#)),
            Malformed(WrongType("role")),
        ),
        (
            "rooms a string",
            signed(&claims_with(&format!(r#","rooms":"{ROOM}""#))),
            Malformed(WrongType("rooms")),
        ),
        (
            "rooms holding a number",
            signed(&claims_with(&format!(r#","rooms":["{ROOM}",7]"#))),
            Malformed(WrongType("rooms")),
        ),
        (
            "aud a number",
            signed(&claims_with(r#","aud":7"#)),
            Malformed(WrongType("aud")),
        ),
        (
            "an audience, for a server that has none",
            signed(&claims_with(r#","aud":"another-service""#)),
            WrongAudience,
        ),
        // Time.
        (
            "expired",
            library_token(json!({"sub": SUBJECT, "exp": NOW - 3600}), KEY_A),
            Expired,
        ),
        (
            "not yet valid",
            library_token(
                json!({"sub": SUBJECT, "exp": NOW + 7200, "nbf": NOW + 3600}),
                KEY_A,
            ),
            NotYetValid,
        ),
        (
            "expired and not yet valid",
            library_token(
                json!({"sub": SUBJECT, "exp": NOW - 3600, "nbf": NOW + 3600}),
                KEY_A,
            ),
            Expired,
        ),
    ]
}

#[test]
fn each_refused_token_gets_its_reason_and_its_text_quotes_nothing_of_it() {
    let set = keys(&[KEY_A, KEY_B]);
    let cases = refused_tokens();
    for (what, token, expected) in &cases {
        let error = refusal(token, &set);
        assert_eq!(error, *expected, "{what}");
        assert_quotes_nothing_of(error, token);
    }
    // Every refusal the verifier can give is exercised.
    let reasons: std::collections::BTreeSet<&str> =
        cases.iter().map(|(_, _, error)| error.reason()).collect();
    assert_eq!(reasons.len(), 8, "{reasons:?}");
}

#[test]
fn reasons_are_stable_and_distinct() {
    let all = [
        (TokenError::TooLong, "token_too_long"),
        (
            TokenError::Malformed(Malformed::NotThreeParts),
            "token_malformed",
        ),
        (TokenError::AlgorithmNotAllowed, "token_alg_not_allowed"),
        (TokenError::CriticalExtension, "token_crit_unsupported"),
        (TokenError::BadSignature, "token_bad_signature"),
        (TokenError::Expired, "token_expired"),
        (TokenError::NotYetValid, "token_not_yet_valid"),
        (TokenError::WrongAudience, "token_wrong_audience"),
    ];
    for (error, reason) in all {
        assert_eq!(error.reason(), reason);
        assert!(error.rfc_section().starts_with("RFC "), "{error:?}");
    }
    assert_eq!(
        TokenError::Expired.to_string(),
        "token expired (RFC 7519 §4.1.4, token_expired)"
    );
    assert_eq!(
        TokenError::Malformed(Malformed::WrongType("rooms")).to_string(),
        "malformed token: `rooms` has the wrong type (RFC 7519 §4.3, token_malformed)"
    );
}

// ---------------------------------------------------------------------------
// Bounds: the length limit and the leeway
// ---------------------------------------------------------------------------

/// A valid token of exactly `len` bytes, padded with an unknown claim.
fn token_of_len(len: usize) -> String {
    // Base64url cannot end a part at every length, so try a second header
    // one byte longer when the first cannot reach `len`.
    for header in [HS256, r#"{"alg":"HS256","typ":"JWT "}"#] {
        for pad in (len * 3 / 4).saturating_sub(120)..len {
            let claims = format!(
                r#"{{"sub":"{SUBJECT}","exp":{},"pad":"{}"}}"#,
                NOW + 60,
                "p".repeat(pad)
            );
            let token = assemble(header, &claims, KEY_A);
            if token.len() == len {
                return token;
            }
            if token.len() > len {
                break;
            }
        }
    }
    panic!("no token of {len} bytes");
}

#[test]
fn the_length_limit_holds_at_its_bounds() {
    let set = keys(&[KEY_A]);
    let longest = token_of_len(MAX_TOKEN_LEN);
    assert_eq!(verify(longest.as_bytes(), &set, NOW).unwrap().sub, SUBJECT);
    let over = token_of_len(MAX_TOKEN_LEN + 1);
    assert_eq!(refusal(&over, &set), TokenError::TooLong);
    assert_eq!(
        verify_signature(over.as_bytes(), &set),
        Err(TokenError::TooLong)
    );
}

#[test]
fn the_leeway_holds_at_its_bounds() {
    let set = keys(&[KEY_A]);
    let exp = NOW as i64;
    let token = library_token(json!({"sub": SUBJECT, "exp": exp}), KEY_A);
    let at = |now: i64| verify(token.as_bytes(), &set, now as u64).map(|claims| claims.sub);
    // exp itself is still accepted within the leeway...
    assert!(at(exp).is_ok());
    assert!(at(exp + LEEWAY_SECONDS - 1).is_ok());
    // ...and refused from exp + leeway on (RFC 7519 §4.1.4: "on or after").
    assert_eq!(at(exp + LEEWAY_SECONDS), Err(TokenError::Expired));

    let nbf = NOW as i64;
    let token = library_token(
        json!({"sub": SUBJECT, "exp": nbf + 3600, "nbf": nbf}),
        KEY_A,
    );
    let at = |now: i64| verify(token.as_bytes(), &set, now as u64).map(|claims| claims.sub);
    assert!(at(nbf).is_ok());
    assert!(at(nbf - LEEWAY_SECONDS).is_ok());
    assert_eq!(at(nbf - LEEWAY_SECONDS - 1), Err(TokenError::NotYetValid));
}

#[test]
fn check_time_tells_a_connection_when_its_token_ends() {
    let token = library_token(json!({"sub": SUBJECT, "exp": NOW + 600}), KEY_A);
    let claims = verify(token.as_bytes(), &keys(&[KEY_A]), NOW).unwrap();
    let end = claims.expires_at();
    assert_eq!(end, (NOW + 600) as i64 + LEEWAY_SECONDS);
    assert_eq!(claims.check_time(end as u64 - 1), Ok(()));
    assert_eq!(claims.check_time(end as u64), Err(TokenError::Expired));
    // A `now` beyond i64 is after every exp.
    assert_eq!(claims.check_time(u64::MAX), Err(TokenError::Expired));
}

// ---------------------------------------------------------------------------
// Audience
// ---------------------------------------------------------------------------

#[test]
fn an_audience_is_checked_when_the_server_has_one() {
    let set = keys(&[KEY_A]);
    let with_aud = |aud: serde_json::Value| {
        library_token(json!({"sub": SUBJECT, "exp": NOW + 60, "aud": aud}), KEY_A)
    };
    let check = |token: &str| verify_for_audience(token.as_bytes(), &set, "chat", NOW);
    assert!(check(&with_aud(json!("chat"))).is_ok());
    assert!(check(&with_aud(json!(["mail", "chat"]))).is_ok());
    assert_eq!(
        check(&with_aud(json!("mail"))),
        Err(TokenError::WrongAudience)
    );
    assert_eq!(check(&with_aud(json!([]))), Err(TokenError::WrongAudience));
    let without = library_token(json!({"sub": SUBJECT, "exp": NOW + 60}), KEY_A);
    assert_eq!(check(&without), Err(TokenError::WrongAudience));
    // Without an audience of its own, the server refuses any `aud`, even
    // an empty list (RFC 7519 §4.1.3: "when this claim is present").
    assert_eq!(
        refusal(&with_aud(json!([])), &set),
        TokenError::WrongAudience
    );
}

#[test]
fn the_algorithm_constant_is_hs256() {
    // The header every library writes for HS256 is accepted, and the
    // constant the docs name is that value.
    assert_eq!(ALGORITHM, "HS256");
    let token = assemble(
        &format!(r#"{{"alg":"{ALGORITHM}"}}"#),
        r#"{"sub":"u","exp":1e10}"#,
        KEY_A,
    );
    assert!(jwt::verify(token.as_bytes(), &keys(&[KEY_A]), NOW).is_ok());
}

// ---------------------------------------------------------------------------
// Properties: no change to a signed token survives, no input panics
// ---------------------------------------------------------------------------

#[test]
fn every_one_byte_change_or_cut_of_a_valid_token_is_refused() {
    let set = keys(&[KEY_A, KEY_B]);
    let token = library_token(typical_claims(), KEY_A).into_bytes();
    assert!(verify(&token, &set, NOW).is_ok());
    let mut rng = super::test_rng::Rng::new(0x70ce4);
    // Every position, with a random replacement byte (base64url digits
    // half of the time, so that many changes still decode).
    const DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
    for at in 0..token.len() {
        for _ in 0..4 {
            let mut changed = token.clone();
            changed[at] = if rng.below(2) == 0 {
                DIGITS[rng.below(DIGITS.len())]
            } else {
                rng.next() as u8
            };
            if changed == token {
                continue;
            }
            assert!(
                verify(&changed, &set, NOW).is_err(),
                "byte {at} changed to {:?} was accepted",
                changed[at] as char
            );
        }
    }
    // Every prefix, and every suffix, is refused.
    for cut in 0..token.len() {
        assert!(verify(&token[..cut], &set, NOW).is_err(), "prefix of {cut}");
        assert!(
            verify(&token[cut + 1..], &set, NOW).is_err(),
            "suffix from {}",
            cut + 1
        );
    }
}

#[test]
fn arbitrary_bytes_are_refused_without_panicking() {
    let set = keys(&[KEY_A]);
    let mut rng = super::test_rng::Rng::new(0xa4b17);
    for round in 0..3_000 {
        let token = match round % 3 {
            // Random bytes of random length, some over the limit.
            0 => {
                let len = rng.below(MAX_TOKEN_LEN + 200);
                rng.bytes(len)
            }
            // Three random base64url-ish parts.
            1 => {
                let part = |rng: &mut super::test_rng::Rng| {
                    let len = rng.below(60);
                    b64(&rng.bytes(len))
                };
                format!("{}.{}.{}", part(&mut rng), part(&mut rng), part(&mut rng)).into_bytes()
            }
            // Signed JSON-ish noise: the claims reader runs on it.
            _ => {
                const ALPHABET: &[u8] = b"{}[]\":,0123456789.eE-+ \"subexpnbfroomsaud";
                let len = rng.below(80);
                let noise: String = (0..len)
                    .map(|_| ALPHABET[rng.below(ALPHABET.len())] as char)
                    .collect();
                assemble(HS256, &noise, KEY_A).into_bytes()
            }
        };
        assert!(verify(&token, &set, NOW).is_err());
    }
}

// ---------------------------------------------------------------------------
// A benchmark, run by hand:
//   cargo test --release --lib auth::tests::bench -- --ignored --nocapture
// It reports CPU time per operation (the thread's own, from
// /proc/thread-self/schedstat), so that other processes on a busy machine
// do not count, as the median of three runs; and, for scale, the same
// work done by the `hmac`/`sha2` and `serde_json` crates.
// ---------------------------------------------------------------------------

/// Nanoseconds this thread has spent on a CPU (Linux).
fn cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("Linux schedstat");
    stat.split_whitespace()
        .next()
        .and_then(|ns| ns.parse().ok())
        .expect("a number of nanoseconds")
}

/// Median of three runs of `iterations` calls, in µs of CPU time per call.
fn median_cpu_us(iterations: u32, mut run: impl FnMut()) -> f64 {
    let mut runs: Vec<f64> = (0..3)
        .map(|_| {
            let start = cpu_ns();
            for _ in 0..iterations {
                run();
            }
            (cpu_ns() - start) as f64 / 1e3 / f64::from(iterations)
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[1]
}

#[test]
#[ignore = "a benchmark: cargo test --release --lib auth::tests::bench -- --ignored --nocapture"]
fn bench_verify_a_1_kib_token() {
    use std::hint::black_box;
    let mut claims = typical_claims();
    let mut token = library_token(claims.clone(), KEY_A);
    // Grow `rooms` to about 1 KiB of token.
    while token.len() < 1024 {
        let room = format!("room-{:03}", claims["rooms"].as_array().unwrap().len());
        claims["rooms"].as_array_mut().unwrap().push(json!(room));
        token = library_token(claims.clone(), KEY_A);
    }
    let claims_text = serde_json::to_string(&claims).unwrap();
    let one = keys(&[KEY_A]);
    let two = keys(&[KEY_B, KEY_A]);
    let bytes = token.as_bytes();
    let n = 20_000;
    println!(
        "a {}-byte token, CPU time per call, median of 3 runs of {n}:",
        bytes.len()
    );
    let report = |label: &str, us: f64| println!("  {label:<40} {us:6.2} µs");
    report(
        "verify, one key",
        median_cpu_us(n, || {
            black_box(verify(black_box(bytes), &one, NOW).unwrap());
        }),
    );
    report(
        "verify, two keys (the token's second)",
        median_cpu_us(n, || {
            black_box(verify(black_box(bytes), &two, NOW).unwrap());
        }),
    );
    report(
        "verify_signature, one key",
        median_cpu_us(n, || {
            black_box(verify_signature(black_box(bytes), &one).unwrap());
        }),
    );
    report(
        "HMAC-SHA-256 of the token (ours)",
        median_cpu_us(n, || {
            black_box(super::hmac::HmacSha256::mac(KEY_A, black_box(bytes)));
        }),
    );
    report(
        "HMAC-SHA-256 of the token (hmac+sha2)",
        median_cpu_us(n, || {
            black_box(reference_tag(KEY_A, black_box(bytes)));
        }),
    );
    report(
        "parse the claims (crate::json)",
        median_cpu_us(n, || {
            black_box(crate::json::parse(black_box(&claims_text)));
        }),
    );
    report(
        "parse the claims (serde_json::Value)",
        median_cpu_us(n, || {
            black_box(serde_json::from_str::<serde_json::Value>(black_box(&claims_text)).unwrap());
        }),
    );
    let typical = library_token(typical_claims(), KEY_A);
    report(
        &format!("verify a typical {}-byte token, one key", typical.len()),
        median_cpu_us(n, || {
            black_box(verify(black_box(typical.as_bytes()), &one, NOW).unwrap());
        }),
    );
    let data = vec![0x61u8; 1 << 20];
    let us = median_cpu_us(20, || {
        black_box(super::sha256::digest(black_box(&data)));
    });
    println!("  SHA-256 (ours): {:.0} MB/s", data.len() as f64 / us);
}

mod transport {
    use super::*;
    use crate::auth::transport::{AUTH_REQUIRED, AuthMode, RefreshError, SignedIn, sign_in};

    #[test]
    fn a_handshake_signs_in_per_mode() {
        let keys = keys(&[KEY_A]);
        let good = library_token(typical_claims(), KEY_A);
        let forged = library_token(typical_claims(), KEY_C);
        let signed = |mode, token| sign_in(mode, Some(&keys), token, NOW);
        assert_eq!(
            signed(AuthMode::Off, Some(&forged)),
            Ok(None),
            "off ignores tokens"
        );
        assert_eq!(signed(AuthMode::Optional, None), Ok(None), "a guest");
        assert_eq!(signed(AuthMode::Required, None), Err(AUTH_REQUIRED));
        for mode in [AuthMode::Optional, AuthMode::Required] {
            let claims = signed(mode, Some(&good)).unwrap().unwrap();
            assert_eq!(claims.sub, SUBJECT);
            assert_eq!(signed(mode, Some(&forged)), Err("token_bad_signature"));
        }
    }

    #[test]
    fn a_sign_in_runs_out_at_exp_plus_the_leeway_unless_refreshed() {
        let keys = keys(&[KEY_A]);
        let claims = verify(
            library_token(typical_claims(), KEY_A).as_bytes(),
            &keys,
            NOW,
        )
        .unwrap();
        let mut signed_in = SignedIn::new(&claims);
        let end = NOW + 3600 + LEEWAY_SECONDS as u64;
        assert!(!signed_in.is_due(end - 1) && signed_in.is_due(end));
        assert_eq!(signed_in.seconds_left(end - 10), 10);
        assert_eq!(signed_in.seconds_left(end + 10), 0);

        let mut later = typical_claims();
        later["exp"] = json!(NOW + 7200);
        let fresh = library_token(later.clone(), KEY_A);
        assert_eq!(
            signed_in.refresh(&fresh, &keys, end - 1).map(|c| c.exp),
            Ok((NOW + 7200) as i64)
        );
        assert!(!signed_in.is_due(end));

        later["sub"] = json!("someone-else");
        let other = library_token(later, KEY_A);
        assert_eq!(
            signed_in.refresh(&other, &keys, NOW).map(|c| c.exp),
            Err(RefreshError::Mismatch)
        );
        assert_eq!(RefreshError::Mismatch.code(), "auth_mismatch");
        let forged = library_token(typical_claims(), KEY_C);
        assert_eq!(
            signed_in.refresh(&forged, &keys, NOW).unwrap_err().code(),
            "token_bad_signature"
        );
    }
}
