//! The hypervisor, through libvirt (the `virt` crate). Every libvirt call blocks, so each
//! runs on tokio's blocking pool; the connection is shared (libvirt connections are
//! thread-safe).

use std::sync::Arc;

use virt::connect::Connect;
use virt::domain::{Domain, DomainState};
use virt::sys;

/// A libvirt failure, with libvirt's own message.
#[derive(Debug, thiserror::Error)]
#[error("libvirt: {0}")]
pub struct VirtError(pub String);

impl From<virt::error::Error> for VirtError {
    fn from(e: virt::error::Error) -> Self {
        VirtError(e.message().to_string())
    }
}

type Result<T> = std::result::Result<T, VirtError>;

/// What a domain is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    Running,
    Paused,
    /// Off; `saved` when it holds a managed save (a suspended server).
    Off {
        saved: bool,
    },
    Crashed,
    /// Shutting down, or a state libvirt did not name.
    Other,
}

/// The hypervisor connection.
#[derive(Clone)]
pub struct Hypervisor {
    conn: Arc<Connect>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| VirtError(format!("libvirt call panicked: {e}")))?
}

impl Hypervisor {
    /// Opens `uri` (e.g. `qemu:///system`).
    pub async fn open(uri: &str) -> Result<Self> {
        let uri = uri.to_string();
        blocking(move || {
            let conn = Connect::open(Some(&uri))?;
            Ok(Hypervisor {
                conn: Arc::new(conn),
            })
        })
        .await
    }

    /// libvirt's version as `major.minor.micro`.
    pub async fn version(&self) -> Result<String> {
        let conn = self.conn.clone();
        blocking(move || {
            let v = conn.lib_version()?;
            Ok(format!(
                "{}.{}.{}",
                v / 1_000_000,
                (v / 1000) % 1000,
                v % 1000
            ))
        })
        .await
    }

    fn lookup_sync(conn: &Connect, id: &str) -> Result<Option<Domain>> {
        match conn.lookup_domain_by_uuid_string(id) {
            Ok(d) => Ok(Some(d)),
            Err(e)
                if e.code() == virt::enumutil::Enum::Known(virt::error::ErrorNumber::NoDomain) =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The power state of server `id`'s domain, `None` if it is not defined.
    pub async fn power(&self, id: &str) -> Result<Option<Power>> {
        let conn = self.conn.clone();
        let id = id.to_string();
        blocking(move || {
            let Some(d) = Self::lookup_sync(&conn, &id)? else {
                return Ok(None);
            };
            let (state, _) = d.state()?;
            use virt::enumutil::Enum;
            Ok(Some(match state {
                Enum::Known(DomainState::Running) | Enum::Known(DomainState::Blocked) => {
                    Power::Running
                }
                Enum::Known(DomainState::Paused) => Power::Paused,
                Enum::Known(DomainState::Shutoff) => Power::Off {
                    saved: d.has_managed_save(0)?,
                },
                Enum::Known(DomainState::Crashed) => Power::Crashed,
                _ => Power::Other,
            }))
        })
        .await
    }

    /// Defines (or redefines) a domain from `xml`.
    pub async fn define(&self, xml: String) -> Result<()> {
        let conn = self.conn.clone();
        blocking(move || {
            conn.define_domain_xml(&xml)?;
            Ok(())
        })
        .await
    }

    /// Runs `f` on server `id`'s domain; an undefined domain is an error.
    async fn with<T: Send + 'static>(
        &self,
        id: &str,
        f: impl FnOnce(&Domain) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = self.conn.clone();
        let id = id.to_string();
        blocking(move || match Self::lookup_sync(&conn, &id)? {
            Some(d) => f(&d),
            None => Err(VirtError(format!("no domain for server {id}"))),
        })
        .await
    }

    /// Starts the domain (from its managed save, if it has one).
    pub async fn start(&self, id: &str) -> Result<()> {
        self.with(id, |d| Ok(d.create()?)).await
    }

    /// Presses the ACPI power button.
    pub async fn shutdown(&self, id: &str) -> Result<()> {
        self.with(id, |d| Ok(d.shutdown()?)).await
    }

    /// Pulls the plug.
    pub async fn destroy(&self, id: &str) -> Result<()> {
        self.with(id, |d| Ok(d.destroy()?)).await
    }

    /// Pauses the vCPUs (libvirt's "suspend").
    pub async fn pause(&self, id: &str) -> Result<()> {
        self.with(id, |d| Ok(d.suspend()?)).await
    }

    pub async fn unpause(&self, id: &str) -> Result<()> {
        self.with(id, |d| Ok(d.resume()?)).await
    }

    /// Saves the guest's memory to disk and stops it; the next start restores it.
    pub async fn managed_save(&self, id: &str) -> Result<()> {
        self.with(id, |d| Ok(d.managed_save(0)?)).await
    }

    /// Drops the domain's managed save: the next start boots it afresh.
    pub async fn drop_saved(&self, id: &str) -> Result<()> {
        self.with(id, |d| {
            if d.has_managed_save(0)? {
                d.managed_save_remove(0)?;
            }
            Ok(())
        })
        .await
    }

    /// Forgets the domain (and its managed save). An undefined domain is fine.
    pub async fn undefine(&self, id: &str) -> Result<()> {
        let conn = self.conn.clone();
        let id = id.to_string();
        blocking(move || {
            if let Some(d) = Self::lookup_sync(&conn, &id)? {
                if d.is_active()? {
                    d.destroy()?;
                }
                d.undefine_flags(sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)?;
            }
            Ok(())
        })
        .await
    }

    /// Adds a device to the running guest and to its definition.
    pub async fn attach(&self, id: &str, xml: String) -> Result<()> {
        self.with(id, move |d| {
            let live = d.is_active()?;
            let flags =
                sys::VIR_DOMAIN_AFFECT_CONFIG | if live { sys::VIR_DOMAIN_AFFECT_LIVE } else { 0 };
            d.attach_device_flags(&xml, flags)?;
            Ok(())
        })
        .await
    }

    /// Asks the guest to let a device go and drops it from the definition; the guest
    /// may take a while: see [`Hypervisor::has_disk`].
    pub async fn detach(&self, id: &str, xml: String) -> Result<()> {
        self.with(id, move |d| {
            let live = d.is_active()?;
            let flags =
                sys::VIR_DOMAIN_AFFECT_CONFIG | if live { sys::VIR_DOMAIN_AFFECT_LIVE } else { 0 };
            d.detach_device_flags(&xml, flags)?;
            Ok(())
        })
        .await
    }

    /// Whether the running guest still has disk `dev`.
    pub async fn has_disk(&self, id: &str, dev: &str) -> Result<bool> {
        let needle = format!("<target dev='{dev}'");
        self.with(id, move |d| Ok(d.xml_desc(0)?.contains(&needle)))
            .await
    }

    /// Server ids of the domains whose description is `owner` (this agent's).
    pub async fn owned(&self, owner: &str) -> Result<Vec<String>> {
        let conn = self.conn.clone();
        let needle = format!("<description>{}</description>", crate::domain::esc(owner));
        blocking(move || {
            let mut out = Vec::new();
            // A domain may vanish while the list is read (another agent on a shared
            // libvirtd): skip it.
            for d in conn.list_all_domains(0)? {
                if !d.name().is_ok_and(|n| n.starts_with("stratus-")) {
                    continue;
                }
                if d.xml_desc(0).is_ok_and(|x| x.contains(&needle)) {
                    if let Ok(id) = d.uuid_string() {
                        out.push(id);
                    }
                }
            }
            Ok(out)
        })
        .await
    }
}
