//! Reads the configuration, starts logging, and runs the server until it is stopped.

use reservation::config::Config;
use reservation::startup::Application;

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("configuration: {e}");
            std::process::exit(2);
        }
    };
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--demo" => config.demo = true,
            "-h" | "--help" => {
                println!("usage: reservation [--demo]   (settings come from the environment; see README.md)");
                return Ok(());
            }
            other => {
                eprintln!("unknown argument {other}; try --help");
                std::process::exit(2);
            }
        }
    }
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("cannot start: {e}");
            std::process::exit(1);
        }
    };
    app.run_until_stopped().await
}

/// mimalloc rather than glibc's malloc: see Cargo.toml.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
