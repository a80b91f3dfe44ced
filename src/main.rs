//! The `msp-gateway` binary: serve, migrate, and manage tenants and keys.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use msp_gateway::config::Config;
use msp_gateway::domain::access::{NewApiKey, Scope};
use msp_gateway::domain::paging::PageRequest;
use msp_gateway::domain::tenant::{NewTenant, Tenant};
use msp_gateway::ledger::Ledger;
use msp_gateway::store::Store;
use msp_gateway::store::migrate::{self, Direction};
use msp_gateway::store::read_replica::ReplicaOptions;
use msp_gateway::{demo, operations, poller, server, service_worker, telemetry};

#[derive(Parser)]
#[command(
    name = "msp-gateway",
    version,
    about = "Partner-integration gateway for ISPs that resell cloud"
)]
struct Cli {
    /// Configuration file (TOML). Default: $MSPGW_CONFIG, then ./msp-gateway.toml if present.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gRPC server (the default command). Migrations run first.
    Serve {
        /// Create a demo tenant with simulator data and print an API key and grpcurl commands.
        #[arg(long)]
        demo: bool,
    },
    /// Apply pending migrations (or revert them all) and exit.
    Migrate {
        /// Revert every migration instead: drops all gateway tables and data.
        #[arg(long)]
        revert_all: bool,
    },
    /// Manage tenants (MSPs).
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Manage a tenant's API keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Manage a tenant's catalogue.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Import a Partner Center licence-based (new commerce) price sheet, the CSV Partner Center
    /// serves per market, into a tenant's catalogue (as the ImportPriceSheet RPC does). Running
    /// it again with the same file does nothing more.
    ImportPriceSheet {
        /// Tenant id or name.
        #[arg(long)]
        tenant: String,
        /// The Partner Center market the sheet is for (e.g. US): every row's Market must be it.
        #[arg(long)]
        market: String,
        /// Default: one derived from the market and the file's SHA-256, so a re-run of the same
        /// file is recognised.
        #[arg(long)]
        request_id: Option<String>,
        /// The CSV file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant and print its first admin key (once).
    Create {
        #[arg(long)]
        name: String,
        /// ISO 4217 code of the MSP's currency.
        #[arg(long)]
        currency: String,
        /// IANA time zone in which billing periods are cut.
        #[arg(long)]
        time_zone: String,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create a key and print its secret (once).
    Create {
        /// Tenant id or name.
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        /// admin, billing, credit-control, help-desk or portal.
        #[arg(long)]
        scope: String,
        /// The customer a portal key may read.
        #[arg(long)]
        customer: Option<String>,
    },
    /// List a tenant's keys (never their secrets).
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a key.
    Revoke {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        id: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref()).context("loading configuration")?;
    telemetry::init(config.log_format);
    match cli.command.unwrap_or(Command::Serve { demo: false }) {
        Command::Serve { demo } => serve(&config, demo).await,
        Command::Migrate { revert_all } => {
            let direction = if revert_all {
                Direction::RevertAll
            } else {
                Direction::Up
            };
            let versions = migrate::run(&config.database_url, direction).await?;
            let verb = if revert_all { "reverted" } else { "applied" };
            println!(
                "{verb} {} migration(s): {}",
                versions.len(),
                versions.join(", ")
            );
            Ok(())
        }
        Command::Tenant { command } => tenant_command(&config, command).await,
        Command::Key { command } => key_command(&config, command).await,
        Command::Catalog { command } => catalog_command(&config, command).await,
    }
}

/// How long a starting gateway keeps trying a PostgreSQL it cannot reach (or that drops its
/// connection: a failover, a restart of the server) before it exits with the error.
const STARTUP_DATABASE_WAIT: Duration = Duration::from_secs(60);

/// The migrations at start. On PostgreSQL a database that is unavailable is tried again, with
/// back-off, for [`STARTUP_DATABASE_WAIT`]: a gateway restarted during a failover waits for the
/// new primary instead of exiting (found by the chaos test, which terminates the connections of
/// a gateway starting up). Migrations are transactional, so a cut one is simply run again.
async fn migrate_at_start(url: &str) -> anyhow::Result<Vec<String>> {
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(100);
    let postgres =
        msp_gateway::store::BackendKind::of_url(url) == msp_gateway::store::BackendKind::Postgres;
    loop {
        match migrate::run(url, Direction::Up).await {
            Err(error @ msp_gateway::domain::error::Error::Unavailable(..))
                if postgres && started.elapsed() < STARTUP_DATABASE_WAIT =>
            {
                tracing::warn!(%error, retry_in_ms = pause.as_millis() as u64, "the database is unavailable at start; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            result => return Ok(result?),
        }
    }
}

/// The store on the primary (migrated), with the read replica when `replica` names one (the
/// standby gets the migrations by replication).
async fn open_store(
    config: &Config,
    replica: Option<&ReplicaOptions>,
) -> anyhow::Result<Arc<Store>> {
    let applied = migrate_at_start(&config.database_url).await?;
    if !applied.is_empty() {
        tracing::info!(migrations = ?applied, "migrations applied");
    }
    let mut store = Store::connect(&config.database_url, &config.pool_options())?;
    if let Some(replica) = replica {
        store = store.with_read_replica(replica)?;
        tracing::info!(
            max_lag_ms = replica.max_lag.as_millis() as u64,
            "read replica configured: list, help-desk and portal reads go to it while it is caught up"
        );
    }
    Ok(Arc::new(store))
}

async fn serve(config: &Config, demo: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.idempotency_retention_days >= 1,
        "idempotency_retention_days must be at least 1: clients retry for hours, and a forgotten \
         request id runs again as a new call"
    );
    anyhow::ensure!(
        config.service_action_lease_secs >= 3,
        "service_action_lease_secs must be at least 3: the lease is renewed every third of it, \
         and a shorter one lapses under a slow database round trip"
    );
    // Checked before anything is opened: a read URL on SQLite is a configuration mistake.
    let replica = config.read_replica().map_err(anyhow::Error::msg)?;
    let store = open_store(config, replica.as_ref()).await?;
    let ledger = Arc::new(Ledger::new(store.clone())?);
    ledger
        .feed()
        .set_heartbeat_interval(Duration::from_millis(config.stream_heartbeat_ms));
    let tls = server::tls_config(config)?;
    let portal_url = config.portal_base_url().map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, backend = ?store.kind(), tls = tls.is_some(), "msp-gateway serving");
    let ops_listener = tokio::net::TcpListener::bind(config.ops_listen)
        .await
        .with_context(|| format!("binding ops_listen {}", config.ops_listen))?;
    let ops_address = ops_listener.local_addr()?;
    tracing::info!(address = %ops_address, "operations endpoint: /metrics /healthz /readyz");
    if demo {
        let access = demo::prepare(&ledger).await?;
        println!(
            "{}",
            demo::banner(&access, &address.to_string(), tls.is_none())
        );
        let site = server::portal_site(&listener, tls.is_some(), portal_url.clone())?;
        let link = demo::portal_link(&ledger, &access, &site.base_url).await?;
        println!(
            "Enterprise cost portal of Acme Logistics (opens once, within {} minutes):\n  {link}\n",
            msp_gateway::domain::portal::LINK_TTL.num_minutes()
        );
        println!("Operations: curl http://{ops_address}/metrics (and /healthz, /readyz)\n");
    }
    let vendor_ca_pem = config.vendor_ca_pem().map_err(anyhow::Error::msg)?;
    // Microsoft seats are bought through Partner Center with the partner accounts' credentials.
    ledger.set_seat_vendors(Arc::new(
        msp_gateway::vendors::seat_orders::VendorAdapters::new(
            msp_gateway::vendors::seat_orders::partner_center(vendor_ca_pem.clone()),
        ),
    ));
    let poller_settings = poller::PollerSettings {
        extra_root_ca_pem: vendor_ca_pem,
        ..Default::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let operations = {
        let mut stop = stop_rx.clone();
        let stopped = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        tokio::spawn(operations::serve(ops_listener, ledger.clone(), stopped))
    };
    let pollers = config.pollers.then(|| {
        tokio::spawn(poller::run(
            ledger.clone(),
            poller_settings,
            stop_rx.clone(),
        ))
    });
    let closer = config.pollers.then(|| {
        tokio::spawn(msp_gateway::ledger::close_run::run_closer(
            ledger.clone(),
            Duration::from_secs(config.close_check_secs.max(1)),
            stop_rx.clone(),
        ))
    });
    let boundaries = config.pollers.then(|| {
        tokio::spawn(
            msp_gateway::ledger::subscription_boundaries::run_boundaries(
                ledger.clone(),
                msp_gateway::ledger::subscription_boundaries::BOUNDARY_CHECK_EVERY,
                stop_rx.clone(),
            ),
        )
    });
    // Purchases sent to Partner Center whose recording was lost are finished here.
    let pending_orders = config.pollers.then(|| {
        tokio::spawn(msp_gateway::ledger::pending_orders::run_pending_orders(
            ledger.clone(),
            Duration::from_secs(config.pending_order_age_secs),
            Arc::new(|record| {
                prost::Message::encode_to_vec(
                    &msp_gateway::api::subscriptions::subscription_to_proto(record),
                )
            }),
            stop_rx.clone(),
        ))
    });
    let forgetter = config.pollers.then(|| {
        tokio::spawn(msp_gateway::maintenance::forget_old_request_ids(
            store.clone(),
            chrono::Duration::days(i64::from(config.idempotency_retention_days)),
            msp_gateway::maintenance::FORGET_EVERY,
            stop_rx.clone(),
        ))
    });
    // Service actions are background vendor work too: API-only replicas leave them to others.
    let worker_task = config.pollers.then(|| {
        let worker = service_worker::Worker::new(
            ledger.clone(),
            service_worker::WorkerSettings {
                lease_ttl: Duration::from_secs(config.service_action_lease_secs),
                ..Default::default()
            },
            service_worker::vendor_adapters(),
        );
        tokio::spawn(worker.run(stop_rx))
    });
    let shutdown = async move {
        server::shutdown_signal().await;
        let _ = stop_tx.send(true);
    };
    server::serve_with_limits(
        listener,
        ledger,
        tls,
        shutdown,
        Duration::from_secs(config.shutdown_grace_secs),
        server::Limits::of(config),
        portal_url,
    )
    .await?;
    if let Some(pollers) = pollers {
        let _ = pollers.await;
    }
    if let Some(closer) = closer {
        let _ = closer.await;
    }
    if let Some(pending_orders) = pending_orders {
        let _ = pending_orders.await;
    }
    if let Some(boundaries) = boundaries {
        let _ = boundaries.await;
    }
    if let Some(forgetter) = forgetter {
        let _ = forgetter.await;
    }
    let _ = operations.await;
    if let Some(worker_task) = worker_task {
        let _ = worker_task.await;
    }
    tracing::info!("msp-gateway stopped");
    Ok(())
}

async fn tenant_command(config: &Config, command: TenantCommand) -> anyhow::Result<()> {
    let store = open_store(config, None).await?;
    match command {
        TenantCommand::Create {
            name,
            currency,
            time_zone,
        } => {
            let new = NewTenant::parse(&name, &currency, &time_zone)?;
            let (tenant, key) = store.create_tenant(new).await?;
            println!("tenant {} ({}) created", tenant.id, tenant.name);
            println!("admin key (shown once, store it now): {}", key.token());
        }
    }
    Ok(())
}

async fn find_tenant(store: &Store, id_or_name: &str) -> anyhow::Result<Tenant> {
    if let Some(tenant) = store.tenant_by_name(id_or_name).await? {
        return Ok(tenant);
    }
    store
        .tenant(id_or_name)
        .await
        .with_context(|| format!("no tenant has the id or name {id_or_name:?}"))
}

async fn key_command(config: &Config, command: KeyCommand) -> anyhow::Result<()> {
    let store = open_store(config, None).await?;
    match command {
        KeyCommand::Create {
            tenant,
            name,
            scope,
            customer,
        } => {
            let tenant = find_tenant(&store, &tenant).await?;
            let scope: Scope = scope.parse().map_err(anyhow::Error::msg)?;
            anyhow::ensure!(
                (scope == Scope::Portal) == customer.is_some(),
                "--customer is required for portal keys and refused for others"
            );
            let new = NewApiKey {
                name,
                scope,
                customer_id: customer,
            };
            let (key, minted) = store
                .create_api_key(&tenant.id, &new, None)
                .await?
                .unguarded()?;
            println!("key {} ({}) created", key.id, key.scope);
            println!("secret (shown once, store it now): {}", minted.token());
        }
        KeyCommand::List { tenant } => {
            let tenant = find_tenant(&store, &tenant).await?;
            let mut token = String::new();
            loop {
                let page = PageRequest::parse(1000, &token, "api_keys")
                    .map_err(|v| anyhow::anyhow!("{v:?}"))?;
                let page = store.list_api_keys(&tenant.id, &page).await?;
                for key in page.items {
                    let state = match key.revoked_at {
                        Some(at) => format!("revoked {at}"),
                        None => "active".into(),
                    };
                    let customer = key
                        .customer_id
                        .map(|c| format!(" customer={c}"))
                        .unwrap_or_default();
                    println!(
                        "{}\t{}\t{}\t{}{}",
                        key.id, key.scope, key.name, state, customer
                    );
                }
                match page.next_page_token {
                    Some(next) => token = next,
                    None => break,
                }
            }
        }
        KeyCommand::Revoke { tenant, id } => {
            let tenant = find_tenant(&store, &tenant).await?;
            let key = store
                .revoke_api_key(&tenant.id, &id, None)
                .await?
                .unguarded()?;
            println!("key {} revoked", key.id);
        }
    }
    Ok(())
}

async fn catalog_command(config: &Config, command: CatalogCommand) -> anyhow::Result<()> {
    use msp_gateway::api::catalog::{import_key, import_to_proto};
    use msp_gateway::api::replies::guard;
    use msp_gateway::domain::idempotency::Answer;
    use msp_gateway::domain::price_sheet;
    use prost::Message;
    use sha2::{Digest, Sha256};

    match command {
        CatalogCommand::ImportPriceSheet {
            tenant,
            market,
            request_id,
            file,
        } => {
            let csv =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let request_id = request_id.unwrap_or_else(|| {
                let digest = hex::encode(Sha256::digest(&csv));
                format!("price-sheet-{market}-{}", &digest[..32])
            });
            let key = import_key(request_id.clone(), &market, &csv);
            let sheet = price_sheet::parse(&market, &csv)?;
            let store = open_store(config, None).await?;
            let tenant = find_tenant(&store, &tenant).await?;
            let answer = store
                .import_price_sheet(
                    &tenant.id,
                    &sheet,
                    &guard(key, |summary| import_to_proto(&sheet, summary)),
                )
                .await?;
            let (summary, replayed) = match answer {
                Answer::Fresh(summary) => (import_to_proto(&sheet, &summary), false),
                Answer::Replayed(bytes) => (
                    msp_gateway::proto::v1::ImportPriceSheetResponse::decode(bytes.as_slice())?,
                    true,
                ),
            };
            if replayed {
                println!("request {request_id} was imported before; its answer:");
            }
            println!(
                "{} rows read: {} items created, {} updated, {} unit costs written, {} rows skipped",
                summary.rows_read,
                summary.items_created,
                summary.items_updated,
                summary.unit_costs_written,
                summary.rows_skipped
            );
            for skip in &summary.skipped {
                println!(
                    "  skipped {} row(s) from line {}: {}",
                    skip.rows, skip.first_line, skip.reason
                );
            }
        }
    }
    Ok(())
}
