//! The agent: registers its host, heartbeats, and brings each server placed on it to the
//! state its record asks for.
//!
//! # Reconciling
//! A server is reconciled whenever its record changes (a watch on `/compute/servers/`)
//! and every [`TICK`] anyway, one pass at a time per server. A pass compares what the
//! record wants (`want`, `reboot_seq`, disks `attaching`/`detaching`) with what libvirt
//! says the domain is doing, does what is missing, and writes what is now true
//! (`status`, `vm_state`, `power_state`, `task_state` back to none). It writes only if
//! `want` is still what it acted on, so a newer request is never overwritten; the next
//! pass serves it.
//!
//! # Restarts
//! Guests outlive the agent. A restarted agent first serves again the volumes of every
//! domain still running (QEMU waits for a lost NBD connection for
//! [`crate::domain::RECONNECT_DELAY_SECS`]), then reconciles as usual.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stratus_client::compute::{self, power, Compute, Disk, Host, Server, Want};
use stratus_client::volume_ops::Volumes;
use stratus_client::MetaClient;
use tokio::sync::Mutex;
use tokio_stream::StreamExt;

use crate::domain::{self, Paths};
use crate::exports::Exports;
use crate::libvirt::{Hypervisor, Power};

/// How often every server is reconciled even without a change to its record.
pub const TICK: Duration = Duration::from_secs(2);

/// The agent's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub name: String,
    pub availability_zone: String,
    pub vcpus: u64,
    pub ram_mb: u64,
    pub disk_gb: u64,
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub libvirt_uri: String,
    /// How long a guest gets to power off after the ACPI button before it is destroyed.
    pub shutdown_timeout: Duration,
    /// `kvm` or `qemu`, and why not KVM.
    pub virt_type: String,
    pub kvm_note: Option<String>,
    /// The agent's HTTP base URL (console logs).
    pub http: String,
}

/// The running agent.
pub struct Agent {
    pub settings: Settings,
    pub compute: Compute,
    volumes: Volumes,
    hv: Hypervisor,
    exports: Exports,
    /// One lock per server: one pass at a time.
    busy: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    owner: String,
}

/// Shorthand for a failed step: what, and why.
type Step<T> = Result<T, String>;

impl Agent {
    pub async fn new(meta: MetaClient, settings: Settings) -> anyhow::Result<Arc<Self>> {
        let hv = Hypervisor::open(&settings.libvirt_uri).await?;
        std::fs::create_dir_all(settings.state_dir.join("console"))?;
        make_traversable(&settings.run_dir)?;
        let owner = compute::domain_owner(&settings.name, &settings.run_dir);
        let writer = format!("compute:{}", settings.name);
        Ok(Arc::new(Self {
            compute: Compute::new(meta.clone()),
            volumes: Volumes::new(meta.clone()),
            exports: Exports::new(meta, settings.run_dir.clone(), writer),
            hv,
            busy: Mutex::new(HashMap::new()),
            owner,
            settings,
        }))
    }

    pub fn console_log(&self, id: &str) -> PathBuf {
        self.settings
            .state_dir
            .join("console")
            .join(format!("{id}.log"))
    }

    /// Writes this host's record (capacity, zone, heartbeat).
    pub async fn register(&self) -> anyhow::Result<()> {
        let now = compute::now_us();
        let version = self.hv.version().await.unwrap_or_default();
        let s = &self.settings;
        let host = Host {
            v: 1,
            name: s.name.clone(),
            vcpus: s.vcpus,
            ram_mb: s.ram_mb,
            disk_gb: s.disk_gb,
            hypervisor_type: "QEMU".into(),
            virt_type: s.virt_type.clone(),
            kvm_note: s.kvm_note.clone(),
            availability_zone: s.availability_zone.clone(),
            enabled: true,
            http: s.http.clone(),
            started_us: now,
            heartbeat_us: now,
            libvirt_version: version,
        };
        match self.compute.hosts.get(&s.name).await? {
            None => {
                self.compute.hosts.create(&host).await?;
            }
            Some((old, _)) => {
                let enabled = old.enabled;
                self.compute
                    .hosts
                    .update(&s.name, |h| {
                        *h = Host {
                            enabled,
                            ..host.clone()
                        };
                        Some(())
                    })
                    .await?;
            }
        }
        Ok(())
    }

    async fn heartbeat(&self) {
        let r = self
            .compute
            .hosts
            .update(&self.settings.name, |h| {
                h.heartbeat_us = compute::now_us();
                Some(())
            })
            .await;
        if let Err(e) = r {
            tracing::warn!("heartbeat: {e}");
        }
    }

    /// Serves the volumes of every guest still running from before a restart, before
    /// QEMU gives up waiting for them.
    pub async fn recover(&self) -> anyhow::Result<()> {
        let owned = self.hv.owned(&self.owner).await?;
        for id in owned {
            let power = self.hv.power(&id).await?;
            if !matches!(power, Some(Power::Running | Power::Paused)) {
                continue;
            }
            let Some((s, _)) = self.compute.servers.get(&id).await? else {
                continue;
            };
            // All at once: QEMU holds the guest's requests only for the reconnect delay.
            let s = &s;
            let served = s
                .disks
                .iter()
                .filter(|d| d.state == "attached")
                .map(|d| async move {
                    if let Err(e) = self.exports.ensure(&s.id, &d.volume_id).await {
                        tracing::error!(server = %s.id, volume = %d.volume_id, "serving a running guest's volume again: {e}");
                    }
                });
            futures::future::join_all(served).await;
            tracing::info!(server = %id, "running guest adopted");
        }
        Ok(())
    }

    /// Runs until `stop` resolves: heartbeats, watches the server records, reconciles.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        let me = self.clone();
        let beat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(compute::HEARTBEAT_SECS)).await;
                me.heartbeat().await;
            }
        });
        let mut watch = self
            .compute
            .meta
            .watch(compute::SERVERS.as_bytes().to_vec(), 0, false);
        tokio::pin!(stop);
        loop {
            self.pass().await;
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(TICK) => {}
                ev = watch.next() => {
                    if ev.is_none() {
                        watch = self.compute.meta.watch(compute::SERVERS.as_bytes().to_vec(), 0, false);
                    }
                    // Let a burst of changes settle into one pass.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        beat.abort();
    }

    /// Starts a reconcile of every server placed here that is not being reconciled, and
    /// removes this agent's domains whose server is gone (deleted while the agent was down).
    async fn pass(self: &Arc<Self>) {
        let servers = match self.compute.servers.list().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("listing servers: {e}");
                return;
            }
        };
        self.sweep(&servers).await;
        for s in servers {
            if s.host.as_deref() != Some(&self.settings.name) {
                continue;
            }
            let lock = {
                let mut busy = self.busy.lock().await;
                busy.entry(s.id.clone()).or_default().clone()
            };
            let Ok(guard) = lock.try_lock_owned() else {
                continue;
            };
            let me = self.clone();
            tokio::spawn(async move {
                let id = s.id.clone();
                me.reconcile(s).await;
                drop(guard);
                let mut busy = me.busy.lock().await;
                if me.compute.servers.get(&id).await.ok().flatten().is_none() {
                    busy.remove(&id);
                }
            });
        }
    }

    /// Undefines this agent's domains that no server placed here names any more.
    async fn sweep(&self, servers: &[Server]) {
        let owned = match self.hv.owned(&self.owner).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!("listing domains: {e}");
                return;
            }
        };
        for id in owned {
            let ours = servers
                .iter()
                .any(|s| s.id == id && s.host.as_deref() == Some(&self.settings.name));
            if ours {
                continue;
            }
            // Not while a pass over it runs (it may be deleting the server itself).
            let lock = self.busy.lock().await.get(&id).cloned();
            let _held = match &lock {
                Some(l) => match l.clone().try_lock_owned() {
                    Ok(g) => Some(g),
                    Err(_) => continue,
                },
                None => None,
            };
            tracing::warn!(server = %id, "removing the domain of a server that is gone");
            if let Err(e) = self.hv.undefine(&id).await {
                tracing::warn!(server = %id, "removing the domain: {e}");
                continue;
            }
            self.exports.stop_server(&id).await;
            let _ = std::fs::remove_file(self.console_log(&id));
            self.busy.lock().await.remove(&id);
        }
    }

    /// One pass over one server.
    async fn reconcile(&self, s: Server) {
        if matches!(
            s.task_state.as_deref(),
            Some("scheduling") | Some("block_device_mapping")
        ) {
            return;
        }
        // A build that failed before any boot: nothing to do until someone asks.
        if s.status == "ERROR"
            && s.want != Want::Deleted
            && s.launched_us.is_none()
            && s.task_state.is_none()
        {
            return;
        }
        let id = s.id.clone();
        let want = s.want;
        let done = match want {
            Want::Deleted => self.delete(&s).await.map(|_| None),
            Want::Active => self.make_active(&s).await.map(Some),
            Want::Stopped => self.make_stopped(&s).await.map(Some),
            Want::Paused => self.make_paused(&s).await.map(Some),
            Want::Suspended => self.make_suspended(&s).await.map(Some),
        };
        crate::metrics::pass(&format!("{want:?}").to_lowercase(), done.is_ok());
        match done {
            Ok(None) => {}
            Ok(Some(report)) => self.report(&id, want, report).await,
            Err(why) => {
                tracing::error!(server = %id, ?want, "{why}");
                let r = self
                    .compute
                    .servers
                    .update(&id, |srv| {
                        (srv.want == want && (srv.status != "ERROR" || srv.task_state.is_some()))
                            .then(|| srv.set_error(500, why.clone()))
                    })
                    .await;
                if let Err(e) = r {
                    tracing::warn!(server = %id, "recording the error: {e}");
                }
            }
        }
    }

    /// Writes what a pass achieved, if the record still wants what the pass did.
    async fn report(&self, id: &str, want: Want, r: Report) {
        let res = self
            .compute
            .servers
            .update(id, |srv| {
                if srv.want != want {
                    return None;
                }
                let (status, vm, pw) = r.state;
                let mut changed = srv.status != status
                    || srv.vm_state != vm
                    || srv.power_state != pw
                    || srv.task_state.is_some()
                    || srv.fault.is_some() && status != "ERROR";
                if r.reboot_done > srv.reboot_done {
                    srv.reboot_done = r.reboot_done;
                    changed = true;
                }
                for (vol, state) in &r.disks {
                    match state {
                        Some(st) => {
                            if let Some(d) = srv.disks.iter_mut().find(|d| &d.volume_id == vol) {
                                if &d.state != st {
                                    d.state = st.clone();
                                    changed = true;
                                }
                            }
                        }
                        None => {
                            let before = srv.disks.len();
                            srv.disks.retain(|d| &d.volume_id != vol);
                            changed |= srv.disks.len() != before;
                        }
                    }
                }
                // A reboot asked for meanwhile is still to be done: keep its status.
                if srv.reboot_seq > srv.reboot_done && want == Want::Active {
                    return changed.then_some(());
                }
                if !changed {
                    return None;
                }
                srv.status = status.into();
                srv.vm_state = vm.into();
                srv.power_state = pw;
                srv.task_state = None;
                if status != "ERROR" {
                    srv.fault = None;
                }
                if pw == power::RUNNING && srv.launched_us.is_none() {
                    srv.launched_us = Some(compute::now_us());
                }
                srv.updated_us = compute::now_us();
                Some(())
            })
            .await;
        if let Err(e) = res {
            tracing::warn!(server = id, "recording the state: {e}");
        }
    }

    fn paths<'a>(&'a self, log: &'a std::path::Path) -> Paths<'a> {
        Paths {
            run_dir: &self.settings.run_dir,
            console_log: log,
        }
    }

    /// Disks that belong in the guest's definition.
    fn guest_disks(s: &Server) -> Vec<&Disk> {
        s.disks
            .iter()
            .filter(|d| d.state != "detaching" && d.state != "error")
            .collect()
    }

    /// Defines the domain from the record and boots it (or restores its managed save).
    async fn boot(&self, s: &Server, saved: bool) -> Step<()> {
        for d in Self::guest_disks(s) {
            self.exports
                .ensure(&s.id, &d.volume_id)
                .await
                .map_err(|e| format!("serving volume {}: {e}", d.volume_id))?;
        }
        if !saved {
            let log = self.console_log(&s.id);
            let xml = domain::domain_xml(
                s,
                &Self::guest_disks(s),
                &self.paths(&log),
                &self.settings.virt_type,
                &self.owner,
            );
            self.hv
                .define(xml)
                .await
                .map_err(|e| format!("defining the domain: {e}"))?;
        }
        self.hv
            .start(&s.id)
            .await
            .map_err(|e| format!("starting the domain: {e}"))?;
        crate::metrics::METRICS.boots.inc();
        Ok(())
    }

    /// Powers the guest off: the ACPI button, then the plug after the timeout.
    async fn power_off(&self, id: &str) -> Step<()> {
        match self.hv.power(id).await.map_err(|e| e.to_string())? {
            None | Some(Power::Off { .. }) => return Ok(()),
            Some(Power::Paused) | Some(Power::Crashed) => {
                return self.hv.destroy(id).await.map_err(|e| e.to_string());
            }
            _ => {}
        }
        let _ = self.hv.shutdown(id).await;
        let start = Instant::now();
        while start.elapsed() < self.settings.shutdown_timeout {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if matches!(
                self.hv.power(id).await.map_err(|e| e.to_string())?,
                None | Some(Power::Off { .. })
            ) {
                return Ok(());
            }
        }
        tracing::warn!(
            server = id,
            "the guest did not power off in {:?}: destroying it",
            self.settings.shutdown_timeout
        );
        match self.hv.destroy(id).await {
            Ok(()) => Ok(()),
            Err(e) => match self.hv.power(id).await {
                Ok(None | Some(Power::Off { .. })) => Ok(()),
                _ => Err(e.to_string()),
            },
        }
    }

    /// Stops serving every volume of `s` (its guest is off).
    async fn release_exports(&self, s: &Server) {
        self.exports.stop_server(&s.id).await;
    }

    async fn make_active(&self, s: &Server) -> Step<Report> {
        let mut report = Report::new(("ACTIVE", "active", power::RUNNING));
        let pw = self.hv.power(&s.id).await.map_err(|e| e.to_string())?;
        // A reboot asked for and not yet done.
        if s.reboot_seq > s.reboot_done && matches!(pw, Some(Power::Running | Power::Paused)) {
            if s.reboot_hard {
                self.hv.destroy(&s.id).await.map_err(|e| e.to_string())?;
            } else {
                self.power_off(&s.id).await?;
            }
            self.boot(s, false).await?;
            report.reboot_done = s.reboot_seq;
            self.disks_live(s, &mut report).await;
            return Ok(report);
        }
        let mut pw = pw;
        if s.reboot_seq > s.reboot_done && s.reboot_hard {
            if let Some(Power::Off { saved: true }) = pw {
                self.hv.drop_saved(&s.id).await.map_err(|e| e.to_string())?;
                pw = Some(Power::Off { saved: false });
            }
        }
        report.reboot_done = s.reboot_seq;
        match pw {
            None => self.boot(s, false).await?,
            Some(Power::Off { saved }) => self.boot(s, saved).await?,
            Some(Power::Crashed) | Some(Power::Other) => {
                let _ = self.hv.destroy(&s.id).await;
                self.boot(s, false).await?;
            }
            Some(Power::Paused) => {
                // A guest restored from a restart of the agent needs its exports too.
                for d in Self::guest_disks(s) {
                    let _ = self.exports.ensure(&s.id, &d.volume_id).await;
                }
                self.hv.unpause(&s.id).await.map_err(|e| e.to_string())?
            }
            Some(Power::Running) => {
                for d in Self::guest_disks(s) {
                    if d.state == "attached" && !self.exports.serving(&d.volume_id).await {
                        self.exports
                            .ensure(&s.id, &d.volume_id)
                            .await
                            .map_err(|e| format!("serving volume {}: {e}", d.volume_id))?;
                    }
                }
            }
        }
        self.disks_live(s, &mut report).await;
        Ok(report)
    }

    /// Hot-plugs disks being attached and unplugs disks being detached, in a running guest.
    async fn disks_live(&self, s: &Server, report: &mut Report) {
        for d in &s.disks {
            match d.state.as_str() {
                "attaching" => {
                    let r = async {
                        if !self
                            .hv
                            .has_disk(&s.id, &d.device)
                            .await
                            .map_err(|e| e.to_string())?
                        {
                            self.exports
                                .ensure(&s.id, &d.volume_id)
                                .await
                                .map_err(|e| e.to_string())?;
                            self.hv
                                .attach(&s.id, domain::disk_xml(&self.settings.run_dir, d))
                                .await
                                .map_err(|e| e.to_string())?;
                        }
                        Ok::<_, String>(())
                    }
                    .await;
                    match r {
                        Ok(()) => report
                            .disks
                            .push((d.volume_id.clone(), Some("attached".into()))),
                        Err(e) => {
                            tracing::error!(server = %s.id, volume = %d.volume_id, "attaching: {e}");
                            let _ = self.exports.stop(&d.volume_id).await;
                            report
                                .disks
                                .push((d.volume_id.clone(), Some("error".into())));
                        }
                    }
                }
                "detaching" | "error" => {
                    if let Err(e) = self.detach_disk(s, d).await {
                        tracing::error!(server = %s.id, volume = %d.volume_id, "detaching: {e}");
                    } else {
                        report.disks.push((d.volume_id.clone(), None));
                    }
                }
                _ => {}
            }
        }
    }

    /// Takes a disk out of the guest (waiting for the guest to let it go), stops its
    /// export and releases the volume.
    async fn detach_disk(&self, s: &Server, d: &Disk) -> Step<()> {
        let live = matches!(
            self.hv.power(&s.id).await.map_err(|e| e.to_string())?,
            Some(Power::Running | Power::Paused)
        );
        if self
            .hv
            .power(&s.id)
            .await
            .map_err(|e| e.to_string())?
            .is_some()
            && self
                .hv
                .has_disk(&s.id, &d.device)
                .await
                .map_err(|e| e.to_string())?
        {
            self.hv
                .detach(&s.id, domain::disk_xml(&self.settings.run_dir, d))
                .await
                .map_err(|e| e.to_string())?;
            if live {
                let start = Instant::now();
                while self
                    .hv
                    .has_disk(&s.id, &d.device)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    if start.elapsed() > Duration::from_secs(30) {
                        return Err(format!("the guest did not let {} go in 30 s", d.device));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        self.exports
            .stop(&d.volume_id)
            .await
            .map_err(|e| e.to_string())?;
        compute::release_volume(&self.volumes.vols, &d.volume_id, &s.id)
            .await
            .map_err(|e| e.to_string())
    }

    /// Disks of a guest that is off: attach and detach need no guest.
    fn disks_offline(s: &Server, report: &mut Report) -> Vec<Disk> {
        let mut leaving = Vec::new();
        for d in &s.disks {
            match d.state.as_str() {
                "attaching" => report
                    .disks
                    .push((d.volume_id.clone(), Some("attached".into()))),
                "detaching" | "error" => {
                    leaving.push(d.clone());
                    report.disks.push((d.volume_id.clone(), None));
                }
                _ => {}
            }
        }
        leaving
    }

    async fn make_stopped(&self, s: &Server) -> Step<Report> {
        self.power_off(&s.id).await?;
        self.release_exports(s).await;
        let mut report = Report::new(("SHUTOFF", "stopped", power::SHUTDOWN));
        for d in Self::disks_offline(s, &mut report) {
            compute::release_volume(&self.volumes.vols, &d.volume_id, &s.id)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(report)
    }

    async fn make_paused(&self, s: &Server) -> Step<Report> {
        match self.hv.power(&s.id).await.map_err(|e| e.to_string())? {
            Some(Power::Running) => self.hv.pause(&s.id).await.map_err(|e| e.to_string())?,
            Some(Power::Paused) => {}
            // Off (e.g. `stratus dev down` removed the domain): boot it, then pause it.
            None | Some(Power::Off { .. }) => {
                let saved = matches!(
                    self.hv.power(&s.id).await.map_err(|e| e.to_string())?,
                    Some(Power::Off { saved: true })
                );
                self.boot(s, saved).await?;
                self.hv.pause(&s.id).await.map_err(|e| e.to_string())?
            }
            other => return Err(format!("cannot pause a guest that is {other:?}")),
        }
        let mut report = Report::new(("PAUSED", "paused", power::PAUSED));
        // A disk can be plugged into a paused guest; one leaving waits for the guest to
        // run again (it has to let it go).
        if s.disks.iter().any(|d| d.state == "attaching") {
            let mut only_new = s.clone();
            only_new.disks.retain(|d| d.state == "attaching");
            self.disks_live(&only_new, &mut report).await;
        }
        Ok(report)
    }

    async fn make_suspended(&self, s: &Server) -> Step<Report> {
        match self.hv.power(&s.id).await.map_err(|e| e.to_string())? {
            Some(Power::Running | Power::Paused) => {
                self.hv
                    .managed_save(&s.id)
                    .await
                    .map_err(|e| e.to_string())?;
                self.release_exports(s).await;
            }
            Some(Power::Off { saved: true }) => self.release_exports(s).await,
            // Its saved memory is gone (the domain was removed, e.g. by `stratus dev
            // down`): it stays suspended, and resuming boots it from its disk.
            None | Some(Power::Off { saved: false }) => self.release_exports(s).await,
            other => return Err(format!("cannot suspend a guest that is {other:?}")),
        }
        Ok(Report::new(("SUSPENDED", "suspended", power::SUSPENDED)))
    }

    async fn delete(&self, s: &Server) -> Step<()> {
        self.hv.undefine(&s.id).await.map_err(|e| e.to_string())?;
        self.release_exports(s).await;
        let _ = std::fs::remove_file(self.console_log(&s.id));
        compute::retire(&self.compute, &self.volumes, &s.id)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(server = %s.id, "deleted");
        Ok(())
    }
}

/// What a pass achieved.
struct Report {
    state: (&'static str, &'static str, u8),
    reboot_done: u64,
    /// Disk state changes: `None` = the disk left.
    disks: Vec<(String, Option<String>)>,
}

impl Report {
    fn new(state: (&'static str, &'static str, u8)) -> Self {
        Self {
            state,
            reboot_done: 0,
            disks: Vec::new(),
        }
    }
}

/// Creates `dir` (mode 0755) and checks that QEMU's user can reach it: every parent must
/// be traversable by others. Nothing above `dir` is changed.
fn make_traversable(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for d in dir.ancestors().skip(1) {
        if d.as_os_str().is_empty() {
            break;
        }
        let mode = std::fs::metadata(d)?.permissions().mode();
        if mode & 0o001 == 0 {
            return Err(std::io::Error::other(format!(
                "{} (mode {:o}) is not traversable by QEMU's user: choose a --run-dir whose parents are (e.g. under /run)",
                d.display(),
                mode & 0o7777
            )));
        }
    }
    Ok(())
}
