//! `stratus-compute-agent`: boots the servers the scheduler places on this host, through
//! libvirt, from replicated volumes it serves to QEMU over NBD.
//!
//! # Layout
//! - [`agent`]: registration, heartbeat and the reconcile loop (record → guest).
//! - [`libvirt`]: the hypervisor calls (the `virt` crate, on the blocking pool).
//! - [`domain`]: a server's libvirt domain XML.
//! - [`exports`]: the volumes served to guests (NBD on unix sockets).
//! - [`kvm`]: whether KVM really works here (else TCG).
//! - [`http`]: console logs, `/metrics`, `/healthz`.
//! - [`metrics`]: the agent's own metrics.

pub mod agent;
pub mod domain;
pub mod exports;
pub mod http;
pub mod kvm;
pub mod libvirt;
pub mod metrics;
