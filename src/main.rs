//! `wschat`: parse the flags, set up logging, run the server until
//! SIGTERM or SIGINT, then stop it gracefully.

use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use wschat::config::{Command, help_text};

/// After a stop signal, how long the connections get to send their Close
/// frames and end before the process exits anyway.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// How often the main thread looks at the stop flag.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// SIGTERM and SIGINT, caught without a crate: std has no signal API, so
/// this declares the one libc function it needs.
///
/// The invariant that makes this sound: a signal handler runs in the
/// middle of whatever the interrupted thread was doing (holding the
/// allocator's lock, say), so it may only do async-signal-safe things.
/// [`on_stop_signal`] does exactly one: a store to a lock-free static
/// atomic. Everything else (logging, closing connections) happens on the
/// main thread, which polls [`STOP_REQUESTED`].
mod signals {
    use std::ffi::c_int;
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

    /// Set by the handler; read by the main thread.
    pub static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

    // The numbers are the same on Linux and the BSDs (and so macOS).
    const SIGINT: c_int = 2;
    const SIGTERM: c_int = 15;
    /// `SIG_ERR`, `(sighandler_t) -1`.
    const SIG_ERR: usize = usize::MAX;

    unsafe extern "C" {
        /// `sighandler_t signal(int signum, sighandler_t handler)` from
        /// <signal.h>. glibc and the BSDs give it BSD semantics: the
        /// handler stays installed and interrupted system calls restart.
        fn signal(signum: c_int, handler: extern "C" fn(c_int)) -> usize;
    }

    extern "C" fn on_stop_signal(_signum: c_int) {
        STOP_REQUESTED.store(true, Relaxed);
    }

    /// Installs the handler for SIGTERM and SIGINT.
    pub fn catch_stop_signals() -> Result<(), String> {
        for (number, name) in [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT")] {
            // SAFETY: `on_stop_signal` is async-signal-safe (see above)
            // and lives for the whole program.
            if unsafe { signal(number, on_stop_signal) } == SIG_ERR {
                return Err(format!("cannot catch {name}"));
            }
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let config = match Command::parse(std::env::args().skip(1)) {
        Ok(Command::Run(config)) => {
            #[allow(unused_mut)]
            let mut config = *config;
            // Tests only: the hook that proves a dead broadcaster makes the
            // process exit non-zero (never in a build a user runs).
            #[cfg(feature = "test-hooks")]
            if let Ok(text) = std::env::var("WSCHAT_TEST_BROADCASTER_PANIC") {
                config.broadcaster_panic_trigger = Some(text);
            }
            config
        }
        Ok(Command::Help) => {
            print!("{}", help_text());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("wschat {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("wschat: {message}");
            return ExitCode::from(2);
        }
    };
    // UTC timestamps: the local offset cannot be read safely once threads run.
    if let Err(e) = simple_logger::SimpleLogger::new()
        .with_level(config.log_level)
        .with_utc_timestamps()
        .init()
    {
        eprintln!("wschat: cannot start logging: {e}");
        return ExitCode::FAILURE;
    }
    // A panic is contained to its connection (see server.rs); log it like
    // every other error, with the thread it happened on.
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        log::error!(
            "Error: panic in thread {}: {info}",
            thread.name().unwrap_or("unnamed")
        );
    }));
    let addr = config.addr;
    let server = match wschat::Server::bind(config) {
        Ok(server) => server,
        Err(e) => {
            log::error!("Error: cannot start on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = signals::catch_stop_signals() {
        log::error!("Error: {e}");
        return ExitCode::FAILURE;
    }
    let metrics = server.metrics();
    let handle = match server.spawn() {
        Ok(handle) => handle,
        Err(e) => {
            log::error!("Error: cannot start the server: {e}");
            return ExitCode::FAILURE;
        }
    };
    while !signals::STOP_REQUESTED.load(Relaxed) {
        if metrics.broadcaster_down.load(Relaxed) {
            // The chat cannot go on in this process: exit non-zero, so that
            // a supervisor (systemd's Restart=, Docker's restart policy)
            // starts a new one. Clients see their connections end.
            log::error!("Error: the chat has stopped; exiting so that the server is restarted");
            return ExitCode::FAILURE;
        }
        std::thread::sleep(SIGNAL_POLL);
    }
    log::info!(
        "Stop signal received: shutting down ({} connections get Close 1001)",
        metrics.connections_current.load(Relaxed)
    );
    // Stops accepting, sends every client Close 1001 (waiting until those
    // are written, or cannot be), flushes the history file.
    handle.shutdown();
    // Give the clients a moment to answer their Close, so that their
    // connections end cleanly rather than with a reset.
    let deadline = Instant::now() + STOP_GRACE;
    let busy = || metrics.connections_current.load(Relaxed) > 0;
    while busy() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if busy() {
        log::warn!(
            "Stopped with {} connections still closing",
            metrics.connections_current.load(Relaxed)
        );
    } else {
        log::info!("Stopped");
    }
    ExitCode::SUCCESS
}
