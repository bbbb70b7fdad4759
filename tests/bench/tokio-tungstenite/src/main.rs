//! Benchmark peer for wschat: a "raw chat" WebSocket server written the way a
//! typical user would write it with tokio + tokio-tungstenite. It follows the
//! broadcast pattern of tokio-tungstenite's own `examples/server.rs`:
//!
//! * a task per connection;
//! * a `PeerMap = Arc<Mutex<HashMap<SocketAddr, UnboundedSender<Message>>>>`
//!   (futures-channel unbounded mpsc, one per connection);
//! * the stream is `split()`; the incoming half broadcasts each text/binary
//!   message to every other peer's channel, the outgoing half is fed by
//!   `rx.map(Ok).forward(outgoing)` (which batches writes and flushes when the
//!   channel runs dry).
//!
//! If the request path is `/echo`, the connection is not part of the chat and
//! every text/binary message is echoed back to the sender.
//!
//! Flags: `--addr HOST:PORT` (default 127.0.0.1:0), `--threads N` tokio
//! worker threads (default 1).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_channel::mpsc::{UnboundedSender, unbounded};
use futures_util::{SinkExt, StreamExt, TryStreamExt, future, pin_mut};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

type Tx = UnboundedSender<Message>;
type PeerMap = Arc<Mutex<HashMap<SocketAddr, Tx>>>;

fn main() {
    let mut addr = String::from("127.0.0.1:0");
    let mut threads: usize = 1;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        match key.as_str() {
            "--addr" => addr = value("--addr"),
            "--threads" => {
                threads = value("--threads")
                    .parse()
                    .ok()
                    .filter(|n: &usize| *n > 0)
                    .unwrap_or_else(|| usage("--threads needs a positive integer"))
            }
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument: {other}")),
        }
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("cannot build tokio runtime");
    runtime.block_on(serve(addr));
}

fn usage(msg: &str) -> ! {
    if !msg.is_empty() {
        eprintln!("{msg}");
    }
    eprintln!("usage: tokio-tungstenite-chat [--addr HOST:PORT] [--threads N]");
    std::process::exit(if msg.is_empty() { 0 } else { 2 });
}

async fn serve(addr: String) {
    let listener = TcpListener::bind(&addr).await.unwrap_or_else(|e| {
        eprintln!("cannot bind {addr}: {e}");
        std::process::exit(1);
    });
    eprintln!("Listening on http://{}/", listener.local_addr().unwrap());

    let peers = PeerMap::new(Mutex::new(HashMap::new()));
    loop {
        match listener.accept().await {
            Ok((stream, peer_addr)) => {
                tokio::spawn(handle_connection(peers.clone(), stream, peer_addr));
            }
            // e.g. EMFILE under load: back off briefly and keep accepting.
            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

async fn handle_connection(peers: PeerMap, stream: TcpStream, addr: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let mut is_echo = false;
    let ws_stream = match tokio_tungstenite::accept_hdr_async(stream, |req: &Request, resp: Response| {
        is_echo = req.uri().path() == "/echo";
        Ok(resp)
    })
    .await
    {
        Ok(ws) => ws,
        Err(_) => return,
    };

    let (mut outgoing, mut incoming) = ws_stream.split();

    if is_echo {
        while let Some(Ok(msg)) = incoming.next().await {
            if (msg.is_text() || msg.is_binary()) && outgoing.send(msg).await.is_err() {
                break;
            }
        }
        return;
    }

    let (tx, rx) = unbounded();
    peers.lock().unwrap().insert(addr, tx);

    let broadcast_incoming = incoming.try_for_each(|msg| {
        if msg.is_text() || msg.is_binary() {
            let peers = peers.lock().unwrap();
            for (peer_addr, peer_tx) in peers.iter() {
                if *peer_addr != addr {
                    let _ = peer_tx.unbounded_send(msg.clone());
                }
            }
        }
        future::ok(())
    });

    let receive_from_others = rx.map(Ok).forward(outgoing);

    pin_mut!(broadcast_incoming, receive_from_others);
    future::select(broadcast_incoming, receive_from_others).await;

    peers.lock().unwrap().remove(&addr);
}
