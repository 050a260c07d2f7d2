//! `muster`: the one binary, with a role per subcommand.

use std::io::IsTerminal;

use clap::Parser;
use muster::config::{Cli, Command, HttpArgs, KeysCommand, LogFormat, ProjectionsCommand};
use muster::startup::{
    Application, Database, Databases, ensure_admin_key, rebuild_projection, run_projector,
    run_worker_role, serve_metrics, shutdown_signal, verify_secret_key,
};
use muster_app::{App, Outcome};
use muster_store::Store;
use tracing_subscriber::EnvFilter;

// mimalloc instead of glibc's malloc: under `muster serve` glibc's
// allocator (with its chunk consolidation) took about 30 % of muster's CPU
// in a profile, and mimalloc's thread-local free lists cut that (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("muster: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_cli(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line, with the causes ("cannot listen on …: Address
            // already in use"), each joined by ": ".
            eprintln!("muster: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run_cli(cli: Cli) -> anyhow::Result<()> {
    // Installed first, so that SIGTERM during start-up still shuts down
    // cleanly (and stops an embedded cluster).
    let shutdown = shutdown_signal();
    // Before any database work: a worker setting that cannot work (an
    // invalid SMTP_URL) stops the process at once with one line.
    if let Some(workers) = cli.command.worker_config() {
        workers.validate()?;
    }
    let url = cli.database.database_url.clone().map(|u| u.0);
    let direct = cli.database.direct_database_url.clone().map(|u| u.0);
    let database = Database::open(
        url,
        direct,
        &cli.database.data_dir,
        cli.database.secret_key.as_deref(),
        cli.database.extra_secret_key.as_deref(),
    )
    .await?;
    let result = run_role(&cli, &database, shutdown).await;
    database.close().await;
    result
}

async fn run_role(
    cli: &Cli,
    database: &Database,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let pool_settings = cli.database.pool();
    match &cli.command {
        Command::Serve(http) => {
            let store = Store::connect_lazy(database.endpoints(), &pool_settings);
            muster_store::db::migrate(store.sessions()).await?;
            muster_jobs::migrate(store.sessions()).await?;
            if database.embedded.is_some() {
                ensure_admin_key(&store, &cli.database.data_dir).await?;
            }
            serve(http, database, cli, shutdown, true).await
        }
        Command::Api(http) => serve(http, database, cli, shutdown, false).await,
        Command::Project(args) => {
            verify_secret_key(database, &pool_settings).await?;
            if let Some(listen) = args.metrics_listen {
                serve_metrics(listen).await?;
            }
            run_projector(database.endpoints(), &pool_settings, args.batch, shutdown).await
        }
        Command::Work(args) => {
            verify_secret_key(database, &pool_settings).await?;
            if let Some(listen) = args.metrics_listen {
                serve_metrics(listen).await?;
            }
            run_worker_role(
                database.endpoints(),
                &pool_settings,
                args.jobs.workers(),
                shutdown,
            )
            .await
        }
        Command::Projections {
            command: ProjectionsCommand::Rebuild { name, batch },
        } => {
            verify_secret_key(database, &pool_settings).await?;
            rebuild_projection(database.endpoints(), &pool_settings, name, *batch).await
        }
        Command::Migrate => {
            let store = Store::connect_lazy(database.endpoints(), &pool_settings);
            muster_store::db::migrate(store.sessions()).await?;
            muster_jobs::migrate(store.sessions()).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Keys { command } => {
            let app = App::new(Store::connect_lazy(database.endpoints(), &pool_settings));
            match command {
                KeysCommand::Create { tenant, role, name } => {
                    let created = match app.create_key(tenant, *role, name.as_deref()).await? {
                        Outcome::Executed(created) => created,
                        Outcome::Refused(refusal) => anyhow::bail!("{refusal}"),
                        Outcome::Replayed(_) => unreachable!("no idempotency key"),
                    };
                    eprintln!("key {} created; it is shown once:", created.key_id);
                    println!("{}", created.key);
                }
                KeysCommand::List { tenant } => {
                    for k in app.list_keys(tenant).await? {
                        let at = |t: Option<String>| t.unwrap_or_else(|| "-".to_owned());
                        println!(
                            "{}\t{}\t{}\tcreated {}\tlast used {}\trevoked {}",
                            k.key_id,
                            k.role.as_str(),
                            k.name.as_deref().unwrap_or("-"),
                            k.created_at.to_rfc3339(),
                            at(k.last_used_at.map(|t| t.to_rfc3339())),
                            at(k.revoked_at.map(|t| t.to_rfc3339())),
                        );
                    }
                }
                KeysCommand::Revoke { tenant, id } => match app.revoke_key(tenant, *id).await? {
                    Outcome::Refused(_) => anyhow::bail!("tenant {tenant} has no key {id}"),
                    _ => println!("key {id} revoked"),
                },
                KeysCommand::RotateSecret => {
                    let rotated = app.rotate_secret().await?;
                    println!(
                        "re-sealed {} data keys and {} calendar links with MUSTER_SECRET_KEY",
                        rotated.data_keys, rotated.calendar_links
                    );
                }
            }
            Ok(())
        }
    }
}

async fn serve(
    http: &HttpArgs,
    database: &Database,
    cli: &Cli,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    // `muster serve`: projections, workers and reactor in this process too.
    with_projections: bool,
) -> anyhow::Result<()> {
    let databases = Databases {
        primary: database.endpoints(),
        replica: cli.database.read_database_url.clone().map(|url| url.0),
    };
    let mut app = Application::build(
        http.listen,
        databases,
        &cli.database.pool(),
        http.api(),
        http.jobs.policies(),
    )
    .await?;
    if with_projections {
        app = app.with_projections().with_workers(http.jobs.workers())?;
    }
    app.run_until_stopped(shutdown).await
}

fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    // Colours only for a person at a terminal: a file or a journal would
    // keep the escape codes, and writing them costs every request's line.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Text => builder.init(),
    }
}
