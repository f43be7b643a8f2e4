//! [`IdentityStore`]: identity records in meta, each change one transaction.

use std::collections::{BTreeSet, HashMap};

use serde::de::DeserializeOwned;
use serde::Serialize;
use stratus_proto::meta as pb;

use super::password;
use super::revoke::{now_us, Revocation, REVOKED};
use super::token::TokenKey;
use super::{
    check_name, new_id, Actor, Assignment, Domain, Group, IdentityError, Project, Role, Target,
    User, BOOTSTRAP_ROLES, DEFAULT_DOMAIN_ID, DEFAULT_DOMAIN_NAME,
};
use crate::meta::MetaClient;
use crate::records::RECORD_VERSION;

pub(crate) const ASSIGN: &str = "/identity/assign/";
const NAMES: &str = "/identity/names/";
const MEMBERS: &str = "/identity/members/";
const GROUP_USERS: &str = "/identity/group-users/";
const IMPLIES: &str = "/identity/implies/";
const TOKEN_SECRET: &str = "/auth/token-secret";

type Result<T> = std::result::Result<T, IdentityError>;

/// A record kept under `/identity/<kind>/<id>` with a name unique in its scope.
pub trait Record: Serialize + DeserializeOwned + Clone {
    /// Collection name (`projects`).
    const KIND: &'static str;
    /// Singular, for messages (`project`).
    const LABEL: &'static str;
    fn id(&self) -> &str;
    fn name(&self) -> &str;
    /// Where the name must be unique: the domain id, or `-`.
    fn name_scope(&self) -> &str;
}

macro_rules! record {
    ($t:ty, $kind:literal, $label:literal, |$s:ident| $scope:expr) => {
        impl Record for $t {
            const KIND: &'static str = $kind;
            const LABEL: &'static str = $label;
            fn id(&self) -> &str {
                &self.id
            }
            fn name(&self) -> &str {
                &self.name
            }
            fn name_scope(&self) -> &str {
                let $s = self;
                $scope
            }
        }
    };
}
record!(Domain, "domains", "domain", |_d| "-");
record!(Project, "projects", "project", |p| &p.domain_id);
record!(User, "users", "user", |u| &u.domain_id);
record!(Group, "groups", "group", |g| &g.domain_id);
record!(Role, "roles", "role", |r| r
    .domain_id
    .as_deref()
    .unwrap_or("-"));

fn record_key<T: Record>(id: &str) -> String {
    format!("/identity/{}/{id}", T::KIND)
}

fn name_key<T: Record>(scope: &str, name: &str) -> String {
    format!("{NAMES}{}/{scope}/{name}", T::KIND)
}

fn put(key: String, value: Vec<u8>) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::Put(pb::PutRequest {
            key: key.into_bytes(),
            value,
            ..Default::default()
        })),
    }
}

fn del(key: String, prefix: bool) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::Delete(pb::DeleteRequest {
            key: key.into_bytes(),
            prefix,
            ..Default::default()
        })),
    }
}

fn absent(key: &str) -> pb::Compare {
    pb::Compare {
        result: pb::compare::Result::Equal as i32,
        key: key.as_bytes().to_vec(),
        target: Some(pb::compare::Target::Version(0)),
    }
}

fn unchanged(key: &str, mod_revision: i64) -> pb::Compare {
    pb::Compare {
        result: pb::compare::Result::Equal as i32,
        key: key.as_bytes().to_vec(),
        target: Some(pb::compare::Target::ModRevision(mod_revision)),
    }
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("plain struct serializes")
}

fn decode<T: DeserializeOwned>(what: &str, v: &[u8]) -> Result<T> {
    serde_json::from_slice(v).map_err(|e| IdentityError::Damaged(format!("{what}: {e}")))
}

fn not_found<T: Record>(id: &str) -> IdentityError {
    IdentityError::NotFound {
        kind: T::LABEL,
        id: id.to_string(),
    }
}

/// Identity in meta.
#[derive(Clone)]
pub struct IdentityStore {
    client: MetaClient,
}

impl IdentityStore {
    /// Identity over a meta client.
    pub fn new(client: MetaClient) -> Self {
        Self { client }
    }

    /// The meta client underneath.
    pub fn client(&self) -> &MetaClient {
        &self.client
    }

    /// The Keystone token key, derived from the cluster's token secret (created on first
    /// use, shared with TempAuth).
    pub async fn token_key(&self) -> Result<TokenKey> {
        let fresh: [u8; 32] = rand::random();
        let secret: [u8; 32] = self
            .client
            .get_or_create(TOKEN_SECRET, fresh.to_vec())
            .await?
            .ok_or_else(|| IdentityError::Damaged("token secret vanished".into()))?
            .as_slice()
            .try_into()
            .map_err(|_| IdentityError::Damaged("token secret is not 32 bytes".into()))?;
        Ok(TokenKey::derive(&secret))
    }

    // ----- records -------------------------------------------------------------------

    async fn get_rev<T: Record>(&self, id: &str) -> Result<Option<(T, i64)>> {
        if id.is_empty() || id.contains('/') {
            return Ok(None);
        }
        match self.client.get(record_key::<T>(id)).await? {
            None => Ok(None),
            Some(kv) => Ok(Some((decode(T::LABEL, &kv.value)?, kv.mod_revision))),
        }
    }

    /// The record with `id`, if any.
    pub async fn get<T: Record>(&self, id: &str) -> Result<Option<T>> {
        Ok(self.get_rev(id).await?.map(|(t, _)| t))
    }

    /// The record with `id`, or 404.
    pub async fn need<T: Record>(&self, id: &str) -> Result<T> {
        self.get(id).await?.ok_or_else(|| not_found::<T>(id))
    }

    /// The record named `name` in `scope` (a domain id, or `-`), if any.
    pub async fn by_name<T: Record>(&self, scope: &str, name: &str) -> Result<Option<T>> {
        if name.is_empty() || name.contains('/') || scope.contains('/') {
            // Such names are looked up by scanning (they cannot form a key).
            return Ok(self
                .list::<T>()
                .await?
                .into_iter()
                .find(|r| r.name() == name && r.name_scope() == scope));
        }
        match self.client.get(name_key::<T>(scope, name)).await? {
            None => Ok(None),
            Some(kv) => {
                let id = String::from_utf8_lossy(&kv.value).into_owned();
                self.get(&id).await
            }
        }
    }

    /// Every record of a kind.
    pub async fn list<T: Record>(&self) -> Result<Vec<T>> {
        let r = self
            .client
            .range_prefix(format!("/identity/{}/", T::KIND), 0)
            .await?;
        r.kvs.iter().map(|kv| decode(T::LABEL, &kv.value)).collect()
    }

    /// Stores a new record; 409 if its name is taken in its scope.
    pub async fn create<T: Record>(&self, rec: &T) -> Result<()> {
        check_name(T::LABEL, rec.name())?;
        let key = record_key::<T>(rec.id());
        let mut compare = vec![absent(&key)];
        let mut ops = vec![put(key, json(rec))];
        if !rec.name().contains('/') {
            let nk = name_key::<T>(rec.name_scope(), rec.name());
            compare.push(absent(&nk));
            ops.push(put(nk, rec.id().as_bytes().to_vec()));
        } else if self
            .by_name::<T>(rec.name_scope(), rec.name())
            .await?
            .is_some()
        {
            return Err(self.duplicate::<T>(rec));
        }
        let r = self
            .client
            .txn(pb::TxnRequest {
                compare,
                success: ops,
                ..Default::default()
            })
            .await?;
        if !r.succeeded {
            return Err(self.duplicate::<T>(rec));
        }
        Ok(())
    }

    fn duplicate<T: Record>(&self, rec: &T) -> IdentityError {
        IdentityError::Duplicate {
            kind: T::LABEL,
            name: rec.name().to_string(),
        }
    }

    /// Changes a record with `f` (read, change, compare-and-swap, retried on a race); 409
    /// if a rename collides.
    pub async fn update<T: Record>(
        &self,
        id: &str,
        mut f: impl FnMut(&mut T) -> Result<()>,
    ) -> Result<(T, T)> {
        for _ in 0..8 {
            let (old, rev) = self
                .get_rev::<T>(id)
                .await?
                .ok_or_else(|| not_found::<T>(id))?;
            let mut new = old.clone();
            f(&mut new)?;
            check_name(T::LABEL, new.name())?;
            let key = record_key::<T>(id);
            let mut compare = vec![unchanged(&key, rev)];
            let mut ops = vec![put(key, json(&new))];
            let renamed = old.name() != new.name() || old.name_scope() != new.name_scope();
            if renamed {
                if new.name().contains('/') {
                    return Err(IdentityError::Invalid(format!(
                        "Invalid input for field 'name': a {} name cannot contain '/'.",
                        T::LABEL
                    )));
                }
                let nk = name_key::<T>(new.name_scope(), new.name());
                compare.push(absent(&nk));
                ops.push(put(nk, id.as_bytes().to_vec()));
                ops.push(del(name_key::<T>(old.name_scope(), old.name()), false));
            }
            let r = self
                .client
                .txn(pb::TxnRequest {
                    compare,
                    success: ops,
                    ..Default::default()
                })
                .await?;
            if r.succeeded {
                return Ok((old, new));
            }
            if renamed
                && self
                    .by_name::<T>(new.name_scope(), new.name())
                    .await?
                    .is_some_and(|o| o.id() != id)
            {
                return Err(self.duplicate::<T>(&new));
            }
        }
        Err(IdentityError::Invalid(format!(
            "{} {id} is changing too often; try again",
            T::LABEL
        )))
    }

    async fn remove<T: Record>(&self, rec: &T, extra: Vec<pb::RequestOp>) -> Result<()> {
        let mut ops = vec![
            del(record_key::<T>(rec.id()), false),
            del(name_key::<T>(rec.name_scope(), rec.name()), false),
        ];
        ops.extend(extra);
        self.client
            .txn(pb::TxnRequest {
                success: ops,
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    // ----- deletes, with what hangs off each record ------------------------------------

    /// Deletes a project, its role assignments and every token scoped to it.
    pub async fn delete_project(&self, id: &str) -> Result<()> {
        let p: Project = self.need(id).await?;
        let scope = Target::Project(id.into()).key();
        self.remove(&p, vec![del(format!("{ASSIGN}{scope}/"), true)])
            .await?;
        self.revoke(Revocation {
            project_id: Some(id.into()),
            ..Default::default()
        })
        .await
        .map(drop)
    }

    /// Deletes a user, its assignments and memberships, and voids its tokens.
    pub async fn delete_user(&self, id: &str) -> Result<()> {
        let u: User = self.need(id).await?;
        let mut extra = vec![del(format!("{MEMBERS}{id}/"), true)];
        for g in self.groups_of(id).await? {
            extra.push(del(format!("{GROUP_USERS}{g}/{id}"), false));
        }
        for a in self.assignments().await? {
            if a.actor == Actor::User(id.into()) {
                extra.push(del(a.key(), false));
            }
        }
        self.remove(&u, extra).await?;
        self.revoke_user(id).await
    }

    /// Deletes a group, its memberships and assignments; its members' tokens are voided.
    pub async fn delete_group(&self, id: &str) -> Result<()> {
        let g: Group = self.need(id).await?;
        let users = self.users_of(id).await?;
        let mut extra = vec![del(format!("{GROUP_USERS}{id}/"), true)];
        for u in &users {
            extra.push(del(format!("{MEMBERS}{u}/{id}"), false));
        }
        for a in self.assignments().await? {
            if a.actor == Actor::Group(id.into()) {
                extra.push(del(a.key(), false));
            }
        }
        self.remove(&g, extra).await?;
        for u in users {
            self.revoke_user(&u).await?;
        }
        Ok(())
    }

    /// Deletes a role, its assignments and implications; tokens carrying it are voided.
    pub async fn delete_role(&self, id: &str) -> Result<()> {
        let r: Role = self.need(id).await?;
        let mut extra = vec![del(format!("{IMPLIES}{id}/"), true)];
        for (prior, implied) in self.implications().await? {
            if implied == id {
                extra.push(del(format!("{IMPLIES}{prior}/{implied}"), false));
            }
        }
        for a in self.assignments().await? {
            if a.role_id == id {
                extra.push(del(a.key(), false));
            }
        }
        self.remove(&r, extra).await?;
        self.revoke(Revocation {
            role_id: Some(id.into()),
            ..Default::default()
        })
        .await
        .map(drop)
    }

    /// Deletes a disabled domain with everything in it (Keystone refuses an enabled one).
    pub async fn delete_domain(&self, id: &str) -> Result<()> {
        let d: Domain = self.need(id).await?;
        if d.enabled {
            return Err(IdentityError::Forbidden(
                "Cannot delete a domain that is enabled, please disable it first.".to_string(),
            ));
        }
        for p in self.list::<Project>().await? {
            if p.domain_id == id {
                self.delete_project(&p.id).await?;
            }
        }
        for u in self.list::<User>().await? {
            if u.domain_id == id {
                self.delete_user(&u.id).await?;
            }
        }
        for g in self.list::<Group>().await? {
            if g.domain_id == id {
                self.delete_group(&g.id).await?;
            }
        }
        let scope = Target::Domain(id.into()).key();
        self.remove(&d, vec![del(format!("{ASSIGN}{scope}/"), true)])
            .await
    }

    // ----- assignments, groups, implied roles --------------------------------------------

    /// Every role assignment.
    pub async fn assignments(&self) -> Result<Vec<Assignment>> {
        let r = self.client.range_prefix(ASSIGN, 0).await?;
        Ok(r.kvs
            .iter()
            .filter_map(|kv| Assignment::from_key(&String::from_utf8_lossy(&kv.key)))
            .collect())
    }

    /// Whether `a` exists.
    pub async fn has_assignment(&self, a: &Assignment) -> Result<bool> {
        Ok(self.client.get(a.key()).await?.is_some())
    }

    /// Grants a role (idempotent).
    pub async fn grant(&self, a: &Assignment) -> Result<()> {
        self.client.put(a.key(), Vec::new()).await?;
        Ok(())
    }

    /// Removes a role assignment and voids the tokens that carried it; false if absent.
    pub async fn ungrant(&self, a: &Assignment) -> Result<bool> {
        let r = self.client.delete(a.key(), false).await?;
        if r.deleted == 0 {
            return Ok(false);
        }
        let project_id = match &a.target {
            Target::Project(p) => Some(p.clone()),
            Target::Domain(_) => None,
        };
        let users = match &a.actor {
            Actor::User(u) => vec![u.clone()],
            Actor::Group(g) => self.users_of(g).await?,
        };
        for u in users {
            self.revoke(Revocation {
                user_id: Some(u),
                project_id: project_id.clone(),
                ..Default::default()
            })
            .await?;
        }
        Ok(true)
    }

    /// The groups `user_id` is in.
    pub async fn groups_of(&self, user_id: &str) -> Result<Vec<String>> {
        self.ids_under(&format!("{MEMBERS}{user_id}/")).await
    }

    /// The users in `group_id`.
    pub async fn users_of(&self, group_id: &str) -> Result<Vec<String>> {
        self.ids_under(&format!("{GROUP_USERS}{group_id}/")).await
    }

    async fn ids_under(&self, prefix: &str) -> Result<Vec<String>> {
        let r = self.client.range_prefix(prefix, 0).await?;
        Ok(r.kvs
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.key[prefix.len()..]).into_owned())
            .collect())
    }

    /// Whether `user_id` is in `group_id`.
    pub async fn is_member(&self, group_id: &str, user_id: &str) -> Result<bool> {
        Ok(self
            .client
            .get(format!("{MEMBERS}{user_id}/{group_id}"))
            .await?
            .is_some())
    }

    /// Adds `user_id` to `group_id` (idempotent).
    pub async fn add_member(&self, group_id: &str, user_id: &str) -> Result<()> {
        self.client
            .txn(pb::TxnRequest {
                success: vec![
                    put(format!("{MEMBERS}{user_id}/{group_id}"), Vec::new()),
                    put(format!("{GROUP_USERS}{group_id}/{user_id}"), Vec::new()),
                ],
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    /// Takes `user_id` out of `group_id` and voids its tokens; false if it was not in it.
    pub async fn remove_member(&self, group_id: &str, user_id: &str) -> Result<bool> {
        if !self.is_member(group_id, user_id).await? {
            return Ok(false);
        }
        self.client
            .txn(pb::TxnRequest {
                success: vec![
                    del(format!("{MEMBERS}{user_id}/{group_id}"), false),
                    del(format!("{GROUP_USERS}{group_id}/{user_id}"), false),
                ],
                ..Default::default()
            })
            .await?;
        self.revoke_user(user_id).await?;
        Ok(true)
    }

    /// Every `(prior, implied)` role pair.
    pub async fn implications(&self) -> Result<Vec<(String, String)>> {
        let r = self.client.range_prefix(IMPLIES, 0).await?;
        Ok(r.kvs
            .iter()
            .filter_map(|kv| {
                let k = String::from_utf8_lossy(&kv.key[IMPLIES.len()..]).into_owned();
                k.split_once('/')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
            })
            .collect())
    }

    /// Makes `prior` imply `implied` (idempotent).
    pub async fn imply(&self, prior: &str, implied: &str) -> Result<()> {
        if prior == implied {
            return Err(IdentityError::Invalid(
                "A role cannot imply itself.".to_string(),
            ));
        }
        self.client
            .put(format!("{IMPLIES}{prior}/{implied}"), Vec::new())
            .await?;
        Ok(())
    }

    /// Removes an implication; false if there was none.
    pub async fn unimply(&self, prior: &str, implied: &str) -> Result<bool> {
        let r = self
            .client
            .delete(format!("{IMPLIES}{prior}/{implied}"), false)
            .await?;
        if r.deleted > 0 {
            self.revoke(Revocation {
                role_id: Some(prior.into()),
                ..Default::default()
            })
            .await?;
        }
        Ok(r.deleted > 0)
    }

    /// The roles `user_id` holds on `target`: granted to it or to one of its groups, and
    /// every role those imply. Sorted by name.
    pub async fn effective_roles(&self, user_id: &str, target: &Target) -> Result<Vec<Role>> {
        let groups = self.groups_of(user_id).await?;
        let scope = target.key();
        let mut ids = BTreeSet::new();
        let mut actors = vec![Actor::User(user_id.into()).key()];
        actors.extend(groups.iter().map(|g| Actor::Group(g.clone()).key()));
        for actor in actors {
            let prefix = format!("{ASSIGN}{scope}/{actor}/");
            ids.extend(self.ids_under(&prefix).await?);
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let implied = self.implications().await?;
        let mut frontier: Vec<String> = ids.iter().cloned().collect();
        while let Some(r) = frontier.pop() {
            for (p, i) in &implied {
                if *p == r && ids.insert(i.clone()) {
                    frontier.push(i.clone());
                }
            }
        }
        let all: HashMap<String, Role> = self
            .list::<Role>()
            .await?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let mut roles: Vec<Role> = ids.iter().filter_map(|id| all.get(id).cloned()).collect();
        roles.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(roles)
    }

    // ----- revocation -------------------------------------------------------------------

    /// Records a revocation (stamped now) and drops events too old to matter.
    pub async fn revoke(&self, mut r: Revocation) -> Result<Revocation> {
        r.v = RECORD_VERSION;
        if r.issued_before_us == 0 {
            r.issued_before_us = now_us();
        }
        self.client
            .put(format!("{REVOKED}{}", new_id()), json(&r))
            .await?;
        let now = now_us();
        let old = self.client.range_prefix(REVOKED, 0).await?;
        for kv in old.kvs {
            if let Ok(e) = serde_json::from_slice::<Revocation>(&kv.value) {
                if !e.live(now) {
                    self.client.delete(kv.key, false).await?;
                }
            }
        }
        Ok(r)
    }

    async fn revoke_user(&self, user_id: &str) -> Result<()> {
        self.revoke(Revocation {
            user_id: Some(user_id.into()),
            ..Default::default()
        })
        .await
        .map(drop)
    }

    /// Sets a user's password and voids the tokens it had.
    pub async fn set_password(&self, user_id: &str, new: &str) -> Result<()> {
        let hash = password::hash_async(new.to_string()).await?;
        self.update::<User>(user_id, |u| {
            u.password_hash = Some(hash.clone());
            Ok(())
        })
        .await?;
        self.revoke_user(user_id).await
    }

    /// Voids the tokens of a user that was disabled (or the project's, for a project).
    pub async fn revoke_disabled(
        &self,
        user_id: Option<&str>,
        project_id: Option<&str>,
    ) -> Result<()> {
        self.revoke(Revocation {
            user_id: user_id.map(str::to_string),
            project_id: project_id.map(str::to_string),
            ..Default::default()
        })
        .await
        .map(drop)
    }

    // ----- authentication ---------------------------------------------------------------

    /// The enabled user whose password this is, or `None` — the same answer, after the same
    /// work, for an unknown user, a disabled one and a wrong password.
    pub async fn check_password(&self, user: Option<User>, given: &str) -> Option<User> {
        let hash = user
            .as_ref()
            .and_then(|u| u.password_hash.clone())
            .unwrap_or_else(|| password::decoy().to_string());
        let given = given.to_string();
        let ok = password::off_thread(move || password::verify(&hash, &given))
            .await
            .unwrap_or(false);
        user.filter(|u| ok && u.enabled && u.password_hash.is_some())
    }

    // ----- bootstrap --------------------------------------------------------------------

    /// Creates what every cluster has, when missing: the `default` domain and the roles
    /// `admin` → `member` → `reader` (each implying the next). Safe to run again.
    pub async fn bootstrap(&self) -> Result<Vec<Role>> {
        if self.get::<Domain>(DEFAULT_DOMAIN_ID).await?.is_none() {
            let d = Domain {
                v: RECORD_VERSION,
                id: DEFAULT_DOMAIN_ID.into(),
                name: DEFAULT_DOMAIN_NAME.into(),
                description: "The default domain".into(),
                enabled: true,
                tags: Vec::new(),
            };
            match self.create(&d).await {
                Ok(()) | Err(IdentityError::Duplicate { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let mut roles = Vec::new();
        for name in BOOTSTRAP_ROLES {
            roles.push(self.ensure_role(name).await?);
        }
        // Every proxy runs this at start: write only what is missing.
        let have = self.implications().await?;
        for pair in roles.windows(2) {
            if !have.contains(&(pair[0].id.clone(), pair[1].id.clone())) {
                self.imply(&pair[0].id, &pair[1].id).await?;
            }
        }
        Ok(roles)
    }

    async fn ensure_role(&self, name: &str) -> Result<Role> {
        if let Some(r) = self.by_name::<Role>("-", name).await? {
            return Ok(r);
        }
        let r = Role {
            v: RECORD_VERSION,
            id: new_id(),
            name: name.into(),
            domain_id: None,
            description: None,
        };
        match self.create(&r).await {
            Ok(()) => Ok(r),
            Err(IdentityError::Duplicate { .. }) => self
                .by_name::<Role>("-", name)
                .await?
                .ok_or_else(|| IdentityError::Damaged(format!("role {name} vanished"))),
            Err(e) => Err(e),
        }
    }

    /// Makes sure project `project` and user `user` (in the default domain) exist and that
    /// the user holds `role` on the project. A new user gets `password`; an existing one
    /// keeps its own. Returns the project, the user and whether the user was created.
    pub async fn ensure_user(
        &self,
        project: &str,
        user: &str,
        password: &str,
        role: &str,
    ) -> Result<(Project, User, bool)> {
        self.bootstrap().await?;
        let p = match self.by_name::<Project>(DEFAULT_DOMAIN_ID, project).await? {
            Some(p) => p,
            None => {
                let p = Project {
                    v: RECORD_VERSION,
                    id: new_id(),
                    name: project.into(),
                    domain_id: DEFAULT_DOMAIN_ID.into(),
                    description: String::new(),
                    enabled: true,
                    tags: Vec::new(),
                };
                self.create(&p).await?;
                p
            }
        };
        let (u, created) = match self.by_name::<User>(DEFAULT_DOMAIN_ID, user).await? {
            Some(u) => (u, false),
            None => {
                let u = User {
                    v: RECORD_VERSION,
                    id: new_id(),
                    name: user.into(),
                    domain_id: DEFAULT_DOMAIN_ID.into(),
                    enabled: true,
                    default_project_id: Some(p.id.clone()),
                    password_hash: Some(password::hash_async(password.to_string()).await?),
                    extra: Default::default(),
                };
                self.create(&u).await?;
                (u, true)
            }
        };
        let r = self
            .by_name::<Role>("-", role)
            .await?
            .ok_or_else(|| not_found::<Role>(role))?;
        self.grant(&Assignment {
            target: Target::Project(p.id.clone()),
            actor: Actor::User(u.id.clone()),
            role_id: r.id,
        })
        .await?;
        Ok((p, u, created))
    }
}
