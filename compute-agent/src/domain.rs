//! The libvirt domain XML of a server: its flavor's vCPUs and RAM, one virtio disk per
//! volume (an NBD export on a unix socket the agent serves), the serial console logged to
//! a file, ACPI for the power button, and no network.
//!
//! A disk's NBD source carries `<reconnect delay>` (libvirt 10.x and later; QEMU then
//! holds the guest's requests while the agent restarts instead of failing them), and
//! `error_policy='stop'`: a request that fails anyway pauses the guest rather than
//! handing it an I/O error; the agent resumes it once its volume is served again.

use std::path::Path;

use stratus_client::compute::{Disk, Server};

/// Seconds QEMU keeps a request waiting for a lost NBD connection to come back (the agent
/// restarting) before it fails the request.
pub const RECONNECT_DELAY_SECS: u32 = 60;

/// Where one server's pieces live on the host.
pub struct Paths<'a> {
    /// Directory of the NBD sockets (every parent traversable by QEMU's user).
    pub run_dir: &'a Path,
    /// The serial console log.
    pub console_log: &'a Path,
}

/// The libvirt domain name of server `id`.
pub fn domain_name(id: &str) -> String {
    format!("stratus-{id}")
}

/// The unix socket an exported volume is served on.
pub fn socket_path(run_dir: &Path, volume: &str) -> std::path::PathBuf {
    run_dir.join(format!("{volume}.sock"))
}

pub use stratus_core::xml::escape as esc;

/// The `<disk>` element of one volume.
pub fn disk_xml(run_dir: &Path, d: &Disk) -> String {
    let sock = socket_path(run_dir, &d.volume_id);
    let boot = match d.boot_index {
        Some(0) => "\n      <boot order='1'/>",
        _ => "",
    };
    // The serial number lets a guest find the volume by id (/dev/disk/by-id), as Nova does.
    let serial: String = d.volume_id.chars().take(20).collect();
    format!(
        "<disk type='network' device='disk'>
      <driver name='qemu' type='raw' cache='none' discard='unmap' error_policy='stop' rerror_policy='stop'/>
      <source protocol='nbd' name='{name}'>
        <host transport='unix' socket='{sock}'/>
        <reconnect delay='{RECONNECT_DELAY_SECS}'/>
      </source>
      <target dev='{dev}' bus='virtio'/>
      <serial>{serial}</serial>{boot}
    </disk>",
        name = esc(&d.volume_id),
        sock = esc(&sock.display().to_string()),
        dev = esc(&d.device),
        serial = esc(&serial),
    )
}

/// The whole domain of `server`, with `disks` (those that should be in the guest).
/// `virt_type` is `kvm` or `qemu` (TCG); `owner` marks the domain as this agent's.
pub fn domain_xml(
    server: &Server,
    disks: &[&Disk],
    paths: &Paths<'_>,
    virt_type: &str,
    owner: &str,
) -> String {
    let disks: Vec<String> = disks.iter().map(|d| disk_xml(paths.run_dir, d)).collect();
    format!(
        "<domain type='{virt}'>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <title>{title}</title>
  <description>{owner}</description>
  <memory unit='MiB'>{ram}</memory>
  <vcpu>{vcpus}</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
  </os>
  <features><acpi/><apic/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    {disks}
    <controller type='usb' model='none'/>
    <serial type='pty'>
      <log file='{log}' append='on'/>
      <target port='0'/>
    </serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <memballoon model='none'/>
  </devices>
</domain>
",
        virt = esc(virt_type),
        name = esc(&domain_name(&server.id)),
        uuid = esc(&server.id),
        title = esc(&server.name),
        owner = esc(owner),
        ram = server.flavor.ram_mb.max(64),
        vcpus = server.flavor.vcpus.max(1),
        disks = disks.join("\n    "),
        log = esc(&paths.console_log.display().to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disks_are_nbd_unix_exports_and_text_is_escaped() {
        let d = Disk {
            volume_id: "v1".into(),
            device: "vda".into(),
            boot_index: Some(0),
            delete_on_termination: true,
            state: "attached".into(),
            attachment_id: String::new(),
        };
        let x = disk_xml(Path::new("/run/s"), &d);
        assert!(x.contains("<source protocol='nbd' name='v1'>"), "{x}");
        assert!(x.contains("socket='/run/s/v1.sock'"), "{x}");
        assert!(x.contains("<target dev='vda' bus='virtio'/>"), "{x}");
        assert!(x.contains("<boot order='1'/>"), "{x}");
        assert_eq!(esc("a<'&\">"), "a&lt;&apos;&amp;&quot;&gt;");
    }
}
