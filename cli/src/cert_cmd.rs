//! `stratus cert init|issue`: the cluster CA and one certificate per process, for a real
//! deployment (`stratus dev up` makes its own under `<dir>/tls`).

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use stratus_client::tls::certs::{Ca, Validity, CA_KEY_FILE};
use stratus_client::tls::{Role, CA_FILE, CERT_FILE, KEY_FILE};

/// `stratus cert …`
#[derive(Subcommand, Debug)]
pub enum CertCmd {
    /// Make a new cluster CA in DIR (ca.pem to give every process, ca.key to keep safe).
    Init {
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
    },
    /// Issue a certificate for one process into an identity folder (ca.pem, cert.pem,
    /// key.pem): give the process `--tls <out>`.
    Issue {
        /// The CA folder made by `stratus cert init`.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// What the process is: meta, storage, proxy, compute or admin.
        #[arg(long)]
        role: Role,
        /// The process's name (the certificate's common name), e.g. storage-3.
        #[arg(long)]
        name: String,
        /// Where to write the identity folder.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
        days: u32,
    },
}

/// Runs a `stratus cert` command.
pub fn run(cmd: CertCmd) -> Result<()> {
    match cmd {
        CertCmd::Init { ca } => {
            Ca::create(&ca)?;
            println!(
                "cluster CA made: {} (trusted by every process), {} (keep it off the servers)",
                ca.join(CA_FILE).display(),
                ca.join(CA_KEY_FILE).display()
            );
        }
        CertCmd::Issue {
            ca,
            role,
            name,
            out,
            days,
        } => {
            Ca::open(&ca)?.issue(role, &name, &out, Validity::Days(days))?;
            println!(
                "{role} certificate for {name}, valid {days} days: {} ({}, {}, {}); start the process with --tls {}",
                out.display(),
                CA_FILE,
                CERT_FILE,
                KEY_FILE,
                out.display()
            );
        }
    }
    Ok(())
}
