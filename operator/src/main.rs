//! `mailroute`: check, trace and compile routing manifests offline, and
//! print the CRDs. Exit codes: 0 fine, 1 some object not Ready (`check`),
//! 2 unreadable or invalid input.

mod commands;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

// Compiling a large namespace allocates millions of small strings; mimalloc
// does that markedly faster than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "mailroute",
    version,
    about = "Kubernetes-native mail routing: check, trace and compile routing objects"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Options every command that reads manifests takes.
#[derive(clap::Args)]
pub struct Input {
    /// A manifest file, or a directory whose *.yaml / *.yml files are read (repeatable).
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub files: Vec<PathBuf>,
    /// The relay's own host names or addresses, for ForwardsToSelf (repeatable).
    #[arg(long = "self", value_name = "HOST")]
    pub self_addresses: Vec<String>,
    /// Only this namespace's objects (objects that name none are namespace "").
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// List the objects of other kinds that were left aside.
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Compile and analyse the manifests exactly as the operator would and
    /// print every object's conditions. Exit 1 when any object is not Ready.
    Check {
        #[command(flatten)]
        input: Input,
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        format: Format,
    },
    /// Show how one recipient address is resolved, step by step.
    Trace {
        #[command(flatten)]
        input: Input,
        /// The envelope recipient.
        address: String,
        /// Resolve as for a client in the relay networks (may relay to any domain).
        #[arg(long)]
        relay_allowed: bool,
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        format: Format,
    },
    /// Write the routing table as the operator publishes it (one file per ConfigMap key).
    Compile {
        #[command(flatten)]
        input: Input,
        /// The directory to write to (created if missing).
        #[arg(short = 'o', long = "output", value_name = "DIR")]
        dir: PathBuf,
    },
    /// Print the CustomResourceDefinitions as YAML.
    Crds,
    /// Read a password from stdin and print `USER:HASH` (bcrypt), a line for
    /// the `htpasswd` key of a SendingGrant's password Secret.
    Htpasswd {
        user: String,
        /// bcrypt cost (4–31); each step doubles the work of a check.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(4..=31))]
        cost: u32,
    },
    /// Turn routing kept elsewhere into mailroute objects (YAML on stdout,
    /// or one file per object with -o; a summary of what was skipped, and
    /// why, on stderr).
    Import {
        #[command(subcommand)]
        source: ImportSource,
        /// metadata.namespace of every object written.
        #[arg(short = 'n', long, global = true)]
        namespace: Option<String>,
        /// Write one file per object into DIR (created if missing) instead of stdout.
        #[arg(short = 'o', long = "output", value_name = "DIR", global = true)]
        dir: Option<PathBuf>,
    },
    /// Run the controller: compile every watched namespace into its
    /// published table and write each object's status.
    Operator(Box<operator::controller::Options>),
    /// Delete the published tables' ConfigMaps and the leader Lease (the
    /// Helm chart runs this after `helm uninstall`, once the operator is gone).
    Cleanup(operator::cleanup::Options),
}

#[derive(Subcommand)]
pub enum ImportSource {
    /// An Active Directory / Exchange export (csvde): contacts and
    /// mail-enabled users with a targetAddress become MailContacts.
    Csvde {
        /// The CSV file csvde wrote (UTF-8, or UTF-16 with -u).
        file: PathBuf,
        /// Write an Authoritative AddressSpace for DOMAIN (repeatable).
        #[arg(long = "authoritative", value_name = "DOMAIN")]
        authoritative: Vec<String>,
    },
    /// sendmail: aliases(5), virtusertable and mailertable (their source
    /// text, what makemap reads).
    Sendmail {
        /// The aliases file; its names apply to every --local-domain.
        #[arg(long = "aliases", value_name = "FILE")]
        aliases: Option<PathBuf>,
        #[arg(long = "virtusertable", value_name = "FILE")]
        virtusertable: Option<PathBuf>,
        #[arg(long = "mailertable", value_name = "FILE")]
        mailertable: Option<PathBuf>,
        /// A domain sendmail delivers locally ($=w, local-host-names; repeatable).
        #[arg(long = "local-domain", value_name = "DOMAIN")]
        local_domains: Vec<String>,
    },
    /// A Postfix relay: main.cf's relay_domains, virtual_alias_domains,
    /// relayhost and the maps it names (read from their source files).
    Postfix {
        /// The main.cf to read.
        #[arg(long = "main-cf", value_name = "FILE")]
        main_cf: PathBuf,
        /// virtual_alias_maps' source file, instead of the tables main.cf names.
        #[arg(long = "virtual", value_name = "FILE")]
        virtual_alias_maps: Option<PathBuf>,
        /// transport_maps' source file, instead of the tables main.cf names.
        #[arg(long = "transport", value_name = "FILE")]
        transport_maps: Option<PathBuf>,
        /// relay_recipient_maps' source file, instead of the tables main.cf names.
        #[arg(long = "relay-recipients", value_name = "FILE")]
        relay_recipient_maps: Option<PathBuf>,
        /// A relay_domains value (domains, /files, type:tables), instead of main.cf's.
        #[arg(long = "relay-domains", value_name = "LIST")]
        relay_domains: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { input, format } => commands::check(&input, format),
        Command::Trace {
            input,
            address,
            relay_allowed,
            format,
        } => commands::trace(&input, &address, relay_allowed, format),
        Command::Compile { input, dir } => commands::compile(&input, &dir),
        Command::Crds => commands::crds(),
        Command::Htpasswd { user, cost } => commands::htpasswd(&user, cost),
        Command::Import {
            source,
            namespace,
            dir,
        } => commands::import(&source, namespace.as_deref(), dir.as_deref()),
        Command::Operator(options) => {
            ops::init_json_logs();
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(operator::controller::run(*options)))
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Cleanup(options) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(commands::cleanup(&options))),
    };
    match result {
        Ok(code) => code,
        // `mailroute check | head`: the reader left; that is not an error.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailroute: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    let broken = Some(std::io::ErrorKind::BrokenPipe);
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().map(std::io::Error::kind) == broken
            || c.downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                == broken
    })
}
