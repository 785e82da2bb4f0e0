//! Reads the settings (flags and environment), starts logging, and runs the server until it is
//! stopped.

use reservation::config::Settings;
use reservation::startup::Application;

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    // A bad value has already ended the process here, with clap's error and status 2.
    let settings = Settings::parse_args();
    let print = settings.print_config;
    let config = match settings.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("configuration: {e}");
            std::process::exit(2);
        }
    };
    if print {
        print!("{}", config.printed());
        return Ok(());
    }
    reservation::telemetry::init_logging(&config.log);
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
