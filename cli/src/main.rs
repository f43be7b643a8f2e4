//! `stratus`: the command line for Stratus users and operators.
//!
//! Raw flags are parsed here and turned into typed calls into the modules:
//! - [`dev`]: a local cluster of real processes (`stratus dev up|status|down`);
//! - [`meta_cmd`]: operator access to the metadata cluster (`stratus meta …`);
//! - [`ring_cmd`]: ring building and lookups (`stratus ring …`);
//! - [`bench`]: the metadata write benchmark (`stratus meta bench`);
//! - [`user_cmd`]: TempAuth users (`stratus user …`);
//! - [`identity_cmd`]: Keystone identity (`stratus project …`, `stratus role …`,
//!   `stratus identity domain|project|user|group|role|bootstrap …`);
//! - [`swift_cmd`]: object storage for users (`stratus stat|list|upload|download|delete|post`);
//! - [`image_cmd`]: Glance images (`stratus image create|list|show|set|download|delete`),
//!   through a Keystone login ([`os_auth`]);
//! - [`compute_cmd`]: Nova servers and flavors (`stratus server create|list|show|console|
//!   stop|start|reboot|delete`, `stratus flavor list|show|create|delete`) through the same
//!   login, and the compute hosts as meta has them (`stratus compute list`);
//! - [`obj_bench`]: the Swift API benchmark (`stratus bench`);
//! - [`cluster_cmd`]: watching a cluster heal (`stratus cluster health`, `stratus worker
//!   list|set`, `stratus lookup`).
//!
//! - [`volume_cmd`]: block volumes (`stratus volume create|list|show|extend|snapshot|
//!   snapshots|clone|delete|export|flatten`).
//!
//! [`progress`] draws the progress line of large transfers; [`table`] the tables.

mod bench;
mod cert_cmd;
mod cluster_cmd;
mod compute_cmd;
mod dev;
mod identity_cmd;
mod image_cmd;
mod meta_cmd;
mod obj_bench;
mod os_auth;
mod policy_cmd;
mod progress;
mod ring_cmd;
mod swift_cmd;
mod table;
mod user_cmd;
mod volume_cmd;

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

/// Stratus: a storage-first cloud.
#[derive(Parser, Debug)]
#[command(name = "stratus", version, about)]
struct Cli {
    #[command(flatten)]
    creds: swift_cmd::Creds,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a local cluster of real processes on 127.0.0.1.
    Dev {
        #[command(subcommand)]
        cmd: dev::DevCmd,
    },
    /// Operate the metadata cluster.
    Meta {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: meta_cmd::MetaCmd,
    },
    /// Build rings and look up where data lives (like swift-ring-builder, kept in meta).
    Ring {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: ring_cmd::RingCmd,
    },
    /// Storage policies: named object rings that containers choose at creation.
    Policy {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: policy_cmd::PolicyCmd,
    },
    /// The cluster CA and process certificates (mutual TLS inside the cluster).
    Cert {
        #[command(subcommand)]
        cmd: cert_cmd::CertCmd,
    },
    /// The token-signing secret every proxy shares.
    Auth {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: user_cmd::AuthCmd,
    },
    /// Manage TempAuth users (kept in meta).
    User {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: user_cmd::UserCmd,
    },
    /// Keystone projects (kept in meta).
    Project {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: identity_cmd::ProjectCmd,
    },
    /// Keystone roles and role assignments (kept in meta).
    Role {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: identity_cmd::RoleCmd,
    },
    /// Keystone identity: domains, projects, users, groups, roles; bootstrap.
    Identity {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: identity_cmd::IdentityCmd,
    },
    /// The cluster as a whole: how many copies are home and in sync.
    Cluster {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: cluster_cmd::ClusterCmd,
    },
    /// Copies storage nodes moved to quarantine (list them; purge them, by hand only).
    Quarantine {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: cluster_cmd::QuarantineCmd,
    },
    /// Storage nodes' background workers (replicator, auditor, updater, …).
    Worker {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: cluster_cmd::WorkerCmd,
    },
    /// Where every replica of /account[/container[/object]] lives and what it holds.
    Lookup {
        #[command(flatten)]
        conn: Conn,
        path: String,
    },
    /// Glance images (Keystone login from the OS_* environment, else the dev cluster's
    /// openrc).
    Image {
        #[command(flatten)]
        opts: image_cmd::ImageOpts,
        #[command(subcommand)]
        cmd: image_cmd::ImageCmd,
    },
    /// Nova servers (Keystone login like `stratus image`).
    Server {
        #[command(flatten)]
        opts: compute_cmd::NovaOpts,
        #[command(subcommand)]
        cmd: compute_cmd::ServerCmd,
    },
    /// Nova flavors (Keystone login like `stratus image`).
    Flavor {
        #[command(flatten)]
        opts: compute_cmd::NovaOpts,
        #[command(subcommand)]
        cmd: compute_cmd::FlavorCmd,
    },
    /// Compute hosts (operator's view: straight from meta).
    Compute {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: compute_cmd::ComputeCmd,
    },
    /// Block volumes (operator's view: straight through meta and the storage nodes).
    Volume {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: volume_cmd::VolumeCmd,
    },
    /// Benchmark a Swift API endpoint (the dev cluster by default).
    Bench(obj_bench::BenchArgs),
    #[command(flatten)]
    Swift(swift_cmd::SwiftCmd),
}

/// How a command reaches the meta cluster, and how it prints.
#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// Meta endpoints (host:port, comma separated). Default: the local dev cluster's.
    #[arg(long, env = "STRATUS_META", value_delimiter = ',', global = true)]
    meta: Vec<String>,
    /// Dev cluster directory to read endpoints from when --meta is not given.
    #[arg(long, env = "STRATUS_DEV_DIR", global = true)]
    dir: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// TLS identity folder (ca.pem, cert.pem, key.pem; an `admin` certificate for most
    /// commands). Default: the dev cluster's `tls/admin`.
    #[arg(long, env = "STRATUS_TLS", global = true, value_name = "DIR")]
    tls: Option<PathBuf>,
}

impl Conn {
    /// A client for the endpoints given, or for the dev cluster's.
    pub fn client(&self) -> anyhow::Result<stratus_client::meta::MetaClient> {
        let dir = self.dir.clone().unwrap_or_else(dev::default_dir);
        dev::install_identity(&dir, self.tls.as_deref())?;
        let endpoints = if self.meta.is_empty() {
            dev::read_endpoints(&dir)?
        } else {
            self.meta.clone()
        };
        Ok(stratus_client::meta::MetaClient::new(&endpoints)?)
    }
}

/// Parses the command line (exits with clap's message on a bad one).
///
/// A subcommand's own `--user` (`stratus role add --user U`) shares its id with the global
/// `-U/--user` of the Swift commands, so clap fills it with that flag's default or `$ST_USER`
/// when it is absent: such a value is dropped unless it was typed on the command line.
fn parse<I, T>(args: I) -> Cli
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = Cli::command().get_matches_from(args);
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if !leaf_flag_given(&matches, "user") {
        match &mut cli.cmd {
            Cmd::Role { cmd, .. } => cmd.forget_user_flag(),
            Cmd::Identity { cmd, .. } => cmd.forget_user_flag(),
            _ => {}
        }
    }
    cli
}

/// Whether argument `id` of the innermost subcommand was typed on the command line.
fn leaf_flag_given(m: &ArgMatches, id: &str) -> bool {
    let mut m = m;
    while let Some((_, sub)) = m.subcommand() {
        m = sub;
    }
    m.try_get_raw(id).is_ok_and(|v| v.is_some())
        && m.value_source(id) == Some(ValueSource::CommandLine)
}

#[tokio::main]
async fn main() {
    // A closed pipe (`stratus list | head`) ends the process quietly, as it does any Unix
    // tool, instead of a panic in `println!`. std's sockets write with MSG_NOSIGNAL, but
    // tokio's write with writev and would raise SIGPIPE too: the commands that must
    // outlive a dead peer (`volume export`, `volume flatten`) ignore it again.
    // SAFETY: `signal` with SIG_DFL installs no Rust code as a handler; it only changes the
    // process-wide disposition of SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = parse(std::env::args_os());
    let res = match cli.cmd {
        Cmd::Dev { cmd } => dev::run(cmd).await,
        Cmd::Meta { conn, cmd } => meta_cmd::run(&conn, cmd).await,
        Cmd::Ring { conn, cmd } => ring_cmd::run(&conn, cmd).await,
        Cmd::Policy { conn, cmd } => policy_cmd::run(&conn, cmd).await,
        Cmd::User { conn, cmd } => user_cmd::run(&conn, cmd).await,
        Cmd::Cert { cmd } => cert_cmd::run(cmd),
        Cmd::Auth { conn, cmd } => user_cmd::run_auth(&conn, cmd).await,
        Cmd::Project { conn, cmd } => identity_cmd::run_project(&conn, cmd).await,
        Cmd::Role { conn, cmd } => identity_cmd::run_role(&conn, cmd).await,
        Cmd::Identity { conn, cmd } => identity_cmd::run(&conn, cmd).await,
        Cmd::Cluster { conn, cmd } => cluster_cmd::run_cluster(&conn, cmd).await,
        Cmd::Worker { conn, cmd } => cluster_cmd::run_worker(&conn, cmd).await,
        Cmd::Quarantine { conn, cmd } => cluster_cmd::run_quarantine(&conn, cmd).await,
        Cmd::Lookup { conn, path } => cluster_cmd::run_lookup(&conn, &path).await,
        Cmd::Image { opts, cmd } => image_cmd::run(&cli.creds.dev_dir(), &opts, cmd).await,
        Cmd::Server { opts, cmd } => {
            compute_cmd::run_server(&cli.creds.dev_dir(), &opts, cmd).await
        }
        Cmd::Flavor { opts, cmd } => {
            compute_cmd::run_flavor(&cli.creds.dev_dir(), &opts, cmd).await
        }
        Cmd::Compute { conn, cmd } => compute_cmd::hosts::run(&conn, cmd).await,
        Cmd::Volume { conn, cmd } => volume_cmd::run(&conn, cmd).await,
        Cmd::Bench(args) => obj_bench::run(&cli.creds, args).await,
        Cmd::Swift(cmd) => swift_cmd::run(&cli.creds, cmd).await,
    };
    if let Err(e) = res {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use identity_cmd::{AssignmentCmd, IdentityCmd, RoleCmd};

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    fn role_cmd(args: &[&str]) -> RoleCmd {
        let mut argv = vec!["stratus"];
        argv.extend(args);
        match parse(argv).cmd {
            Cmd::Role { cmd, .. } => cmd,
            Cmd::Identity {
                cmd: IdentityCmd::Role { cmd },
                ..
            } => cmd,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_user_flag_is_its_own_not_the_swift_default() {
        let RoleCmd::Assignment {
            cmd: AssignmentCmd::List { user, project, .. },
        } = role_cmd(&["role", "assignment", "list", "--project", "p"])
        else {
            panic!()
        };
        assert_eq!((user, project.as_deref()), (None, Some("p")));
        let RoleCmd::Assignment {
            cmd: AssignmentCmd::List { user, .. },
        } = role_cmd(&["identity", "role", "assignment", "list", "--user", "u"])
        else {
            panic!()
        };
        assert_eq!(user.as_deref(), Some("u"));
        let RoleCmd::Add { role, .. } =
            role_cmd(&["role", "add", "--project", "p", "--user", "u", "member"])
        else {
            panic!()
        };
        assert_eq!(role, "member");
        let s = format!(
            "{:?}",
            role_cmd(&["role", "add", "--project", "p", "--group", "g", "member"])
        );
        assert!(
            s.contains("user: None") && s.contains("group: Some(\"g\")"),
            "{s}"
        );
    }

    fn try_parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let mut argv = vec!["stratus"];
        argv.extend(args);
        let m = Cli::command().try_get_matches_from(argv)?;
        Cli::from_arg_matches(&m)
    }

    #[test]
    fn server_create_takes_one_way_to_boot() {
        use compute_cmd::ServerCmd;
        let create = |args: &[&str]| -> Result<_, clap::Error> {
            let mut argv = vec!["server", "create", "s1", "--flavor", "m1.tiny"];
            argv.extend(args);
            match try_parse(&argv)?.cmd {
                Cmd::Server {
                    cmd:
                        ServerCmd::Create {
                            image,
                            boot_from_volume,
                            volume,
                            wait,
                            ..
                        },
                    ..
                } => Ok((image, boot_from_volume, volume, wait)),
                other => panic!("{other:?}"),
            }
        };
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            create(&["--image", "cirros"]).unwrap(),
            (some("cirros"), None, None, false)
        );
        assert_eq!(
            create(&["--image", "cirros", "--boot-from-volume", "2", "--wait"]).unwrap(),
            (some("cirros"), Some(2), None, true)
        );
        assert_eq!(
            create(&["--volume", "v1"]).unwrap(),
            (None, None, some("v1"), false)
        );
        for bad in [
            &[][..],
            &["--image", "i", "--volume", "v"],
            &["--volume", "v", "--boot-from-volume", "1"],
            &["--image", "i", "--boot-from-volume", "0"],
        ] {
            assert!(create(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn server_flavor_and_compute_commands_parse() {
        use compute_cmd::{ComputeCmd, FlavorCmd, ServerCmd};
        let cmd = |args: &[&str]| try_parse(args).unwrap().cmd;
        let Cmd::Server {
            opts,
            cmd: ServerCmd::Reboot { server, hard, wait },
        } = cmd(&["server", "reboot", "--hard", "s1", "--wait", "--json"])
        else {
            panic!()
        };
        assert!(hard && wait && format!("{opts:?}").contains("json: true"));
        assert_eq!(server, "s1");
        let Cmd::Server {
            cmd: ServerCmd::Console { lines, .. },
            ..
        } = cmd(&["server", "console", "s1", "--lines", "20"])
        else {
            panic!()
        };
        assert_eq!(lines, Some(20));
        let Cmd::Server {
            cmd: ServerCmd::Delete { servers, wait },
            ..
        } = cmd(&["server", "delete", "a", "b", "--wait"])
        else {
            panic!()
        };
        assert_eq!((servers.len(), wait), (2, true));
        assert!(try_parse(&["server", "delete"]).is_err());
        let Cmd::Flavor {
            cmd:
                FlavorCmd::Create {
                    name,
                    ram,
                    vcpus,
                    disk,
                    id,
                    private,
                },
            ..
        } = cmd(&[
            "flavor", "create", "m1.x", "--ram", "512", "--vcpus", "1", "--disk", "0", "--id", "9",
        ])
        else {
            panic!()
        };
        assert_eq!(
            (name.as_str(), ram, vcpus, disk, id.as_deref(), private),
            ("m1.x", 512, 1, 0, Some("9"), false)
        );
        assert!(try_parse(&["flavor", "create", "f", "--ram", "1", "--disk", "1"]).is_err());
        let Cmd::Compute {
            conn,
            cmd: ComputeCmd::List,
        } = cmd(&["compute", "list", "--json", "--meta", "h:1,h:2"])
        else {
            panic!()
        };
        assert!(conn.json);
        assert_eq!(conn.meta, ["h:1", "h:2"]);
    }

    #[test]
    fn dev_up_takes_the_compute_flags() {
        let Cmd::Dev {
            cmd: dev::DevCmd::Up { .. },
        } = try_parse(&["dev", "up", "--compute", "--compute-vcpus", "2"])
            .unwrap()
            .cmd
        else {
            panic!()
        };
        let s = format!(
            "{:?}",
            try_parse(&["dev", "up", "--compute", "--compute-ram-mb", "4096"])
                .unwrap()
                .cmd
        );
        assert!(
            s.contains("compute: true")
                && s.contains("compute_name: \"compute-1\"")
                && s.contains("compute_ram_mb: Some(4096)")
                && s.contains("compute_vcpus: None"),
            "{s}"
        );
        // The sizes mean nothing without an agent.
        assert!(try_parse(&["dev", "up", "--compute-disk-gb", "10"]).is_err());
        assert!(try_parse(&["dev", "up", "--compute-name", "c2"]).is_err());
        assert!(try_parse(&["dev", "up"]).is_ok());
    }

    #[test]
    fn swift_credentials_still_parse() {
        let cli = parse(["stratus", "stat", "-U", "a:b"]);
        assert!(format!("{:?}", cli.creds).contains("a:b"));
    }
}
