//! Compute from the command line, two ways:
//! - [`server`] and [`flavor`]: `stratus server …` and `stratus flavor …`, the user's view,
//!   through the Nova v2.1 API of a Keystone login (the `OS_*` environment, else the dev
//!   cluster's `openrc`; [`crate::os_auth`]), like `stratus image …` through Glance. The
//!   Nova client is [`nova`].
//! - [`hosts`]: `stratus compute list`, the operator's view of the compute hosts straight
//!   from meta (like `stratus volume …`), no login needed.

pub mod flavor;
pub mod hosts;
pub mod nova;
pub mod server;

use std::path::Path;

use anyhow::Result;
use clap::Args;

pub(crate) use crate::image_cmd::emit;
pub use flavor::FlavorCmd;
pub use hosts::ComputeCmd;
pub use server::ServerCmd;

/// Options of every server and flavor command.
#[derive(Args, Debug, Clone)]
pub struct NovaOpts {
    /// Print JSON (the documents as Nova gives them) instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

/// Runs a server command; `dev_dir` holds the dev cluster's `openrc`, used when
/// `OS_AUTH_URL` is not set.
pub async fn run_server(dev_dir: &Path, opts: &NovaOpts, cmd: ServerCmd) -> Result<()> {
    let nova = nova::Nova::connect(dev_dir).await?;
    server::run(&nova, opts, cmd).await
}

/// Runs a flavor command (see [`run_server`] for `dev_dir`).
pub async fn run_flavor(dev_dir: &Path, opts: &NovaOpts, cmd: FlavorCmd) -> Result<()> {
    let nova = nova::Nova::connect(dev_dir).await?;
    flavor::run(&nova, opts, cmd).await
}
