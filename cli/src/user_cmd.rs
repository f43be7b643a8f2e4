//! `stratus user add|list|delete`: TempAuth users, kept in meta; `stratus auth
//! rotate-secret`: a new token-signing secret.

use anyhow::{bail, Result};
use clap::Subcommand;
use stratus_client::users::{UserStore, ROLE_ADMIN, ROLE_RESELLER};

use crate::{table, Conn};

/// `stratus user …`
#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Add a user (or replace its key and roles).
    Add {
        /// `account:user`
        name: String,
        /// The user's key (password).
        key: String,
        /// May act on every account (Swift's `.reseller_admin`).
        #[arg(long)]
        reseller: bool,
        /// Not the account's owner: acts only through the ACLs that grant it something
        /// (Swift's user without `.admin`).
        #[arg(long, conflicts_with = "reseller")]
        member: bool,
        /// A group the user is in (repeatable), as TempAuth's user groups: ACLs may name
        /// it, and `service` is the group a service token's user needs to reach
        /// `SERVICE_<account>` accounts.
        #[arg(long = "group", value_name = "NAME")]
        groups: Vec<String>,
    },
    /// List users.
    List,
    /// Delete a user.
    Delete {
        /// `account:user`
        name: String,
    },
}

/// `stratus auth …`
#[derive(Subcommand, Debug)]
pub enum AuthCmd {
    /// Replace the secret that signs every token (TempAuth and Keystone). Proxies switch
    /// at once; tokens signed with the old secret keep working for --grace seconds.
    RotateSecret {
        /// Seconds tokens signed with the old secret stay valid (0: refused at once, e.g.
        /// when the secret leaked).
        #[arg(long, default_value_t = DEFAULT_GRACE)]
        grace: u64,
    },
}

/// Grace period of a rotation by default: one hour.
pub const DEFAULT_GRACE: u64 = 3600;

/// Runs a `stratus auth` command.
pub async fn run_auth(conn: &Conn, cmd: AuthCmd) -> Result<()> {
    let users = UserStore::new(conn.client()?.revealing());
    match cmd {
        AuthCmd::RotateSecret { grace } => {
            users.rotate_token_secret(grace).await?;
            if conn.json {
                println!("{}", serde_json::json!({"rotated": true, "grace": grace}));
            } else {
                println!("token secret rotated; tokens signed with the old one are refused after {grace} s");
            }
        }
    }
    Ok(())
}

/// A group name TempAuth could hold: not empty, no `,` `:` or whitespace (ACLs and group
/// lists are split on them), and not a role's name.
fn check_group(g: &str) -> Result<()> {
    if g.is_empty() || g.contains([',', ':']) || g.chars().any(char::is_whitespace) {
        bail!("a group name is not empty and holds no ',' ':' or spaces, got {g:?}");
    }
    if g == ROLE_ADMIN || g == ROLE_RESELLER {
        bail!("{g:?} is a role: use --member (or not) and --reseller");
    }
    Ok(())
}

fn split(name: &str) -> Result<(&str, &str)> {
    match name.split_once(':') {
        Some((a, u)) if !a.is_empty() && !u.is_empty() => Ok((a, u)),
        _ => bail!("a user is named account:user, got {name:?}"),
    }
}

/// Runs a `stratus user` command.
pub async fn run(conn: &Conn, cmd: UserCmd) -> Result<()> {
    let users = UserStore::new(conn.client()?.revealing());
    match cmd {
        UserCmd::Add {
            name,
            key,
            reseller,
            member,
            groups,
        } => {
            let (a, u) = split(&name)?;
            let mut roles = if member { vec![] } else { vec![ROLE_ADMIN] };
            if reseller {
                roles.push(ROLE_RESELLER);
            }
            for g in &groups {
                check_group(g)?;
                if !roles.contains(&g.as_str()) {
                    roles.push(g);
                }
            }
            let user = users.add(a, u, &key, &roles).await?;
            if conn.json {
                println!(
                    "{}",
                    serde_json::json!({"account": a, "user": u, "roles": user.roles})
                );
            } else {
                let roles = if user.roles.is_empty() {
                    "none: acts through ACLs only".to_string()
                } else {
                    user.roles.join(", ")
                };
                println!("Added {a}:{u} (roles: {roles}); storage URL path /v1/AUTH_{a}");
            }
        }
        UserCmd::List => {
            let list = users.list().await?;
            if conn.json {
                let v: Vec<_> = list
                    .iter()
                    .map(|u| serde_json::json!({"account": u.account, "user": u.user, "roles": u.roles, "created": u.created}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|u| {
                        vec![
                            format!("{}:{}", u.account, u.user),
                            u.roles.join(","),
                            table::utc(u.created),
                        ]
                    })
                    .collect();
                println!("{}", table::render(&["USER", "ROLES", "CREATED"], &rows));
            }
        }
        UserCmd::Delete { name } => {
            let (a, u) = split(&name)?;
            if !users.delete(a, u).await? {
                bail!("no user {name}");
            }
            println!("Deleted {name}");
        }
    }
    Ok(())
}
