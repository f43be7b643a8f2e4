//! `stratus compute list`: the compute hosts as meta records them (the operator's view,
//! like `stratus volume list`; no Keystone login): what each agent offers, whether it was
//! heard from lately, how it runs guests, and what the scheduler has reserved on it.

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;
use stratus_client::compute::{now_us, Compute, Host, Usage};

use crate::{table, Conn};

/// `stratus compute …`
#[derive(Subcommand, Debug)]
pub enum ComputeCmd {
    /// List compute hosts: state, virtualization, and reserved/total vCPUs, RAM and disk.
    List,
}

/// How a host runs guests: `kvm`, or `qemu (TCG: why KVM is not used)`.
pub fn virt(h: &Host) -> String {
    if h.virt_type == "qemu" {
        match h.kvm_note.as_deref().filter(|n| !n.is_empty()) {
            Some(note) => format!("qemu (TCG: {note})"),
            None => "qemu (TCG)".into(),
        }
    } else {
        h.virt_type.clone()
    }
}

/// `up` or `down` (by the agent's heartbeat at `now`), `disabled` added when it is.
pub fn state(h: &Host, now: u64) -> String {
    let s = if h.up(now) { "up" } else { "down" };
    if h.enabled {
        s.into()
    } else {
        format!("{s}, disabled")
    }
}

/// The host table, by name.
pub fn hosts_table(hosts: &[(Host, Usage)], now: u64) -> String {
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|(h, u)| {
            let used = u.total();
            vec![
                h.name.clone(),
                h.availability_zone.clone(),
                state(h, now),
                virt(h),
                format!("{}/{}", used.vcpus, h.vcpus),
                format!("{}/{}", used.ram_mb, h.ram_mb),
                format!("{}/{}", used.disk_gb, h.disk_gb),
                u.servers.len().to_string(),
            ]
        })
        .collect();
    table::render(
        &[
            "NAME", "ZONE", "STATE", "VIRT", "VCPUS", "RAM MB", "DISK GB", "SERVERS",
        ],
        &rows,
    )
}

/// Runs a `stratus compute` command.
pub async fn run(conn: &Conn, cmd: ComputeCmd) -> Result<()> {
    match cmd {
        ComputeCmd::List => {
            let compute = Compute::new(conn.client()?);
            let mut hosts = compute.hosts_with_usage().await?;
            hosts.sort_by(|a, b| a.0.name.cmp(&b.0.name));
            let now = now_us();
            if conn.json {
                let v: Vec<_> = hosts
                    .iter()
                    .map(|(h, u)| {
                        json!({"host": h, "up": h.up(now), "used": u.total(),
                               "servers": u.servers})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{}", hosts_table(&hosts, now));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratus_client::compute::{Take, HOST_DOWN_US};

    fn host(name: &str, virt_type: &str, note: Option<&str>, beat: u64) -> Host {
        Host {
            v: 1,
            name: name.into(),
            vcpus: 4,
            ram_mb: 8192,
            disk_gb: 100,
            hypervisor_type: "QEMU".into(),
            virt_type: virt_type.into(),
            kvm_note: note.map(str::to_string),
            availability_zone: "nova".into(),
            enabled: true,
            http: "http://127.0.0.1:1".into(),
            started_us: 0,
            heartbeat_us: beat,
            libvirt_version: "9.0.0".into(),
        }
    }

    #[test]
    fn the_table_shows_state_virt_and_what_is_reserved() {
        let now = 10 * HOST_DOWN_US;
        let take = Take {
            vcpus: 1,
            ram_mb: 256,
            disk_gb: 1,
        };
        let a = (
            host("compute-1", "qemu", Some("/dev/kvm is missing"), now),
            Usage {
                v: 1,
                host: "compute-1".into(),
                servers: [("s1".to_string(), take), ("s2".to_string(), take)].into(),
            },
        );
        let mut b = (
            host("compute-2", "kvm", None, now - HOST_DOWN_US),
            Usage::default(),
        );
        b.0.enabled = false;
        assert_eq!(
            hosts_table(&[a, b], now),
            "NAME       ZONE  STATE           VIRT                             VCPUS  RAM MB    DISK GB  SERVERS\n\
             compute-1  nova  up              qemu (TCG: /dev/kvm is missing)  2/4    512/8192  2/100    2\n\
             compute-2  nova  down, disabled  kvm                              0/4    0/8192    0/100    0"
        );
        assert_eq!(virt(&host("h", "qemu", None, 0)), "qemu (TCG)");
    }
}
