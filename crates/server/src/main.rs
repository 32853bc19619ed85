//! `keel`: serve the API, migrate the database, manage users, print the
//! OpenAPI document.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use keel_core::Role;
use keel_core::people::{EmailAddress, Username, check_password};
use keel_server::{Application, Config, StartError, init_logging, open_store};
use keel_store::directory::NewUser;

/// mimalloc instead of glibc's malloc: it hands freed memory back to the
/// system, where glibc's per-thread arenas kept what bursts of requests had
/// used (RSS stayed hundreds of MiB above idle after a load run). With the
/// `override` feature (workspace `Cargo.toml`) it serves the C libraries'
/// `malloc` too, SQLite's included.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "keel", version, about = "Keel IT service management")]
struct Cli {
    /// Configuration file (default: ./keel.toml when present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (migrates the database first).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the OpenAPI document.
    Openapi,
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Inbound email.
    Mail {
        #[command(subcommand)]
        command: MailCommand,
    },
    /// Fill the database with synthetic users, groups and incidents (for
    /// benchmarks); appends to what is there.
    Seed(SeedArgs),
}

#[derive(Subcommand)]
enum MailCommand {
    /// Read one RFC 5322 message on standard input and make it an incident or
    /// a comment (for an MTA pipe). Exit status: 0 done or ignored, 65 the
    /// message is unreadable, 67 unknown or disabled sender, 75 try later.
    Ingest,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user; the password is read from standard input.
    Create {
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        role: String,
        /// Assignment group to join (created if missing).
        #[arg(long)]
        group: Option<String>,
        #[arg(long)]
        display_name: Option<String>,
        /// Read the password from standard input (required).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Openapi = cli.command {
        print!("{}", keel_server::openapi_json());
        return ExitCode::SUCCESS;
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("keel: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let result = match cli.command {
        Command::Serve => serve(config).await,
        Command::Migrate => open_store(&config)
            .await
            .map(|_| tracing::info!("migrations applied")),
        Command::User { command } => user(config, command).await,
        Command::Mail {
            command: MailCommand::Ingest,
        } => return mail_ingest(config).await,
        Command::Seed(args) => seed_command(config, args).await,
        Command::Openapi => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keel: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), StartError> {
    tracing::info!(listen = %config.listen, database = %redact(&config.database_url), "starting keel");
    let app = Application::build(config).await?;
    app.run().await?;
    Ok(())
}

/// Hides a password in a database URL.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}://{}:***@{}", &url[..s], user, &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

async fn user(config: Config, command: UserCommand) -> Result<(), StartError> {
    let UserCommand::Create {
        username,
        email,
        role,
        group,
        display_name,
        password_stdin: _,
    } = command;
    let bad = |e: &dyn std::fmt::Display| StartError::Other(e.to_string());
    let username = Username::parse(&username).map_err(|e| bad(&e))?;
    let email = EmailAddress::parse(&email).map_err(|e| bad(&e))?;
    let role: Role = role
        .parse()
        .map_err(|_| StartError::Other("role must be admin, agent or requester".into()))?;
    let mut password = String::new();
    std::io::stdin().read_to_string(&mut password)?;
    let password = password.trim_end_matches(['\n', '\r']).to_owned();
    check_password(&password).map_err(|e| bad(&e))?;
    let store = open_store(&config).await?;
    let mut groups = Vec::new();
    if let Some(g) = group {
        let found = match store.resolve_group(&g).await? {
            Some(found) => found,
            None => {
                tracing::info!(group = %g, "creating group");
                store.create_group(&g, "").await?
            }
        };
        groups.push(found.id);
    }
    let hash = tokio::task::spawn_blocking(move || keel_auth::password::hash(&password))
        .await
        .map_err(|e| bad(&e))?
        .map_err(|e| bad(&e))?;
    let name = display_name.unwrap_or_else(|| username.as_str().to_owned());
    let u = store
        .create_user(NewUser {
            username,
            email,
            display_name: name,
            password_hash: hash,
            roles: vec![role],
            groups,
        })
        .await?;
    println!("created user {} ({})", u.username, u.id);
    Ok(())
}

#[derive(clap::Args)]
struct SeedArgs {
    /// Incidents to create.
    #[arg(long, default_value_t = 10_000)]
    incidents: u64,
    /// Users to create (about one in ten is an agent).
    #[arg(long, default_value_t = 500)]
    users: u64,
    /// Assignment groups to create.
    #[arg(long, default_value_t = 10)]
    groups: u64,
    /// Comments on every incident.
    #[arg(long, default_value_t = 0)]
    comments_per_incident: u32,
    /// Random seed: the same seed gives the same data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Read the seeded users' password from standard input (otherwise a
    /// random one is printed).
    #[arg(long)]
    password_stdin: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Create no SLA calendar and policies: on a database without policies,
    /// incidents get no SLA timers (a desk without SLA). By default the
    /// seed creates a calendar and three policies where there are none.
    #[arg(long)]
    no_sla: bool,
}

async fn seed_command(config: Config, args: SeedArgs) -> Result<(), StartError> {
    let bad = |e: &dyn std::fmt::Display| StartError::Other(e.to_string());
    let password = if args.password_stdin {
        let mut p = String::new();
        std::io::stdin().read_to_string(&mut p)?;
        p.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        keel_auth::tokens::random_secret(12)
    };
    check_password(&password).map_err(|e| bad(&e))?;
    let store = open_store(&config).await?;
    let hashed = password.clone();
    let password_hash = tokio::task::spawn_blocking(move || keel_auth::password::hash(&hashed))
        .await
        .map_err(|e| bad(&e))?
        .map_err(|e| bad(&e))?;
    let plan = keel_server::seed::SeedPlan {
        incidents: args.incidents,
        users: args.users,
        groups: args.groups,
        comments_per_incident: args.comments_per_incident,
        seed: args.seed,
        sla: !args.no_sla,
        password_hash,
        progress: !args.quiet,
    };
    let r = keel_server::seed::run(&store, &plan).await?;
    println!(
        "seeded {} incidents (INC{:07} on) with {} comments and {} SLA timers ({} SLA policies created), {} users ({} agents), {} groups in {:.1} s ({:.0} incidents/s)",
        r.incidents,
        r.first_number,
        r.comments,
        r.sla_timers,
        r.sla_policies,
        r.users,
        r.agents,
        r.groups,
        r.seconds,
        r.incidents as f64 / r.seconds.max(0.001)
    );
    if !args.password_stdin {
        println!("every seeded user's password: {password}");
    }
    Ok(())
}

/// `keel mail ingest`: sysexits codes tell the MTA whether to bounce or retry.
async fn mail_ingest(config: Config) -> ExitCode {
    const DATAERR: u8 = 65;
    const NOUSER: u8 = 67;
    const TEMPFAIL: u8 = 75;
    let limit = config.inbound.max_bytes;
    let mut raw = Vec::new();
    if let Err(e) = std::io::stdin()
        .take(limit as u64 + 1)
        .read_to_end(&mut raw)
    {
        eprintln!("keel: cannot read the message: {e}");
        return ExitCode::from(TEMPFAIL);
    }
    let store = match open_store(&config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("keel: {e}");
            return ExitCode::from(TEMPFAIL);
        }
    };
    let attachments_dir = config.data_dir.join("attachments");
    if let Err(e) = std::fs::create_dir_all(&attachments_dir) {
        eprintln!("keel: {e}");
        return ExitCode::from(TEMPFAIL);
    }
    let settings = keel_api::inbound::InboundSettings {
        attachments_dir: &attachments_dir,
        attachment_max_bytes: config.attachments.max_bytes,
        unknown_senders: keel_server::unknown_senders(&config),
        limits: keel_notify::inbound::Limits {
            max_bytes: limit,
            ..Default::default()
        },
        priority_matrix: &config.incidents.priority_matrix,
    };
    match keel_api::inbound::ingest(&store, &raw, &settings).await {
        Ok(outcome) => {
            println!("{outcome:?}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("keel: {} ({})", e.detail, e.code);
            let code = match e.code.as_str() {
                "inbound.unknown_sender" | "inbound.sender_inactive" => NOUSER,
                c if c.starts_with("inbound.") || e.status.is_client_error() => DATAERR,
                _ => TEMPFAIL,
            };
            ExitCode::from(code)
        }
    }
}
