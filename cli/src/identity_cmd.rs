//! `stratus project …`, `stratus role …` and `stratus identity domain|project|user|group|role|
//! bootstrap …`: Keystone v3 identity (kept in meta) for operators, without a token.
//!
//! Every command talks to meta through [`IdentityStore`], so a change does what the Keystone
//! API would do: names stay unique per domain, and disabling or deleting a user or project,
//! changing a password, removing an assignment or a group member voids the tokens concerned.
//! Records are named by id or by name (looked up in `--domain`, `Default` unless given).
//!
//! `stratus user …` stays the TempAuth command; Keystone users are `stratus identity user …`.

// The store's `update` closures return its `IdentityError` (a tonic status inside).
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::io::BufRead;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::{json, Map, Value};
use stratus_client::identity::store::Record;
use stratus_client::identity::{
    password, Actor, Assignment, Domain, Group, IdentityStore, Project, Role, Target, User,
    DEFAULT_DOMAIN_ID,
};
use stratus_client::records::RECORD_VERSION;

use crate::{table, Conn};

/// `stratus identity …`
#[derive(Subcommand, Debug)]
pub enum IdentityCmd {
    /// Domains (every cluster has `Default`).
    Domain {
        #[command(subcommand)]
        cmd: DomainCmd,
    },
    /// Projects (the same as `stratus project …`).
    Project {
        #[command(subcommand)]
        cmd: ProjectCmd,
    },
    /// Keystone users (TempAuth users are `stratus user …`).
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// Groups of users.
    Group {
        #[command(subcommand)]
        cmd: GroupCmd,
    },
    /// Roles and role assignments (the same as `stratus role …`).
    Role {
        #[command(subcommand)]
        cmd: RoleCmd,
    },
    /// Make sure a project and a user with a role on it exist (like keystone-manage
    /// bootstrap).
    ///
    /// Also creates the `Default` domain and the roles `admin` → `member` → `reader` (each
    /// implying the next) when missing. An existing user keeps its password.
    Bootstrap {
        /// The project (in `Default`).
        #[arg(long, default_value = "admin")]
        project: String,
        /// The user (in `Default`). Default: `admin`.
        #[arg(long, value_name = "USER")]
        user: Option<String>,
        /// The role it gets on the project.
        #[arg(long, default_value = "admin")]
        role: String,
        /// A new user's password (random and printed once when none is given).
        #[command(flatten)]
        password: PasswordArgs,
    },
}

/// `stratus identity domain …`
#[derive(Subcommand, Debug)]
pub enum DomainCmd {
    /// List domains.
    List,
    /// Create a domain.
    Create {
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// Create it disabled.
        #[arg(long)]
        disable: bool,
    },
    /// Show a domain (by id or name).
    Show { domain: String },
    /// Change a domain; disabling it voids the tokens of its users and projects.
    Set {
        domain: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        state: EnableArgs,
    },
    /// Delete disabled domains with everything in them.
    Delete {
        #[arg(required = true)]
        domains: Vec<String>,
    },
}

/// `stratus project …`
#[derive(Subcommand, Debug)]
pub enum ProjectCmd {
    /// List projects.
    List {
        /// Only the projects of this domain (id or name).
        #[arg(long)]
        domain: Option<String>,
    },
    /// Create a project.
    Create {
        name: String,
        /// Its domain (id or name).
        #[arg(long, default_value = DEFAULT_DOMAIN_ID)]
        domain: String,
        #[arg(long)]
        description: Option<String>,
        /// A tag (repeat for more).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// Create it disabled.
        #[arg(long)]
        disable: bool,
    },
    /// Show a project (by id, or by name in --domain).
    Show {
        project: String,
        /// The domain (id or name): where a name is looked up, or a new record goes.
        #[arg(long, default_value = DEFAULT_DOMAIN_ID)]
        domain: String,
    },
    /// Change a project; disabling it voids the tokens scoped to it.
    Set {
        project: String,
        /// Where to look the project up by name (id or name).
        #[arg(long, default_value = DEFAULT_DOMAIN_ID)]
        domain: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Replace the tags with these (repeat for more).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// Remove every tag.
        #[arg(long, conflicts_with = "tags")]
        no_tags: bool,
        #[command(flatten)]
        state: EnableArgs,
    },
    /// Delete projects with their role assignments, and void the tokens scoped to them.
    Delete {
        #[arg(required = true)]
        projects: Vec<String>,
        /// The domain (id or name): where a name is looked up, or a new record goes.
        #[arg(long, default_value = DEFAULT_DOMAIN_ID)]
        domain: String,
    },
}

/// `stratus identity user …`
#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// List users.
    List {
        /// Only the users of this domain (id or name).
        #[arg(long)]
        domain: Option<String>,
    },
    /// Create a user.
    Create {
        name: String,
        /// The domain (id or name): where a name is looked up, or a new record goes.
        #[arg(long, default_value = DEFAULT_DOMAIN_ID)]
        domain: String,
        #[command(flatten)]
        password: PasswordArgs,
        /// Its default project (id, or name in --project-domain).
        #[arg(long)]
        project: Option<String>,
        /// The domain (id or name) a --project name is in.
        #[arg(long, default_value = DEFAULT_DOMAIN_ID)]
        project_domain: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Create it disabled.
        #[arg(long)]
        disable: bool,
    },
    /// Show a user (by id, or by name in --domain).
    Show {
        #[arg(value_name = "USER")]
        name: String,
        /// The domain (id or name): where a name is looked up, or a new record goes.
        #[arg(long, default_value = DEFAULT_DOMAIN_ID)]
        domain: String,
    },
    /// Change a user; a new password or disabling it voids its tokens.
    Set {
        #[arg(value_name = "USER")]
        name: String,
        /// The domain (id or name): where a name is looked up, or a new record goes.
        #[arg(long, default_value = DEFAULT_DOMAIN_ID)]
        domain: String,
        /// A new name.
        #[arg(long = "name", value_name = "NAME")]
        new_name: Option<String>,
        #[command(flatten)]
        password: PasswordArgs,
        /// A new default project (id, or name in --project-domain).
        #[arg(long)]
        project: Option<String>,
        /// The domain (id or name) a --project name is in.
        #[arg(long, default_value = DEFAULT_DOMAIN_ID)]
        project_domain: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        state: EnableArgs,
    },
    /// Delete users with their assignments and memberships, and void their tokens.
    Delete {
        #[arg(required = true, value_name = "USER")]
        names: Vec<String>,
        /// The domain (id or name): where a name is looked up, or a new record goes.
        #[arg(long, default_value = DEFAULT_DOMAIN_ID)]
        domain: String,
    },
}

/// `stratus identity group …`
#[derive(Subcommand, Debug)]
pub enum GroupCmd {
    /// List groups.
    List {
        #[arg(long)]
        domain: Option<String>,
    },
    /// Create a group.
    Create {
        name: String,
        /// The domain (id or name): where a name is looked up, or a new record goes.
        #[arg(long, default_value = DEFAULT_DOMAIN_ID)]
        domain: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// Show a group and its members.
    Show {
        group: String,
        /// The domain (id or name): where a name is looked up, or a new record goes.
        #[arg(long, default_value = DEFAULT_DOMAIN_ID)]
        domain: String,
    },
    /// Delete groups with their memberships and assignments; their members' tokens are voided.
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
        /// The domain (id or name): where a name is looked up, or a new record goes.
        #[arg(long, default_value = DEFAULT_DOMAIN_ID)]
        domain: String,
    },
    /// Add users to a group.
    AddUser {
        group: String,
        #[arg(required = true, value_name = "USER")]
        users: Vec<String>,
        /// The group's domain (for a name).
        #[arg(long, default_value = DEFAULT_DOMAIN_ID)]
        group_domain: String,
        /// The users' domain (for names).
        #[arg(long, default_value = DEFAULT_DOMAIN_ID)]
        user_domain: String,
    },
    /// Take users out of a group (their tokens are voided).
    RemoveUser {
        group: String,
        #[arg(required = true, value_name = "USER")]
        users: Vec<String>,
        /// The domain (id or name) a group name is in.
        #[arg(long, default_value = DEFAULT_DOMAIN_ID)]
        group_domain: String,
        /// The domain (id or name) the users' names are in.
        #[arg(long, default_value = DEFAULT_DOMAIN_ID)]
        user_domain: String,
    },
}

/// `stratus role …`
#[derive(Subcommand, Debug)]
pub enum RoleCmd {
    /// List roles (and the roles each implies).
    List,
    /// Create a role (global, or in --domain).
    Create {
        name: String,
        #[arg(long)]
        domain: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete roles with their assignments; tokens carrying them are voided.
    Delete {
        #[arg(required = true)]
        roles: Vec<String>,
    },
    /// Grant ROLE to --user or --group on --project or --domain.
    Add {
        role: String,
        #[command(flatten)]
        on: Grant,
    },
    /// Take ROLE away (tokens that carried it are voided).
    Remove {
        role: String,
        #[command(flatten)]
        on: Grant,
    },
    /// Role assignments.
    Assignment {
        #[command(subcommand)]
        cmd: AssignmentCmd,
    },
}

/// `stratus role assignment …`
#[derive(Subcommand, Debug)]
pub enum AssignmentCmd {
    /// List role assignments (those made directly; filters combine).
    List {
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        domain: Option<String>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        group: Option<String>,
        #[arg(long)]
        role: Option<String>,
        #[command(flatten)]
        domains: NameDomains,
        /// Names instead of ids.
        #[arg(long)]
        names: bool,
    },
}

/// Who gets a role, and where.
#[derive(Args, Debug)]
pub struct Grant {
    /// The project (id or name).
    #[arg(long, required_unless_present = "domain", conflicts_with = "domain")]
    project: Option<String>,
    /// The domain (id or name).
    #[arg(long)]
    domain: Option<String>,
    /// The user (id or name).
    #[arg(long, required_unless_present = "group", conflicts_with = "group")]
    user: Option<String>,
    /// The group (id or name).
    #[arg(long)]
    group: Option<String>,
    #[command(flatten)]
    domains: NameDomains,
}

/// Where names given to `--project`, `--user` and `--group` are looked up.
#[derive(Args, Debug)]
pub struct NameDomains {
    /// The domain (id or name) a --project name is in.
    #[arg(long, default_value = DEFAULT_DOMAIN_ID)]
    project_domain: String,
    /// The domain (id or name) a --user name is in.
    #[arg(long, default_value = DEFAULT_DOMAIN_ID)]
    user_domain: String,
    /// The domain (id or name) a --group name is in.
    #[arg(long, default_value = DEFAULT_DOMAIN_ID)]
    group_domain: String,
}

/// `--enable` / `--disable`.
#[derive(Args, Debug, Default)]
pub struct EnableArgs {
    #[arg(long, conflicts_with = "disable")]
    enable: bool,
    #[arg(long)]
    disable: bool,
}

impl EnableArgs {
    fn wanted(&self) -> Option<bool> {
        match (self.enable, self.disable) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        }
    }
}

/// Where a password comes from (at most one).
#[derive(Args, Debug, Default)]
#[group(multiple = false)]
pub struct PasswordArgs {
    /// The password (other local users can see it in `ps`: see --password-stdin).
    #[arg(long)]
    password: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
    /// Generate a random password and print it once.
    #[arg(long)]
    random_password: bool,
}

impl PasswordArgs {
    /// The password asked for, and whether it was generated (and must be printed).
    fn get(&self) -> Result<Option<(String, bool)>> {
        if let Some(p) = &self.password {
            return Ok(Some((p.clone(), false)));
        }
        if self.password_stdin {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            let p = line.trim_end_matches(['\n', '\r']).to_string();
            if p.is_empty() {
                bail!("no password on standard input");
            }
            return Ok(Some((p, false)));
        }
        if self.random_password {
            return Ok(Some((random_password(), true)));
        }
        Ok(None)
    }
}

/// 20 random letters and digits (~119 bits).
pub fn random_password() -> String {
    use rand::Rng;
    rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(20)
        .map(char::from)
        .collect()
}

impl IdentityCmd {
    /// Drops `--user` values that were not typed on the command line. Those flags share
    /// their id with the global `-U/--user` (Swift credentials), so clap fills them with that
    /// flag's default (`test:tester`) or `$ST_USER` when they are absent.
    pub fn forget_user_flag(&mut self) {
        match self {
            IdentityCmd::Role { cmd } => cmd.forget_user_flag(),
            IdentityCmd::Bootstrap { user, .. } => *user = None,
            _ => {}
        }
    }
}

impl RoleCmd {
    /// See [`IdentityCmd::forget_user_flag`].
    pub fn forget_user_flag(&mut self) {
        match self {
            RoleCmd::Add { on, .. } | RoleCmd::Remove { on, .. } => on.user = None,
            RoleCmd::Assignment {
                cmd: AssignmentCmd::List { user, .. },
            } => *user = None,
            _ => {}
        }
    }
}

// ----- looking records up -------------------------------------------------------------

/// The record `r` names: its id, else its name in `scope` (a domain id, or `-`).
async fn find<T: Record>(s: &IdentityStore, r: &str, scope: &str) -> Result<T> {
    if let Some(t) = s.get::<T>(r).await? {
        return Ok(t);
    }
    if let Some(t) = s.by_name::<T>(scope, r).await? {
        return Ok(t);
    }
    if scope == "-" {
        bail!("no {} with id or name {r:?}", T::LABEL)
    }
    bail!(
        "no {} with id {r:?}, nor named so in domain {scope}",
        T::LABEL
    )
}

/// The id of the domain `d` names (id or name).
async fn domain_id(s: &IdentityStore, d: &str) -> Result<String> {
    Ok(find::<Domain>(s, d, "-").await?.id)
}

async fn find_in<T: Record>(s: &IdentityStore, r: &str, domain: &str) -> Result<T> {
    let d = domain_id(s, domain).await?;
    find::<T>(s, r, &d).await
}

/// The id of the domain `d` names, if one is named.
async fn some_domain_id(s: &IdentityStore, d: Option<&str>) -> Result<Option<String>> {
    Ok(match d {
        Some(d) => Some(domain_id(s, d).await?),
        None => None,
    })
}

/// The id of the record `r` names (id, or name in `domain`), if one is named.
async fn some_id_in<T: Record>(
    s: &IdentityStore,
    r: Option<&str>,
    domain: &str,
) -> Result<Option<String>> {
    Ok(match r {
        Some(r) => Some(find_in::<T>(s, r, domain).await?.id().to_string()),
        None => None,
    })
}

/// A role by id, global name, or name in `domain`.
async fn find_role(s: &IdentityStore, r: &str, domain: Option<&str>) -> Result<Role> {
    if let Ok(role) = find::<Role>(s, r, "-").await {
        return Ok(role);
    }
    match domain {
        Some(d) => find_in::<Role>(s, r, d).await,
        None => bail!("no role with id or name {r:?}"),
    }
}

/// Domain id → name.
async fn domain_names(s: &IdentityStore) -> Result<HashMap<String, String>> {
    Ok(s.list::<Domain>()
        .await?
        .into_iter()
        .map(|d| (d.id, d.name))
        .collect())
}

/// The records of a kind kept in domains (only those of `domain` when given), sorted by
/// domain and name; and domain id → name.
async fn list_in<T: Record>(
    s: &IdentityStore,
    domain: Option<&str>,
) -> Result<(Vec<T>, HashMap<String, String>)> {
    let only = some_domain_id(s, domain).await?;
    let names = domain_names(s).await?;
    let mut list: Vec<T> = s
        .list::<T>()
        .await?
        .into_iter()
        .filter(|r| only.as_deref().is_none_or(|d| d == r.name_scope()))
        .collect();
    list.sort_by(|a, b| (a.name_scope(), a.name()).cmp(&(b.name_scope(), b.name())));
    Ok((list, names))
}

/// The first cells of a [`list_in`] record's row: id, name, and its domain's name.
fn row_head<T: Record>(r: &T, names: &HashMap<String, String>) -> Vec<String> {
    let d = r.name_scope();
    vec![
        r.id().to_string(),
        r.name().to_string(),
        names.get(d).map_or(d, String::as_str).to_string(),
    ]
}

/// A kind of record that is deleted with what hangs on it (see [`IdentityStore`]).
trait Deletable: Record {
    async fn delete(s: &IdentityStore, id: &str) -> Result<()>;
}

macro_rules! deletable {
    ($($t:ty => $delete:ident),*) => {$(
        impl Deletable for $t {
            async fn delete(s: &IdentityStore, id: &str) -> Result<()> {
                Ok(s.$delete(id).await?)
            }
        }
    )*};
}
deletable!(Domain => delete_domain, Project => delete_project, User => delete_user,
           Group => delete_group, Role => delete_role);

/// Creates `r` and says so.
async fn create<T: Record>(conn: &Conn, s: &IdentityStore, r: &T) -> Result<()> {
    s.create(r).await?;
    did(conn, "Created", r)
}

/// Deletes `r` and says so.
async fn delete<T: Deletable>(conn: &Conn, s: &IdentityStore, r: &T) -> Result<()> {
    T::delete(s, r.id()).await?;
    did(conn, "Deleted", r)
}

/// Deletes the records `names` name (ids, or names in `domain`), one after the other.
async fn delete_in<T: Deletable>(
    conn: &Conn,
    s: &IdentityStore,
    names: &[String],
    domain: &str,
) -> Result<()> {
    for n in names {
        delete(conn, s, &find_in::<T>(s, n, domain).await?).await?;
    }
    Ok(())
}

// ----- printing -----------------------------------------------------------------------

/// A record as JSON for output: without its format version and password hash (a user gets
/// `password_set` instead, and its free-form attributes at the top level).
pub fn view<T: Serialize>(rec: &T) -> Value {
    let mut v = serde_json::to_value(rec).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.remove("v");
        if let Some(h) = m.remove("password_hash") {
            m.insert("password_set".into(), Value::Bool(!h.is_null()));
        }
        if let Some(Value::Object(extra)) = m.remove("extra") {
            for (k, x) in extra {
                m.entry(k).or_insert(x);
            }
        }
    }
    v
}

/// A JSON value as a table cell.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// A JSON object as `FIELD VALUE` rows, fields sorted.
pub fn fields(v: &Value) -> String {
    let mut rows: Vec<Vec<String>> = match v {
        Value::Object(m) => m.iter().map(|(k, x)| vec![k.clone(), cell(x)]).collect(),
        other => vec![vec![String::new(), cell(other)]],
    };
    rows.sort();
    table::render(&["FIELD", "VALUE"], &rows)
}

/// A record as `--json` (pretty JSON) or not (`FIELD VALUE` rows) wants it.
pub fn record_text(json: bool, v: &Value) -> Result<String> {
    Ok(if json {
        serde_json::to_string_pretty(v)?
    } else {
        fields(v)
    })
}

fn print_record(conn: &Conn, v: &Value) -> Result<()> {
    println!("{}", record_text(conn.json, v)?);
    Ok(())
}

fn print_list(
    conn: &Conn,
    json: Vec<Value>,
    header: &[&str],
    rows: Vec<Vec<String>>,
) -> Result<()> {
    if conn.json {
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!("{}", table::render(header, &rows));
    }
    Ok(())
}

/// Prints what a change did, unless `--json` (then the record).
fn done(conn: &Conn, msg: String, v: Value) -> Result<()> {
    if conn.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{msg}");
    }
    Ok(())
}

/// `<what> <label> <name> (<id>)`: what a change did to `r`.
fn said<T: Record>(what: &str, r: &T) -> String {
    format!("{what} {} {} ({})", T::LABEL, r.name(), r.id())
}

/// [`done`] with [`said`] and the record.
fn did<T: Record>(conn: &Conn, what: &str, r: &T) -> Result<()> {
    done(conn, said(what, r), view(r))
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

fn nothing_to_change(any: bool, what: &str) -> Result<()> {
    if !any {
        bail!("nothing to change: give at least one option to `{what} set` (see --help)");
    }
    Ok(())
}

// ----- commands ----------------------------------------------------------------------

/// Runs a `stratus identity` command.
pub async fn run(conn: &Conn, cmd: IdentityCmd) -> Result<()> {
    let s = IdentityStore::new(conn.client()?.revealing());
    match cmd {
        IdentityCmd::Domain { cmd } => domain(conn, &s, cmd).await,
        IdentityCmd::Project { cmd } => project(conn, &s, cmd).await,
        IdentityCmd::User { cmd } => user(conn, &s, cmd).await,
        IdentityCmd::Group { cmd } => group(conn, &s, cmd).await,
        IdentityCmd::Role { cmd } => role(conn, &s, cmd).await,
        IdentityCmd::Bootstrap {
            project,
            user,
            role,
            password,
        } => {
            let user = user.unwrap_or_else(|| "admin".into());
            let (pw, shown) = match password.get()? {
                Some(p) => p,
                None => (random_password(), true),
            };
            let (p, u, created) = s.ensure_user(&project, &user, &pw, &role).await?;
            let v = json!({"project": view(&p), "user": view(&u), "role": role,
                           "created": created, "password": (created && shown).then_some(&pw)});
            let mut msg = format!(
                "Domain Default and roles admin, member, reader are in place.\n\
                 User {user} ({}) has role {role} on project {project} ({}).",
                u.id, p.id
            );
            if !created {
                msg.push_str(&format!(
                    "\nUser {user} existed: its password is unchanged."
                ));
            } else if shown {
                msg.push_str(&format!("\nPassword of {user}: {pw}   (shown once)"));
            }
            done(conn, msg, v)
        }
    }
}

/// Runs `stratus project …`.
pub async fn run_project(conn: &Conn, cmd: ProjectCmd) -> Result<()> {
    project(conn, &IdentityStore::new(conn.client()?.revealing()), cmd).await
}

/// Runs `stratus role …`.
pub async fn run_role(conn: &Conn, cmd: RoleCmd) -> Result<()> {
    role(conn, &IdentityStore::new(conn.client()?.revealing()), cmd).await
}

async fn domain(conn: &Conn, s: &IdentityStore, cmd: DomainCmd) -> Result<()> {
    match cmd {
        DomainCmd::List => {
            let mut list = s.list::<Domain>().await?;
            list.sort_by(|a, b| a.name.cmp(&b.name));
            let rows = list
                .iter()
                .map(|d| {
                    vec![
                        d.id.clone(),
                        d.name.clone(),
                        yes_no(d.enabled),
                        d.description.clone(),
                    ]
                })
                .collect();
            let json = list.iter().map(view).collect();
            print_list(conn, json, &["ID", "NAME", "ENABLED", "DESCRIPTION"], rows)
        }
        DomainCmd::Create {
            name,
            description,
            disable,
        } => {
            let d = Domain {
                v: RECORD_VERSION,
                id: stratus_client::identity::new_id(),
                name,
                description: description.unwrap_or_default(),
                enabled: !disable,
                tags: Vec::new(),
            };
            create(conn, s, &d).await
        }
        DomainCmd::Show { domain } => {
            print_record(conn, &view(&find::<Domain>(s, &domain, "-").await?))
        }
        DomainCmd::Set {
            domain,
            name,
            description,
            state,
        } => {
            nothing_to_change(
                name.is_some() || description.is_some() || state.wanted().is_some(),
                "domain",
            )?;
            let id = domain_id(s, &domain).await?;
            let (old, new) = s
                .update::<Domain>(&id, |d| {
                    if let Some(n) = &name {
                        d.name = n.clone();
                    }
                    if let Some(x) = &description {
                        d.description = x.clone();
                    }
                    if let Some(e) = state.wanted() {
                        d.enabled = e;
                    }
                    Ok(())
                })
                .await?;
            if old.enabled && !new.enabled {
                // No token may go on acting in a disabled domain.
                for u in s.list::<User>().await? {
                    if u.domain_id == id {
                        s.revoke_disabled(Some(&u.id), None).await?;
                    }
                }
                for p in s.list::<Project>().await? {
                    if p.domain_id == id {
                        s.revoke_disabled(None, Some(&p.id)).await?;
                    }
                }
            }
            did(conn, "Updated", &new)
        }
        DomainCmd::Delete { domains } => {
            for d in domains {
                let d = find::<Domain>(s, &d, "-").await?;
                if d.id == DEFAULT_DOMAIN_ID {
                    bail!("the Default domain cannot be deleted");
                }
                delete(conn, s, &d).await?;
            }
            Ok(())
        }
    }
}

async fn project(conn: &Conn, s: &IdentityStore, cmd: ProjectCmd) -> Result<()> {
    match cmd {
        ProjectCmd::List { domain } => {
            let (list, names) = list_in::<Project>(s, domain.as_deref()).await?;
            let rows = list
                .iter()
                .map(|p| {
                    let mut row = row_head(p, &names);
                    row.extend([yes_no(p.enabled), p.description.clone()]);
                    row
                })
                .collect();
            let json = list.iter().map(view).collect();
            print_list(
                conn,
                json,
                &["ID", "NAME", "DOMAIN", "ENABLED", "DESCRIPTION"],
                rows,
            )
        }
        ProjectCmd::Create {
            name,
            domain,
            description,
            tags,
            disable,
        } => {
            let p = Project {
                v: RECORD_VERSION,
                id: stratus_client::identity::new_id(),
                name,
                domain_id: domain_id(s, &domain).await?,
                description: description.unwrap_or_default(),
                enabled: !disable,
                tags,
            };
            create(conn, s, &p).await
        }
        ProjectCmd::Show { project, domain } => print_record(
            conn,
            &view(&find_in::<Project>(s, &project, &domain).await?),
        ),
        ProjectCmd::Set {
            project,
            domain,
            name,
            description,
            tags,
            no_tags,
            state,
        } => {
            nothing_to_change(
                name.is_some()
                    || description.is_some()
                    || !tags.is_empty()
                    || no_tags
                    || state.wanted().is_some(),
                "project",
            )?;
            let id = find_in::<Project>(s, &project, &domain).await?.id;
            let (old, new) = s
                .update::<Project>(&id, |p| {
                    if let Some(n) = &name {
                        p.name = n.clone();
                    }
                    if let Some(x) = &description {
                        p.description = x.clone();
                    }
                    if !tags.is_empty() || no_tags {
                        p.tags = tags.clone();
                    }
                    if let Some(e) = state.wanted() {
                        p.enabled = e;
                    }
                    Ok(())
                })
                .await?;
            if old.enabled && !new.enabled {
                s.revoke_disabled(None, Some(&id)).await?;
            }
            did(conn, "Updated", &new)
        }
        ProjectCmd::Delete { projects, domain } => {
            delete_in::<Project>(conn, s, &projects, &domain).await
        }
    }
}

/// Sets or clears a free-form user attribute (`email`, `description`); "" clears it.
fn set_extra(extra: &mut Map<String, Value>, key: &str, value: &Option<String>) {
    match value.as_deref() {
        None => {}
        Some("") => {
            extra.remove(key);
        }
        Some(v) => {
            extra.insert(key.into(), Value::String(v.into()));
        }
    }
}

async fn user(conn: &Conn, s: &IdentityStore, cmd: UserCmd) -> Result<()> {
    match cmd {
        UserCmd::List { domain } => {
            let (list, names) = list_in::<User>(s, domain.as_deref()).await?;
            let projects: HashMap<String, String> = s
                .list::<Project>()
                .await?
                .into_iter()
                .map(|p| (p.id, p.name))
                .collect();
            let rows = list
                .iter()
                .map(|u| {
                    let mut row = row_head(u, &names);
                    row.extend([
                        yes_no(u.enabled),
                        u.default_project_id
                            .as_ref()
                            .map(|p| projects.get(p).unwrap_or(p).clone())
                            .unwrap_or_default(),
                        u.extra
                            .get("email")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    ]);
                    row
                })
                .collect();
            let json = list.iter().map(view).collect();
            print_list(
                conn,
                json,
                &["ID", "NAME", "DOMAIN", "ENABLED", "PROJECT", "EMAIL"],
                rows,
            )
        }
        UserCmd::Create {
            name,
            domain,
            password,
            project,
            project_domain,
            email,
            description,
            disable,
        } => {
            let pw = password.get()?;
            let default_project_id =
                some_id_in::<Project>(s, project.as_deref(), &project_domain).await?;
            let mut extra = Map::new();
            set_extra(&mut extra, "email", &email);
            set_extra(&mut extra, "description", &description);
            let u = User {
                v: RECORD_VERSION,
                id: stratus_client::identity::new_id(),
                name,
                domain_id: domain_id(s, &domain).await?,
                enabled: !disable,
                default_project_id,
                password_hash: match &pw {
                    Some((p, _)) => Some(password::hash_async(p.clone()).await?),
                    None => None,
                },
                extra,
            };
            s.create(&u).await?;
            let mut msg = said("Created", &u);
            let mut v = view(&u);
            match &pw {
                Some((p, true)) => {
                    msg.push_str(&format!("\nPassword: {p}   (shown once)"));
                    v["password"] = Value::String(p.clone());
                }
                Some(_) => {}
                None => msg.push_str("\nIt has no password (set one with --password)."),
            }
            done(conn, msg, v)
        }
        UserCmd::Show { name, domain } => {
            print_record(conn, &view(&find_in::<User>(s, &name, &domain).await?))
        }
        UserCmd::Set {
            name,
            domain,
            new_name,
            password,
            project,
            project_domain,
            email,
            description,
            state,
        } => {
            let pw = password.get()?;
            nothing_to_change(
                new_name.is_some()
                    || pw.is_some()
                    || project.is_some()
                    || email.is_some()
                    || description.is_some()
                    || state.wanted().is_some(),
                "identity user",
            )?;
            let id = find_in::<User>(s, &name, &domain).await?.id;
            let default_project = match project.as_deref() {
                None => None,
                Some("") => Some(None),
                Some(p) => Some(Some(find_in::<Project>(s, p, &project_domain).await?.id)),
            };
            let (old, mut new) = s
                .update::<User>(&id, |u| {
                    if let Some(n) = &new_name {
                        u.name = n.clone();
                    }
                    if let Some(p) = &default_project {
                        u.default_project_id = p.clone();
                    }
                    set_extra(&mut u.extra, "email", &email);
                    set_extra(&mut u.extra, "description", &description);
                    if let Some(e) = state.wanted() {
                        u.enabled = e;
                    }
                    Ok(())
                })
                .await?;
            if old.enabled && !new.enabled {
                s.revoke_disabled(Some(&id), None).await?;
            }
            let mut msg = said("Updated", &new);
            let mut v = view(&new);
            if let Some((p, shown)) = &pw {
                s.set_password(&id, p).await?;
                new = s.need::<User>(&id).await?;
                v = view(&new);
                msg.push_str("; its password changed and its tokens are void");
                if *shown {
                    msg.push_str(&format!("\nPassword: {p}   (shown once)"));
                    v["password"] = Value::String(p.clone());
                }
            }
            done(conn, msg, v)
        }
        UserCmd::Delete { names, domain } => delete_in::<User>(conn, s, &names, &domain).await,
    }
}

async fn group(conn: &Conn, s: &IdentityStore, cmd: GroupCmd) -> Result<()> {
    match cmd {
        GroupCmd::List { domain } => {
            let (list, names) = list_in::<Group>(s, domain.as_deref()).await?;
            let mut rows = Vec::new();
            let mut json = Vec::new();
            for g in &list {
                let members = s.users_of(&g.id).await?.len();
                let mut row = row_head(g, &names);
                row.extend([members.to_string(), g.description.clone()]);
                rows.push(row);
                let mut v = view(g);
                v["members"] = json!(members);
                json.push(v);
            }
            print_list(
                conn,
                json,
                &["ID", "NAME", "DOMAIN", "MEMBERS", "DESCRIPTION"],
                rows,
            )
        }
        GroupCmd::Create {
            name,
            domain,
            description,
        } => {
            let g = Group {
                v: RECORD_VERSION,
                id: stratus_client::identity::new_id(),
                name,
                domain_id: domain_id(s, &domain).await?,
                description: description.unwrap_or_default(),
            };
            create(conn, s, &g).await
        }
        GroupCmd::Show { group, domain } => {
            let g = find_in::<Group>(s, &group, &domain).await?;
            let mut members = Vec::new();
            for id in s.users_of(&g.id).await? {
                members.push(match s.get::<User>(&id).await? {
                    Some(u) => u.name,
                    None => id,
                });
            }
            members.sort();
            let mut v = view(&g);
            v["members"] = json!(members);
            print_record(conn, &v)
        }
        GroupCmd::Delete { groups, domain } => delete_in::<Group>(conn, s, &groups, &domain).await,
        GroupCmd::AddUser {
            group,
            users,
            group_domain,
            user_domain,
        } => {
            let g = find_in::<Group>(s, &group, &group_domain).await?;
            for u in users {
                let u = find_in::<User>(s, &u, &user_domain).await?;
                s.add_member(&g.id, &u.id).await?;
                done(
                    conn,
                    format!("Added user {} to group {}", u.name, g.name),
                    json!({"group_id": g.id, "user_id": u.id}),
                )?;
            }
            Ok(())
        }
        GroupCmd::RemoveUser {
            group,
            users,
            group_domain,
            user_domain,
        } => {
            let g = find_in::<Group>(s, &group, &group_domain).await?;
            for u in users {
                let u = find_in::<User>(s, &u, &user_domain).await?;
                if !s.remove_member(&g.id, &u.id).await? {
                    bail!("user {} is not in group {}", u.name, g.name);
                }
                done(
                    conn,
                    format!("Removed user {} from group {}", u.name, g.name),
                    json!({"group_id": g.id, "user_id": u.id}),
                )?;
            }
            Ok(())
        }
    }
}

/// A resolved `Grant`: the assignment, and its words for messages.
async fn assignment(s: &IdentityStore, role: &str, on: &Grant) -> Result<(Assignment, String)> {
    let (target, where_) = match (&on.project, &on.domain) {
        (Some(p), _) => {
            let p = find_in::<Project>(s, p, &on.domains.project_domain).await?;
            (Target::Project(p.id), format!("project {}", p.name))
        }
        (None, Some(d)) => {
            let d = find::<Domain>(s, d, "-").await?;
            (Target::Domain(d.id), format!("domain {}", d.name))
        }
        (None, None) => bail!("give --project or --domain"),
    };
    let (actor, who) = match (&on.user, &on.group) {
        (Some(u), _) => {
            let u = find_in::<User>(s, u, &on.domains.user_domain).await?;
            (Actor::User(u.id), format!("user {}", u.name))
        }
        (None, Some(g)) => {
            let g = find_in::<Group>(s, g, &on.domains.group_domain).await?;
            (Actor::Group(g.id), format!("group {}", g.name))
        }
        (None, None) => bail!("give --user or --group"),
    };
    let role_domain = match &target {
        Target::Domain(d) => Some(d.as_str()),
        Target::Project(_) => None,
    };
    let r = find_role(s, role, role_domain).await?;
    let a = Assignment {
        target,
        actor,
        role_id: r.id,
    };
    Ok((a, format!("role {} … {who} on {where_}", r.name)))
}

fn assignment_json(a: &Assignment) -> Value {
    let (scope, id) = match &a.target {
        Target::Project(p) => ("project_id", p),
        Target::Domain(d) => ("domain_id", d),
    };
    let (actor, aid) = match &a.actor {
        Actor::User(u) => ("user_id", u),
        Actor::Group(g) => ("group_id", g),
    };
    json!({"role_id": a.role_id, scope: id, actor: aid})
}

async fn role(conn: &Conn, s: &IdentityStore, cmd: RoleCmd) -> Result<()> {
    match cmd {
        RoleCmd::List => {
            let mut list = s.list::<Role>().await?;
            list.sort_by(|a, b| (&a.domain_id, &a.name).cmp(&(&b.domain_id, &b.name)));
            let by_id: HashMap<&str, &str> = list
                .iter()
                .map(|r| (r.id.as_str(), r.name.as_str()))
                .collect();
            let implied = s.implications().await?;
            let names = domain_names(s).await?;
            let mut rows = Vec::new();
            let mut json = Vec::new();
            for r in &list {
                let mut imp: Vec<&str> = implied
                    .iter()
                    .filter(|(p, _)| *p == r.id)
                    .map(|(_, i)| by_id.get(i.as_str()).copied().unwrap_or(i.as_str()))
                    .collect();
                imp.sort();
                rows.push(vec![
                    r.id.clone(),
                    r.name.clone(),
                    r.domain_id
                        .as_ref()
                        .map(|d| names.get(d).unwrap_or(d).clone())
                        .unwrap_or_default(),
                    imp.join(", "),
                ]);
                let mut v = view(r);
                v["implies"] = json!(imp);
                json.push(v);
            }
            print_list(conn, json, &["ID", "NAME", "DOMAIN", "IMPLIES"], rows)
        }
        RoleCmd::Create {
            name,
            domain,
            description,
        } => {
            let domain_id = some_domain_id(s, domain.as_deref()).await?;
            let r = Role {
                v: RECORD_VERSION,
                id: stratus_client::identity::new_id(),
                name,
                domain_id,
                description,
            };
            create(conn, s, &r).await
        }
        RoleCmd::Delete { roles } => {
            for r in roles {
                delete(conn, s, &find_role(s, &r, None).await?).await?;
            }
            Ok(())
        }
        RoleCmd::Add { role, on } => {
            let (a, words) = assignment(s, &role, &on).await?;
            s.grant(&a).await?;
            done(
                conn,
                format!("Granted {}", words.replace(" … ", " to ")),
                assignment_json(&a),
            )
        }
        RoleCmd::Remove { role, on } => {
            let (a, words) = assignment(s, &role, &on).await?;
            if !s.ungrant(&a).await? {
                bail!("no assignment of {}", words.replace(" … ", " to "));
            }
            done(
                conn,
                format!("Removed {}", words.replace(" … ", " from ")),
                assignment_json(&a),
            )
        }
        RoleCmd::Assignment {
            cmd:
                AssignmentCmd::List {
                    project,
                    domain,
                    user,
                    group,
                    role,
                    domains,
                    names,
                },
        } => {
            let project = some_id_in::<Project>(s, project.as_deref(), &domains.project_domain)
                .await?
                .map(Target::Project);
            let domain = some_domain_id(s, domain.as_deref())
                .await?
                .map(Target::Domain);
            let user = some_id_in::<User>(s, user.as_deref(), &domains.user_domain)
                .await?
                .map(Actor::User);
            let group = some_id_in::<Group>(s, group.as_deref(), &domains.group_domain)
                .await?
                .map(Actor::Group);
            let role = match role {
                Some(r) => Some(find_role(s, &r, None).await?.id),
                None => None,
            };
            let mut list: Vec<Assignment> = s
                .assignments()
                .await?
                .into_iter()
                .filter(|a| project.as_ref().is_none_or(|t| *t == a.target))
                .filter(|a| domain.as_ref().is_none_or(|t| *t == a.target))
                .filter(|a| user.as_ref().is_none_or(|x| *x == a.actor))
                .filter(|a| group.as_ref().is_none_or(|x| *x == a.actor))
                .filter(|a| role.as_ref().is_none_or(|r| *r == a.role_id))
                .collect();
            list.sort();
            let n = Names::load(s).await?;
            let mut rows = Vec::new();
            let mut json = Vec::new();
            for a in &list {
                let mut v = assignment_json(a);
                let mut row = vec![String::new(); 5];
                let show = |id: &str, name: String| if names { name } else { id.to_string() };
                row[0] = show(&a.role_id, n.role(&a.role_id));
                v["role"] = json!(n.role(&a.role_id));
                match &a.actor {
                    Actor::User(u) => {
                        row[1] = show(u, n.user(u));
                        v["user"] = json!(n.user(u));
                    }
                    Actor::Group(g) => {
                        row[2] = show(g, n.group(g));
                        v["group"] = json!(n.group(g));
                    }
                }
                match &a.target {
                    Target::Project(p) => {
                        row[3] = show(p, n.project(p));
                        v["project"] = json!(n.project(p));
                    }
                    Target::Domain(d) => {
                        row[4] = show(d, n.domain(d));
                        v["domain"] = json!(n.domain(d));
                    }
                }
                rows.push(row);
                json.push(v);
            }
            print_list(
                conn,
                json,
                &["ROLE", "USER", "GROUP", "PROJECT", "DOMAIN"],
                rows,
            )
        }
    }
}

/// Names of everything an assignment can name, as `openstack … --names` prints them
/// (`name@Domain` for what lives in a domain); an id when the record is gone.
struct Names {
    domains: HashMap<String, String>,
    roles: HashMap<String, Role>,
    users: HashMap<String, User>,
    groups: HashMap<String, Group>,
    projects: HashMap<String, Project>,
}

impl Names {
    async fn load(s: &IdentityStore) -> Result<Self> {
        fn by_id<T: Record>(v: Vec<T>) -> HashMap<String, T> {
            v.into_iter().map(|t| (t.id().to_string(), t)).collect()
        }
        Ok(Self {
            domains: domain_names(s).await?,
            roles: by_id(s.list().await?),
            users: by_id(s.list().await?),
            groups: by_id(s.list().await?),
            projects: by_id(s.list().await?),
        })
    }
    fn at(&self, name: &str, domain: &str) -> String {
        format!(
            "{name}@{}",
            self.domains.get(domain).map_or(domain, String::as_str)
        )
    }
    fn domain(&self, id: &str) -> String {
        self.domains.get(id).cloned().unwrap_or_else(|| id.into())
    }
    fn role(&self, id: &str) -> String {
        match self.roles.get(id) {
            Some(Role {
                name,
                domain_id: Some(d),
                ..
            }) => self.at(name, d),
            Some(r) => r.name.clone(),
            None => id.into(),
        }
    }
    fn user(&self, id: &str) -> String {
        self.users
            .get(id)
            .map_or_else(|| id.into(), |u| self.at(&u.name, &u.domain_id))
    }
    fn group(&self, id: &str) -> String {
        self.groups
            .get(id)
            .map_or_else(|| id.into(), |g| self.at(&g.name, &g.domain_id))
    }
    fn project(&self, id: &str) -> String {
        self.projects
            .get(id)
            .map_or_else(|| id.into(), |p| self.at(&p.name, &p.domain_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_hide_the_password_hash_and_lift_attributes() {
        let mut extra = Map::new();
        extra.insert("email".into(), json!("a@example.com"));
        let u = User {
            v: 1,
            id: "u1".into(),
            name: "alice".into(),
            domain_id: "default".into(),
            enabled: true,
            default_project_id: None,
            password_hash: Some("$argon2id$secret".into()),
            extra,
        };
        let v = view(&u);
        assert!(!v.to_string().contains("argon2"), "{v}");
        assert_eq!(v["password_set"], true);
        assert_eq!(v["email"], "a@example.com");
        assert!(v.get("v").is_none() && v.get("extra").is_none());
        let t = fields(&v);
        assert!(t.starts_with("FIELD"), "{t}");
        assert!(
            t.lines()
                .any(|l| l.starts_with("name ") && l.ends_with(" alice")),
            "{t}"
        );
    }

    #[test]
    fn cells_render_json() {
        assert_eq!(cell(&json!(null)), "");
        assert_eq!(cell(&json!(["a", "b"])), "a, b");
        assert_eq!(cell(&json!(true)), "true");
        assert_eq!(cell(&json!("x")), "x");
    }

    #[test]
    fn extra_attributes_set_and_clear() {
        let mut m = Map::new();
        set_extra(&mut m, "email", &Some("x@y".into()));
        assert_eq!(m["email"], "x@y");
        set_extra(&mut m, "email", &None);
        assert_eq!(m["email"], "x@y");
        set_extra(&mut m, "email", &Some(String::new()));
        assert!(m.is_empty());
    }

    #[test]
    fn random_passwords_are_20_alphanumerics() {
        let a = random_password();
        assert_eq!(a.len(), 20);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, random_password());
    }

    #[test]
    fn enable_flags() {
        let e = |enable, disable| EnableArgs { enable, disable }.wanted();
        assert_eq!(e(false, false), None);
        assert_eq!(e(true, false), Some(true));
        assert_eq!(e(false, true), Some(false));
        assert!(nothing_to_change(false, "project").is_err());
        assert!(nothing_to_change(true, "project").is_ok());
    }

    #[test]
    fn assignments_as_json() {
        let a = Assignment {
            target: Target::Project("p".into()),
            actor: Actor::Group("g".into()),
            role_id: "r".into(),
        };
        assert_eq!(
            assignment_json(&a),
            json!({"role_id": "r", "project_id": "p", "group_id": "g"})
        );
    }
}
