//! Sign-in and moderation over real sockets: tokens made in the test by an
//! independent JWT library (the `jwt` crate over `hmac` and `sha2`),
//! offered as the subprotocol `wschat.auth.TOKEN`; refusals at the
//! handshake (401, 403); signed-in names, one user per `sub`, private
//! rooms; `/kick`, `/ban`, `/mute`, `/unban` end to end; bans kept by
//! `--history-file`; a sign-in running out (1008 `token_expired`) and
//! `/auth` moving it on; and no part of a token in the server's log.

mod common;

use common::*;
use serde_json::{Value, json};
use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};
use wschat::ServerHandle;
use wschat::auth::KeySet;
use wschat::auth::transport::AuthMode;

const KEY: &[u8] = b"a-test-key-of-at-least-thirty-two-bytes!";
const OTHER_KEY: &[u8] = b"another-key-of-at-least-thirty-two-bytes";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 token for `claims`, made by the `jwt` crate.
fn token_with(claims: Value, key: &[u8]) -> String {
    use hmac::Mac;
    use jwt::SignWithKey;
    let key = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key");
    claims.sign_with_key(&key).expect("signs")
}

/// A token for `sub` called `name`, valid for an hour, with `extra`
/// claims merged in.
fn token(sub: &str, name: &str, extra: Value) -> String {
    let mut claims = json!({ "sub": sub, "name": name, "iat": now(), "exp": now() + 3600 });
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            claims[k] = v;
        }
    }
    token_with(claims, KEY)
}

fn auth_server(mode: AuthMode, adjust: impl FnOnce(&mut wschat::Config)) -> ServerHandle {
    start_with(|c| {
        c.auth = mode;
        c.auth_keys = Some(KeySet::new(&[KEY]).unwrap());
        adjust(c);
    })
}

fn offers(token: Option<&str>) -> String {
    match token {
        Some(token) => format!("Sec-WebSocket-Protocol: wschat.v1, wschat.auth.{token}\r\n"),
        None => "Sec-WebSocket-Protocol: wschat.v1\r\n".to_string(),
    }
}

/// A `wschat.v1` client from `from`, signed in with `token` if given, and
/// its welcome.
fn v1_from(from: IpAddr, addr: SocketAddr, path: &str, token: Option<&str>) -> (Client, Value) {
    let request = handshake_request(addr, path, &offers(token));
    let mut client = Client::over(connect_from(from, addr), request.as_bytes());
    assert!(
        client
            .response
            .contains("Sec-WebSocket-Protocol: wschat.v1\r\n"),
        "only wschat.v1 is selected: {}",
        client.response
    );
    let welcome = next(&mut client, "welcome");
    (client, welcome)
}

fn v1(addr: SocketAddr, token: Option<&str>) -> (Client, Value) {
    v1_from(LOCAL, addr, "/", token)
}

const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn address(last: u8) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, last))
}

/// The next event of type `kind` (others skipped).
fn next(client: &mut Client, kind: &str) -> Value {
    loop {
        let text = client.recv_text();
        let event: Value = serde_json::from_str(&text).unwrap();
        if event["type"] == kind {
            return event;
        }
    }
}

/// The next `error` event's code.
fn error_code(client: &mut Client) -> String {
    next(client, "error")["code"].as_str().unwrap().to_string()
}

/// The status line and body of the answer to a handshake offering
/// `token`.
fn refused(addr: SocketAddr, token: Option<&str>) -> (u16, String) {
    refused_from(LOCAL, addr, token)
}

fn refused_from(from: IpAddr, addr: SocketAddr, token: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = connect_from(from, addr);
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let request = handshake_request(addr, "/", &offers(token));
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8(response).unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status_of(&response), body.trim_end().to_string())
}

fn nick(user: &Value) -> &str {
    user["nick"].as_str().unwrap()
}

// ---------------------------------------------------------------------------
// Signing in at the handshake

/// `--auth optional`: a guest as before, a token signs in (the welcome
/// says so, with `auth.exp`), and the token is never selected or echoed.
#[test]
fn optional_sign_in_marks_the_user_and_guests_stay_guests() {
    let server = auth_server(AuthMode::Optional, |_| {});
    let exp = now() + 3600;
    let ann_token = token_with(
        json!({"sub": "u-ann", "name": "ann", "exp": exp, "role": "op"}),
        KEY,
    );
    let (_ann, welcome) = v1(server.addr(), Some(&ann_token));
    assert_eq!(welcome["you"]["nick"], "ann");
    assert_eq!(welcome["you"]["verified"], true);
    assert_eq!(welcome["you"]["op"], true);
    assert_eq!(welcome["auth"]["exp"], exp);
    assert_eq!(welcome["direct"], json!([]));

    let (_gus, welcome) = v1(server.addr(), None);
    assert!(nick(&welcome["you"]).starts_with("guest-"));
    assert_eq!(welcome["you"].get("verified"), None);
    assert_eq!(welcome.get("auth"), None, "a guest has no sign-in");
    let users = welcome["users"].as_array().unwrap();
    let ann = users.iter().find(|u| u["nick"] == "ann").unwrap();
    assert_eq!((&ann["verified"], &ann["op"]), (&json!(true), &json!(true)));
}

/// `--auth required`: no token, or a bad one, is 401 with its stable
/// reason as the one-line body; a good one gets in.
#[test]
fn required_sign_in_refuses_each_bad_token_with_its_reason() {
    let server = auth_server(AuthMode::Required, |_| {});
    let addr = server.addr();
    let good = token("u-ann", "ann", json!({}));
    let none_header = base64url(r#"{"alg":"none","typ":"JWT"}"#);
    let parts: Vec<&str> = good.split('.').collect();
    let alg_none = format!("{none_header}.{}.", parts[1]);
    let oversized = token("u-ann", "ann", json!({"pad": "x".repeat(5000)}));
    let cases = [
        (None, "auth_required"),
        (Some(alg_none), "token_alg_not_allowed"),
        (
            Some(token_with(
                json!({"sub": "u", "exp": now() + 60}),
                OTHER_KEY,
            )),
            "token_bad_signature",
        ),
        (
            Some(token_with(json!({"sub": "u", "exp": now() - 600}), KEY)),
            "token_expired",
        ),
        (
            Some(token_with(
                json!({"sub": "u", "exp": now() + 3600, "nbf": now() + 600}),
                KEY,
            )),
            "token_not_yet_valid",
        ),
        (
            Some(format!("{}.{}", parts[0], parts[1])),
            "token_malformed",
        ),
        // Truncated in its claims: fewer than three parts.
        (Some(good[..good.len() / 2].to_string()), "token_malformed"),
        // Claims changed under the same signature: forged.
        (Some(forged(&good)), "token_bad_signature"),
        (Some(oversized), "token_too_long"),
    ];
    for (token, reason) in &cases {
        assert_eq!(
            refused(addr, token.as_deref()),
            (401, reason.to_string()),
            "{reason}"
        );
    }
    let (_ann, welcome) = v1(addr, Some(&good));
    assert_eq!(welcome["you"]["verified"], true);
    let metrics = http_exchange(
        addr,
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    );
    assert!(
        metrics.contains("wschat_auth_refusals_total{reason=\"token_bad_signature\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wschat_handshake_rejections_total{status=\"401\"} 9"),
        "{metrics}"
    );
    for token in cases.iter().filter_map(|(t, _)| t.as_ref()) {
        for part in token.split('.').filter(|p| p.len() > 8) {
            assert!(!metrics.contains(part), "a token part in /metrics");
        }
    }
}

/// A key being rotated: a token signed with either key of the file is
/// accepted.
#[test]
fn a_token_signed_with_the_second_key_is_accepted() {
    let server = start_with(|c| {
        c.auth = AuthMode::Required;
        c.auth_keys = Some(KeySet::new(&[KEY, OTHER_KEY]).unwrap());
    });
    for key in [KEY, OTHER_KEY] {
        let signed = token_with(json!({"sub": "u-1", "name": "rot", "exp": now() + 60}), key);
        let (_c, welcome) = v1(server.addr(), Some(&signed));
        assert_eq!(welcome["you"]["nick"], "rot");
    }
}

/// `token` with its claims changed to another `sub`, its signature kept.
fn forged(token: &str) -> String {
    use base64::Engine;
    let parts: Vec<&str> = token.split('.').collect();
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&engine.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = json!("u-admin");
    let claims = engine.encode(claims.to_string());
    format!("{}.{claims}.{}", parts[0], parts[2])
}

fn base64url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}
