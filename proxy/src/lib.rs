//! `stratus-proxy`: the HTTP front door. It speaks the OpenStack Swift API v1 (accounts,
//! containers, objects) with TempAuth and Keystone tokens, and Keystone v3, Glance v2,
//! Cinder v3 and Nova v2.1 themselves, and reaches storage nodes over gRPC, placing every
//! request by the rings it watches in meta. It keeps no state of its own: run as many as
//! you like.
//!
//! # Layout
//! Dependencies point down this list; no file imports one above it.
//! - [`server`]: the HTTP service; every request's transaction id, metrics and log line.
//! - [`domain_remap`]: `Host` names under a storage domain → `/v1/...` paths, before
//!   routing.
//! - [`router`]: request path → [`router::Endpoint`], then method → handler; `/info`.
//! - Handlers, which never call each other: [`object`] (PUT, symlink PUT, COPY, POST),
//!   [`large`] (GET/HEAD of any object, symlinks followed, DLO/SLO assembly, SLO PUT and
//!   DELETE), [`container`] (account and container GET/HEAD, listings), [`bulk`] (bulk
//!   delete, archive extraction), [`tempurl`], [`cors`] (`OPTIONS` and CORS preflights).
//! - [`staticweb`]: web sites from containers (index pages, HTML listings, error
//!   pages) for anonymous reads; it stands between the router and the handlers, as
//!   Swift's middleware does in its pipeline, and answers through [`large`] and the
//!   listing reads. [`versioning`] and [`version_listing`] stand there too, for objects
//!   and listings of containers with `X-Versions-Enabled`, answering through the
//!   handlers (see [`ops::object_versioning`] for what is stored).
//! - [`ops`]: the cluster operations the handlers share — an object's store, fetch and
//!   delete, large-object reading, following symlinks, account and container reads and
//!   writes, the cached info and access decisions, quotas, versioned writes, multi-object
//!   reports.
//! - [`proxy`]: [`Proxy`], the one struct that owns rings, auth and the info cache.
//! - [`identity`]: the Keystone v3 API under `/identity` (tokens, catalog, projects,
//!   users, groups, roles, assignments) over the identity records in meta.
//! - [`image`]: the Glance v2 API under `/image`: image records in meta, bytes as objects
//!   in the image service's account.
//! - [`volume`]: the Cinder v3 API under `/volume/v3/{project_id}`: volumes and snapshots
//!   over the shared lifecycle of [`stratus_client::volume_ops`], and volumes from images.
//! - [`compute`]: the Nova v2.1 API under `/compute/v2.1`: flavors, servers (placed by the
//!   scheduler, their disks made of volumes, run by the compute agents), actions, volume
//!   attachments.
//! - [`openstack`]: what the OpenStack APIs share (JSON answers, the client's address).
//! - [`auth`]: TempAuth tokens and Keystone token checks; [`acl`]: who may do what by the
//!   ACLs.
//! - [`cluster`]: rings, placement, quorum writes with handoffs.
//! - [`headers`]: metadata constraints, ranges, conditional requests, dates;
//!   [`names`]: percent-decoding, name limits, the query string.
//! - [`error`]: [`error::SwiftError`], turned into a response in one place; [`metrics`].

// tonic::Status (176 bytes) is the error type of every storage call.
#![allow(clippy::result_large_err)]

pub mod acl;
pub mod auth;
pub mod bulk;
pub mod cluster;
pub mod compute;
pub mod container;
pub mod cors;
pub mod domain_remap;
pub mod error;
pub mod headers;
pub mod identity;
pub mod image;
pub mod large;
pub mod metrics;
pub mod names;
pub mod object;
pub mod openstack;
pub mod ops;
pub mod policy;
pub mod proxy;
pub mod router;
pub mod server;
pub mod staticweb;
pub mod tempurl;
pub mod version_listing;
pub mod versioning;
pub mod volume;

pub use proxy::{Config, Proxy, ProxyError, INFO_CACHE};
