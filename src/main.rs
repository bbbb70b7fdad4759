//! `wschat`: parse the flags, set up logging, run the server.

use std::process::ExitCode;
use wschat::config::{Command, help_text};

fn main() -> ExitCode {
    let config = match Command::parse(std::env::args().skip(1)) {
        Ok(Command::Run(config)) => *config,
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
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}
