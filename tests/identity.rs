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
use wschat::protocol::message::Message;

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

/// Reads until a Close frame; asserts it is 1008 with `reason`.
fn expect_policy_close(client: &mut Client, reason: &str) {
    loop {
        match client.recv() {
            Message::Close(Some(frame)) => {
                assert_eq!(
                    (u16::from(frame.code), frame.reason.as_str()),
                    (1008, reason)
                );
                return;
            }
            Message::Close(None) => panic!("a Close without a code, expected {reason}"),
            _ => {}
        }
    }
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

// ---------------------------------------------------------------------------
// Names, users, private rooms

/// A signed-in user's name is theirs: a guest holding it is renamed
/// `guest-N` (a `nick` event) when its owner signs in, and cannot take it
/// back, even after the owner has left.
#[test]
fn a_guest_loses_an_owned_name_and_cannot_take_it() {
    let server = auth_server(AuthMode::Optional, |_| {});
    let (mut gus, welcome) = v1(server.addr(), None);
    let guest_id = welcome["you"]["id"].clone();
    gus.text("/nick Ann");
    assert_eq!(nick(&next(&mut gus, "nick")["user"]), "Ann");

    let (ann, welcome) = v1(server.addr(), Some(&token("u-ann", "ann", json!({}))));
    assert_eq!(welcome["you"]["nick"], "ann");
    let renamed = next(&mut gus, "nick");
    assert_eq!(renamed["user"]["id"], guest_id);
    assert_eq!(renamed["old"], "Ann");
    assert!(nick(&renamed["user"]).starts_with("guest-"), "{renamed}");

    for wanted in ["ann", "ANN", "ａｎｎ"] {
        gus.text(&format!("/nick {wanted}"));
        assert_eq!(error_code(&mut gus), "nick_taken", "{wanted}");
    }
    ann.close();
    gus.text("/nick ann");
    assert_eq!(
        error_code(&mut gus),
        "nick_taken",
        "owned while the server runs"
    );
}

/// Two connections with one `sub` are one user: one entry in presence,
/// one `join` (and no `leave` while either is open), and a direct message
/// reaches both and is kept for the pair, back in the next welcome.
#[test]
fn two_connections_of_one_sub_are_one_user() {
    let server = auth_server(AuthMode::Optional, |_| {});
    let addr = server.addr();
    let ann_token = token("u-ann", "ann", json!({}));
    let (mut bob, _) = v1(addr, Some(&token("u-bob", "bob", json!({}))));
    let (ann1, first) = v1(addr, Some(&ann_token));
    assert_eq!(nick(&next(&mut bob, "join")["user"]), "ann");
    let (mut ann2, second) = v1(addr, Some(&ann_token));
    assert_eq!(
        first["you"]["id"], second["you"]["id"],
        "one id for the user"
    );
    let users = second["users"].as_array().unwrap();
    assert_eq!(users.iter().filter(|u| u["nick"] == "ann").count(), 1);

    bob.text("/msg ann psst");
    let mine = next(&mut bob, "direct");
    assert_eq!(mine["to"]["nick"], "ann");
    assert_eq!(mine["to"]["verified"], true);
    let mut ann1 = ann1;
    assert_eq!(next(&mut ann1, "direct")["text"], "psst");
    assert_eq!(next(&mut ann2, "direct")["text"], "psst");

    // The first connection goes: nobody hears a leave, ann is still here.
    ann1.close();
    bob.text("/who");
    let who = next(&mut bob, "users");
    assert!(
        who["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["nick"] == "ann"),
        "{who}"
    );
    ann2.close();
    assert_eq!(nick(&next(&mut bob, "leave")["user"]), "ann");

    // Back: the direct message is in the welcome.
    let (_ann, welcome) = v1(addr, Some(&ann_token));
    let direct = welcome["direct"].as_array().unwrap();
    assert_eq!(direct.len(), 1, "{welcome}");
    assert_eq!(direct[0]["text"], "psst");
}

/// A room named in some token's `rooms` is private: others cannot join
/// it, nor see it in `/rooms`; its users can.
#[test]
fn a_private_room_is_refused_and_hidden_from_others() {
    let server = auth_server(AuthMode::Optional, |_| {});
    let addr = server.addr();
    let staff = token("u-sam", "sam", json!({"rooms": ["#staff"]}));
    let (mut sam, _) = v1(addr, Some(&staff));
    sam.text("/join #staff");
    assert_eq!(next(&mut sam, "joined")["room"], "#staff");
    sam.text("/rooms");
    let rooms = next(&mut sam, "rooms");
    assert!(rooms.to_string().contains("#staff"), "{rooms}");

    let (mut bob, _) = v1(addr, Some(&token("u-bob", "bob", json!({}))));
    let (mut gus, _) = v1_from(address(2), addr, "/", None);
    for other in [&mut bob, &mut gus] {
        other.text("/join #staff");
        let error = next(other, "error");
        assert_eq!(error["code"], "not_allowed", "{error}");
        other.text("/rooms");
        let rooms = next(other, "rooms");
        assert!(!rooms.to_string().contains("#staff"), "{rooms}");
    }
    // Nor by asking for it at the handshake.
    let (mut gus2, _) = v1_from(address(3), addr, "/?rooms=main,staff", None);
    let error = next(&mut gus2, "error");
    assert_eq!(
        (&error["code"], &error["room"]),
        (&json!("not_allowed"), &json!("#staff"))
    );
}

// ---------------------------------------------------------------------------
// Moderation

fn operator(addr: SocketAddr) -> Client {
    v1(addr, Some(&token("u-olga", "olga", json!({"role": "op"})))).0
}

/// A guest from its own address, called `name`.
fn guest(addr: SocketAddr, last: u8, name: &str) -> Client {
    let (mut client, _) = v1_from(address(last), addr, "/", None);
    client.text(&format!("/nick {name}"));
    next(&mut client, "nick");
    client
}

/// A non-operator is refused (`not_allowed`); an operator's `/kick`
/// reaches the target (the event with the reason, then Close 1008
/// `kicked`) and the room, and the target may come back.
#[test]
fn kick_by_an_operator_closes_the_target_and_others_are_refused() {
    let server = auth_server(AuthMode::Optional, |_| {});
    let addr = server.addr();
    let mut olga = operator(addr);
    let mut gus = guest(addr, 2, "gus");
    let mut bob = guest(addr, 3, "bob");
    for command in ["/kick gus", "/ban gus", "/mute gus 5m", "/unban gus"] {
        bob.text(command);
        assert_eq!(error_code(&mut bob), "not_allowed", "{command}");
    }
    olga.text("/kick gus too many capitals");
    let event = next(&mut gus, "moderation");
    assert_eq!(event["action"], "kick");
    assert_eq!(event["reason"], "too many capitals");
    assert_eq!(event["by"]["nick"], "olga");
    assert_eq!(event["room"], Value::Null);
    expect_policy_close(&mut gus, "kicked");
    assert_eq!(next(&mut bob, "moderation")["target"]["nick"], "gus");
    assert_eq!(next(&mut olga, "moderation")["action"], "kick");
    // A kick is not a ban: the same address connects again.
    let _gus = guest(addr, 2, "gus");
    let metrics = http_exchange(
        addr,
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    );
    assert!(
        metrics.contains("wschat_moderation_total{action=\"kick\"} 1"),
        "{metrics}"
    );
}

/// A ban closes the target with 1008 `banned` and turns its address away
/// with 403 at the next handshake (saying until when); `/unban` lets it
/// back. A signed-in user is banned by `sub`, whatever its address.
#[test]
fn ban_and_unban_end_to_end() {
    let server = auth_server(AuthMode::Optional, |_| {});
    let addr = server.addr();
    let mut olga = operator(addr);
    let mut gus = guest(addr, 2, "gus");
    olga.text("/ban gus 1h spam links");
    let event = next(&mut gus, "moderation");
    assert_eq!(
        (&event["action"], &event["reason"]),
        (&json!("ban"), &json!("spam links"))
    );
    let until = event["until"].as_u64().unwrap();
    let hour_ms = 3_600_000;
    assert!(
        until.abs_diff(now() * 1000 + hour_ms) < 60_000,
        "until {until}"
    );
    expect_policy_close(&mut gus, "banned");
    assert_eq!(
        refused_from(address(2), addr, None),
        (403, format!("banned until {until}"))
    );
    // Another address is not held.
    let _other = guest(addr, 4, "other");

    let bob_token = token("u-bob", "bob", json!({}));
    let (mut bob, _) = v1_from(address(5), addr, "/", Some(&bob_token));
    olga.text("/ban bob");
    assert_eq!(next(&mut bob, "moderation")["until"], Value::Null);
    expect_policy_close(&mut bob, "banned");
    assert_eq!(
        refused_from(address(6), addr, Some(&bob_token)),
        (403, "banned".to_string())
    );

    // olga heard both bans, then her unbans.
    for action in ["ban", "ban"] {
        assert_eq!(next(&mut olga, "moderation")["action"], action);
    }
    olga.text("/unban gus");
    assert_eq!(next(&mut olga, "moderation")["action"], "unban");
    olga.text("/unban bob");
    let unban = next(&mut olga, "moderation");
    assert_eq!(
        (&unban["action"], &unban["target"]["nick"]),
        (&json!("unban"), &json!("bob"))
    );
    let _gus = guest(addr, 2, "gus");
    let (_bob, welcome) = v1_from(address(5), addr, "/", Some(&bob_token));
    assert_eq!(welcome["you"]["nick"], "bob");
    olga.text("/unban nobody");
    assert_eq!(error_code(&mut olga), "no_such_user");
}

/// A muted user's messages are refused with `muted` and reach nobody;
/// others still talk.
#[test]
fn a_muted_user_is_refused_with_the_muted_code() {
    let server = auth_server(AuthMode::Optional, |_| {});
    let addr = server.addr();
    let mut olga = operator(addr);
    let mut gus = guest(addr, 2, "gus");
    olga.text("/mute gus 5m");
    let event = next(&mut gus, "moderation");
    assert_eq!(event["action"], "mute");
    assert!(event["until"].as_u64().is_some());
    gus.text("can you hear me");
    let error = next(&mut gus, "error");
    assert_eq!(error["code"], "muted");
    assert!(error["text"].as_str().unwrap().contains("until"), "{error}");
    gus.text("/msg olga psst");
    assert_eq!(error_code(&mut gus), "muted");
    olga.text("still here");
    let message = next(&mut gus, "message");
    assert_eq!(message["text"], "still here", "olga's line, not gus's");
}

/// A ban is kept by `--history-file`: after a restart the banned user is
/// still turned away, and an owned name is still owned.
#[test]
fn a_ban_survives_a_restart_with_the_history_file() {
    let dir = std::env::temp_dir().join(format!("wschat-identity-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("history.jsonl");
    let bob_token = token("u-bob", "bob", json!({}));
    {
        let server = auth_server(AuthMode::Optional, |c| c.history_file = Some(path.clone()));
        let addr = server.addr();
        let mut olga = operator(addr);
        let mut gus = guest(addr, 2, "gus");
        let (mut bob, _) = v1_from(address(3), addr, "/", Some(&bob_token));
        olga.text("/ban gus 1d");
        gus.expect_close(1008);
        olga.text("/ban bob");
        bob.expect_close(1008);
        server.shutdown();
    }
    let server = auth_server(AuthMode::Optional, |c| c.history_file = Some(path.clone()));
    let addr = server.addr();
    let (status, reason) = refused_from(address(2), addr, None);
    assert_eq!(status, 403);
    assert!(reason.starts_with("banned until "), "{reason}");
    assert_eq!(
        refused_from(address(4), addr, Some(&bob_token)),
        (403, "banned".to_string())
    );
    // olga's name is still hers.
    let (mut other, _) = v1_from(address(5), addr, "/", None);
    other.text("/nick olga");
    assert_eq!(error_code(&mut other), "nick_taken");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"type\":\"sanction\""), "{text}");
    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------
// A sign-in that runs out, and `/auth`

/// A token that runs out while the connection is open closes it with
/// 1008 `token_expired` (at `exp` plus the 30 s leeway), unless `/auth`
/// gave it a fresh token for the same user first.
#[test]
fn an_expired_sign_in_closes_and_a_refresh_keeps_the_connection() {
    let server = auth_server(AuthMode::Optional, |_| {});
    let addr = server.addr();
    let leeway = wschat::auth::jwt::LEEWAY_SECONDS as u64;
    // Runs out two to three seconds from now (`exp` is in whole seconds):
    // time enough for bob's three `/auth` exchanges below on a busy
    // machine, before his first token runs out.
    let short = |sub: &str| {
        token_with(
            json!({"sub": sub, "name": sub, "exp": now() - leeway + 3}),
            KEY,
        )
    };
    let (mut ann, _) = v1(addr, Some(&short("ann")));
    let (mut bob, _) = v1(addr, Some(&short("bob")));

    // bob: a token for another user is refused, a fresh one of his own is
    // taken (the answer says its new exp).
    bob.text(&format!("/auth {}", token("ann", "ann", json!({}))));
    assert_eq!(error_code(&mut bob), "auth_mismatch");
    bob.text(&format!(
        "/auth {}",
        token_with(json!({"sub": "bob", "exp": now() + 60}), OTHER_KEY)
    ));
    assert_eq!(error_code(&mut bob), "token_bad_signature");
    let exp = now() + 3600;
    bob.text(&format!(
        "/auth {}",
        token_with(json!({"sub": "bob", "exp": exp}), KEY)
    ));
    assert_eq!(next(&mut bob, "auth")["exp"], exp);

    expect_policy_close(&mut ann, "token_expired");
    // bob is still connected and heard ann leave.
    assert_eq!(nick(&next(&mut bob, "leave")["user"]), "ann");
    bob.text("still here");
    assert_eq!(next(&mut bob, "message")["text"], "still here");
    let metrics = http_exchange(
        addr,
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    );
    assert!(
        metrics.contains("wschat_drops_total{reason=\"token_expired\"} 1"),
        "{metrics}"
    );
}

/// `/auth` with a token that says `"role":"op"` makes the connection an
/// operator from then on: the chat takes the new token's role (and
/// rooms), not only its end.
#[test]
fn a_refresh_with_an_operator_token_gives_the_operator_right() {
    let server = auth_server(AuthMode::Optional, |_| {});
    let addr = server.addr();
    let (mut olga, _) = v1(addr, Some(&token("u-olga", "olga", json!({}))));
    let mut gus = guest(addr, 2, "gus");
    olga.text("/kick gus");
    assert_eq!(error_code(&mut olga), "not_allowed");
    olga.text(&format!(
        "/auth {}",
        token("u-olga", "olga", json!({"role": "op"}))
    ));
    next(&mut olga, "auth");
    olga.text("/kick gus now you may");
    assert_eq!(next(&mut gus, "moderation")["reason"], "now you may");
    expect_policy_close(&mut gus, "kicked");
}

// ---------------------------------------------------------------------------
// No token in the log

/// The binary at `--log-level trace`: a sign-in, a message, `/auth` with
/// a fresh token, a forged one and another user's, refused handshakes. Its
/// whole log holds none of the three parts of any of those tokens.
#[test]
fn no_part_of_a_token_reaches_the_log() {
    use std::process::{Command, Stdio};
    let dir = std::env::temp_dir().join(format!("wschat-identity-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret");
    std::fs::write(&secret, [KEY, b"\n"].concat()).unwrap();
    let log_path = dir.join("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wschat"))
        .args([
            "--addr",
            "127.0.0.1:0",
            "--log-level",
            "trace",
            "--auth",
            "optional",
        ])
        .arg("--auth-secret-file")
        .arg(&secret)
        .stderr(std::fs::File::create(&log_path).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + TIMEOUT;
    let port: u16 = loop {
        let log = std::fs::read_to_string(&log_path).unwrap();
        if let Some(port) = log
            .split("http://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|p| p.parse().ok())
        {
            break port;
        }
        assert!(std::time::Instant::now() < deadline, "no address in {log}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    let signed_in = token("u-ann", "ann", json!({"role": "op", "rooms": ["#staff"]}));
    let fresh = token("u-ann", "ann", json!({"exp": now() + 7200}));
    let other_user = token("u-bob", "bob", json!({}));
    let forged = forged(&signed_in);
    let wrong_key = token_with(json!({"sub": "u-eve", "exp": now() + 60}), OTHER_KEY);
    let expired = token_with(json!({"sub": "u-old", "exp": now() - 600}), KEY);

    let (mut ann, _) = v1(addr, Some(&signed_in));
    ann.text("hello");
    next(&mut ann, "message");
    ann.text(&format!("/auth {fresh}"));
    next(&mut ann, "auth");
    ann.text(&format!("/auth {forged}"));
    assert_eq!(error_code(&mut ann), "token_bad_signature");
    ann.text(&format!("/auth {other_user}"));
    assert_eq!(error_code(&mut ann), "auth_mismatch");
    for token in [&wrong_key, &expired] {
        assert_eq!(refused(addr, Some(token)).0, 401);
    }
    let inspected = handshake_request(addr, "/inspect/ws", &offers(Some(&other_user)));
    let _ = response_head(addr, inspected.as_bytes());
    ann.close();
    // Stopped by its PID; what it logged is in the file.
    child.kill().unwrap();
    child.wait().unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    for needle in [
        "signed in as ann",
        "/auth (token withheld)",
        "401 token_bad_signature",
        "auth_mismatch",
    ] {
        assert!(log.contains(needle), "the log says {needle:?}: {log}");
    }
    for token in [
        &signed_in,
        &fresh,
        &other_user,
        &forged,
        &wrong_key,
        &expired,
    ] {
        for part in token.split('.') {
            assert!(
                !log.contains(part),
                "a token part ({part}) in the log:\n{log}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The block type (RFC 1951 §3.2.3) of a compressed message's first
/// block: 1 fixed Huffman codes, 2 dynamic ones.
fn first_block_type(compressed: &[u8]) -> u8 {
    (compressed[0] >> 1) & 0b11
}

/// The deepest paths a connection thread takes fit in its stack
/// (`READER_STACK`), in a debug build too, where frames are largest: a
/// signed-in handshake (the token's signature checked on the connection's
/// thread), then compressed messages, one with dynamic Huffman codes (the
/// reader builds their decoding tables) and one with the fixed codes.
/// Over the stack, the whole test process would abort.
#[test]
fn a_signed_in_client_compressed_messages_fit_the_reader_stack() {
    use wschat::protocol::deflate::compress_message;
    use wschat::protocol::frame::{OpCode, RSV1};
    let server = auth_server(AuthMode::Required, |_| {});
    let addr = server.addr();
    let (mut reader, _) = v1(addr, Some(&token("u-rea", "rea", json!({}))));
    let offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n";
    let request = handshake_request(
        addr,
        "/",
        &format!("{}{offer}", offers(Some(&token("u-dee", "dee", json!({}))))),
    );
    let mut sender = Client::over(connect_from(LOCAL, addr), request.as_bytes());
    assert!(
        sender.response.contains("permessage-deflate"),
        "{}",
        sender.response
    );
    let long: String = (0..300).map(|i| format!("{} ", i * 7919 % 1000)).collect();
    let long = format!("dynamic {long}");
    for (text, block_type) in [(long.as_str(), 2), ("fixed, short", 1)] {
        let compressed = compress_message(text.as_bytes());
        assert_eq!(first_block_type(&compressed), block_type, "{text}");
        sender.send_raw(&frame(true, RSV1, OpCode::Text.as_u8(), &compressed, true));
        let event = next(&mut reader, "message");
        assert_eq!(event["text"], text);
        assert_eq!(nick(&event["from"]), "dee");
    }
}
