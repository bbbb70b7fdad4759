//! Benchmark peer for wschat: a "raw chat" WebSocket server written the way a
//! typical user would write it with sync tungstenite.
//!
//! * Every text/binary message a client sends is broadcast verbatim to every
//!   other connected client (not back to the sender).
//! * If the request path is `/echo`, the connection is not part of the chat:
//!   every text/binary message is echoed back to the sender.
//!
//! Design: one thread per accepted TCP connection. After the handshake that
//! thread becomes the reader; it clones the TcpStream and spawns a writer
//! thread that owns a second `WebSocket` over the clone and is fed by a
//! `std::sync::mpsc` channel. Peers live in an
//! `Arc<Mutex<HashMap<u64, Sender<Message>>>>`; broadcasting locks the map
//! and sends a clone of the message (cheap: `Bytes`-backed) to everyone else.
//! The writer writes every message already queued before flushing once, which
//! is what `SinkExt::send_all`/`forward` do in the async world.

use std::collections::HashMap;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;

use tungstenite::handshake::server::{Request, Response};
use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};

type PeerMap = Arc<Mutex<HashMap<u64, Sender<Message>>>>;

fn main() {
    let mut addr = String::from("127.0.0.1:0");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => addr = args.next().unwrap_or_else(|| usage("--addr needs a value")),
            "-h" | "--help" => usage(""),
            other => match other.strip_prefix("--addr=") {
                Some(v) => addr = v.to_string(),
                None => usage(&format!("unknown argument: {other}")),
            },
        }
    }

    let listener = TcpListener::bind(&addr).unwrap_or_else(|e| {
        eprintln!("cannot bind {addr}: {e}");
        std::process::exit(1);
    });
    eprintln!("Listening on http://{}/", listener.local_addr().unwrap());

    let peers: PeerMap = Arc::new(Mutex::new(HashMap::new()));
    let next_id = AtomicU64::new(0);
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            // e.g. EMFILE under load: keep accepting.
            Err(_) => continue,
        };
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let peers = peers.clone();
        thread::spawn(move || {
            // Errors just end the connection; nothing is logged per connection.
            let _ = handle_connection(stream, id, peers);
        });
    }
}

fn usage(msg: &str) -> ! {
    if !msg.is_empty() {
        eprintln!("{msg}");
    }
    eprintln!("usage: tungstenite-threads-chat [--addr HOST:PORT]   (default 127.0.0.1:0)");
    std::process::exit(if msg.is_empty() { 0 } else { 2 });
}

fn handle_connection(stream: TcpStream, id: u64, peers: PeerMap) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut path = String::new();
    let mut ws = tungstenite::accept_hdr(stream, |req: &Request, resp: Response| {
        path = req.uri().path().to_string();
        Ok(resp)
    })
    .map_err(|e| io::Error::other(e.to_string()))?;

    if path == "/echo" {
        echo(ws);
        return Ok(());
    }

    // Second WebSocket over a clone of the socket, used only for writing.
    let write_stream = ws.get_ref().try_clone()?;
    let writer_ws = WebSocket::from_raw_socket(write_stream, Role::Server, None);
    let (tx, rx) = mpsc::channel::<Message>();
    let writer = thread::spawn(move || writer_loop(writer_ws, rx));

    peers.lock().unwrap().insert(id, tx);

    loop {
        match ws.read() {
            Ok(msg @ (Message::Text(_) | Message::Binary(_))) => {
                let peers = peers.lock().unwrap();
                for (peer_id, peer_tx) in peers.iter() {
                    if *peer_id != id {
                        // A send error means that peer is going away; its
                        // reader removes it from the map.
                        let _ = peer_tx.send(msg.clone());
                    }
                }
            }
            // Ping/Pong are answered by tungstenite; Close ends the loop via
            // ConnectionClosed on the next read.
            Ok(_) => {}
            Err(_) => break,
        }
    }

    // Dropping our Sender ends the writer thread's receive loop.
    peers.lock().unwrap().remove(&id);
    let _ = ws.get_ref().shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
    Ok(())
}

fn writer_loop(mut ws: WebSocket<TcpStream>, rx: Receiver<Message>) {
    'outer: while let Ok(msg) = rx.recv() {
        if ws.write(msg).is_err() {
            break;
        }
        // Write everything already queued, then flush once.
        while let Ok(msg) = rx.try_recv() {
            if ws.write(msg).is_err() {
                break 'outer;
            }
        }
        if ws.flush().is_err() {
            break;
        }
    }
    // Unblock the reader if we stopped because the peer is gone.
    let _ = ws.get_ref().shutdown(std::net::Shutdown::Both);
}

fn echo(mut ws: WebSocket<TcpStream>) {
    loop {
        match ws.read() {
            Ok(msg @ (Message::Text(_) | Message::Binary(_))) => {
                if ws.send(msg).is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
}
