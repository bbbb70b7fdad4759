//! The feed (`/inspect/feed?conn=ID&key=SECRET`): the reports of one
//! inspected connection, as JSON text messages, to the page that holds
//! its key; and the page's requests the other way. Its own frames are
//! never reported: it is the channel the reports travel on.

use super::inspected;
use super::session::Session;
use super::{
    MAX_BACKLOG, MAX_FRAGMENTS, MAX_FRAME_SHOWN, MAX_FRAMES_PER_SECOND, MAX_INSPECT_MESSAGE,
};
use super::{MAX_INSPECTED, hex};
use crate::json::push_string;
use crate::protocol::close::CloseCode;
use crate::protocol::frame::{OpCode, encode_close, encode_frame};
use crate::protocol::handshake::response_101;
use crate::protocol::message::{Message, MessageReader, ReadError, Role};
use std::io::{self, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How often the feed looks for new reports (and how long a request
/// waits at most to be read).
pub const FEED_POLL: Duration = Duration::from_millis(25);
/// The largest request the page may send (a text to send back, and a
/// few words): the inspected connection's own limit plus room for them.
pub const MAX_REQUEST_BYTES: usize = MAX_INSPECT_MESSAGE + 1024;
/// Requests are carried out at most one per this long; one sent sooner
/// waits.
pub const MIN_REQUEST_GAP: Duration = Duration::from_millis(20);

/// Runs a feed from its 101 to its end.
pub fn run(stream: &TcpStream, key: &str, buffered: &[u8], session: &Session) {
    let mut out = stream;
    if out.write_all(&response_101(key, None)).is_err() {
        return;
    }
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_read_timeout(Some(FEED_POLL));
    if send_text(stream, &hello(session)).is_err() {
        return;
    }
    let mut requests =
        MessageReader::with_buffered(stream, Role::Server, MAX_REQUEST_BYTES, buffered);
    let mut last_request: Option<Instant> = None;
    loop {
        match requests.read_message() {
            Ok(Message::Text(request)) => {
                // Paced, not refused: a page's buttons, not a load generator.
                if let Some(wait) =
                    last_request.map(|t| MIN_REQUEST_GAP.saturating_sub(t.elapsed()))
                {
                    std::thread::sleep(wait);
                }
                last_request = Some(Instant::now());
                let result = inspected::request(session, &request);
                if let Err(reason) = result {
                    let mut json = String::from("{\"type\":\"error\",\"message\":");
                    push_string(&mut json, &reason);
                    json.push('}');
                    session.report(json);
                }
            }
            Ok(Message::Ping(payload)) => {
                let _ = out.write_all(&encode_frame(OpCode::Pong, &payload, None));
            }
            Ok(Message::Binary(_) | Message::Pong(_)) => {}
            Ok(Message::Close(_)) => {
                let _ = out.write_all(&encode_close(CloseCode::Normal, "", None));
                break;
            }
            Err(ReadError::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(ReadError::Protocol(e)) => {
                let _ = out.write_all(&encode_close(e.close_code(), &e.to_string(), None));
                break;
            }
            Err(_) => return,
        }
        let (reports, ended) = session.take_reports();
        for report in reports {
            if send_text(stream, &report).is_err() {
                return;
            }
        }
        if ended {
            let _ = out.write_all(&encode_close(
                CloseCode::Normal,
                "inspected connection closed",
                None,
            ));
            break;
        }
    }
    super::drain(stream);
}

fn send_text(mut stream: &TcpStream, text: &str) -> io::Result<()> {
    stream.write_all(&encode_frame(OpCode::Text, text.as_bytes(), None))
}

/// The feed's first report: which connection, and the limits the page
/// should explain.
fn hello(session: &Session) -> String {
    let mut json = format!("{{\"type\":\"hello\",\"conn\":{},\"deflate\":", session.id);
    match session.deflate {
        Some(agreement) => push_string(&mut json, &agreement.response_header()),
        None => json.push_str("null"),
    }
    json.push_str(&format!(
        ",\"limits\":{{\"frame_shown\":{MAX_FRAME_SHOWN},\"frames_per_second\":{MAX_FRAMES_PER_SECOND},\
         \"inspected_at_once\":{MAX_INSPECTED},\"message\":{MAX_INSPECT_MESSAGE},\
         \"fragments\":{MAX_FRAGMENTS},\"backlog\":{MAX_BACKLOG}}},\"tail\":\"{}\"}}",
        hex(&crate::protocol::deflate::SYNC_FLUSH_TAIL)
    ));
    json
}
