//! Account and container info as this proxy holds it: trusted for [`INFO_CACHE`] once read
//! (Swift's cached container and account info), dropped at once by this proxy's own writes;
//! and who may do what, judged by the ACLs that info carries.

use std::sync::Arc;
use std::time::Instant;

use axum::http::HeaderMap;
use stratus_proto::storage as pb;

use crate::acl::{self, AccountAcl, ContainerAcl, Decision, Identity, Want};
use crate::auth;
use crate::error::{not_found, SwiftResult};
use crate::headers::{hv, meta_value};
use crate::ops::listing::info;
use crate::proxy::{Proxy, INFO_CACHE};

/// The storage policy (index) a container's info records (absent: 0).
pub fn policy_of(info: &pb::DbInfo) -> u32 {
    if !info.exists {
        return 0;
    }
    meta_value(&info.meta, pb::POLICY_META)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Proxy {
    /// An account's (`container` empty) or container's merged info, trusted for
    /// [`INFO_CACHE`] once seen (Swift's cached container and account info); this
    /// proxy's own writes to it drop the cached copy.
    pub async fn db_info(&self, account: &str, container: &str) -> SwiftResult<Arc<pb::DbInfo>> {
        let key = (account.to_string(), container.to_string());
        if let Some((t, i)) = self.infos.lock().expect("lock").get(&key) {
            if t.elapsed() < INFO_CACHE {
                return Ok(i.clone());
            }
        }
        let i = Arc::new(info(self, account, container).await?);
        if i.exists || container.is_empty() {
            let mut m = self.infos.lock().expect("lock");
            if m.len() > 100_000 {
                m.clear();
            }
            m.insert(key, (Instant::now(), i.clone()));
        }
        Ok(i)
    }

    /// The container's info, or 404 unless it exists.
    pub async fn container_info(
        &self,
        account: &str,
        container: &str,
    ) -> SwiftResult<Arc<pb::DbInfo>> {
        let i = self.db_info(account, container).await?;
        if i.exists {
            Ok(i)
        } else {
            Err(not_found())
        }
    }

    /// The storage policy (index) of a container's objects: the one it was created with;
    /// 0 when it does not exist (where Swift looks for objects of a missing container).
    pub async fn container_policy(&self, account: &str, container: &str) -> SwiftResult<u32> {
        let i = self.db_info(account, container).await?;
        Ok(policy_of(&i))
    }

    /// The name of storage policy `index` (a policy no longer listed shows as its index).
    pub fn policy_name(&self, index: u32) -> String {
        self.policies
            .current()
            .by_index(index)
            .map_or_else(|| index.to_string(), |p| p.name.clone())
    }

    /// 404 unless the container exists.
    pub async fn require_container(&self, account: &str, container: &str) -> SwiftResult<()> {
        self.container_info(account, container).await.map(|_| ())
    }

    /// Drops the cached info of an account (`container` empty) or container.
    pub fn forget(&self, account: &str, container: &str) {
        self.infos
            .lock()
            .expect("lock")
            .remove(&(account.to_string(), container.to_string()));
    }

    /// What `who` may do with a request on `account[/container[/object]]` (401/403 if
    /// nothing): owners pass at once; anyone else is judged by the account's and the
    /// container's ACLs (see [`acl`]).
    pub async fn access(
        &self,
        who: &Identity,
        read: bool,
        account: &str,
        container: Option<&str>,
        object: bool,
        h: &HeaderMap,
    ) -> SwiftResult<Decision> {
        if matches!(who, Identity::User { owner: true, .. }) {
            return Ok(Decision::Owner);
        }
        if let Identity::ContainerGrant {
            account: a,
            container: c,
        } = who
        {
            return match a == account && container == Some(c.as_str()) {
                true => Ok(Decision::Owner),
                false => Err(auth::unauthorized()),
            };
        }
        let acct = self.db_info(account, "").await?;
        let account_acl = meta_value(&acct.meta, "x-account-access-control")
            .and_then(|v| AccountAcl::parse(v).ok());
        let container_acl = match container {
            Some(c) => {
                let info = self.db_info(account, c).await?;
                let name = if read {
                    "x-container-read"
                } else {
                    "x-container-write"
                };
                meta_value(&info.meta, name).and_then(|v| ContainerAcl::parse(v).ok())
            }
            None => None,
        };
        let want = Want {
            read,
            container: container.is_some(),
            object,
        };
        match acl::decide(
            who,
            want,
            hv(h, "referer"),
            account_acl.as_ref(),
            container_acl.as_ref(),
        ) {
            Decision::Unauthorized => Err(auth::unauthorized()),
            Decision::Forbidden => Err(auth::forbidden()),
            d => Ok(d),
        }
    }
}
