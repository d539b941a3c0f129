//! `crypto-ticker`: serve (default), manage API keys (`keys ...`) or try a price source
//! (`source-check ...`).

use std::process::ExitCode;

use crypto_ticker::config::{self, Command};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("keys") {
        return match crypto_ticker::cli::run_keys(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("crypto-ticker keys: {e}");
                ExitCode::from(2)
            }
        };
    }
    #[cfg(not(feature = "exchanges"))]
    if args.first().map(String::as_str) == Some("source-check") {
        eprintln!("crypto-ticker source-check: {}", config::Part::Exchanges.missing());
        return ExitCode::from(2);
    }
    #[cfg(feature = "exchanges")]
    if args.first().map(String::as_str) == Some("source-check") {
        crypto_ticker::log::init(crypto_ticker::log::Level::Info, crypto_ticker::log::Format::Text);
        return match crypto_ticker::source::check::run(&args[1..]) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("crypto-ticker source-check: {e}");
                ExitCode::from(2)
            }
        };
    }
    let config = match config::parse_args(&args, |name| std::env::var(name).ok()) {
        Ok(Command::Serve(config)) => config,
        Ok(Command::Help) => {
            print!("{}", config::help_text());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("crypto-ticker {} ({})", env!("CARGO_PKG_VERSION"), config::built_in_parts());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("crypto-ticker: {e}");
            return ExitCode::from(2);
        }
    };
    crypto_ticker::log::init(config.log_level, config.log_format);
    match crypto_ticker::server::run(*config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            crypto_ticker::error!("cannot start", error = e);
            ExitCode::FAILURE
        }
    }
}
