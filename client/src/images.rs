//! Glance v2 image records in meta. An image's bytes are an object in the image service's
//! own account (replicated, audited and repaired like any object); its record says where.
//!
//! # Keys
//! - `/images/<id>`: an [`Image`] (JSON, versioned). Every status change is a
//!   compare-and-swap on the record's revision, so two uploads to one image cannot both
//!   start (`queued` → `saving` succeeds once).

use serde::{Deserialize, Serialize};
use stratus_proto::meta as pb;

use crate::meta::{ClientError, MetaClient};

const IMAGES: &str = "/images/";

/// The account holding image bytes (no user owns it: it has no `AUTH_` prefix).
pub const IMAGE_ACCOUNT: &str = ".stratus-images";
/// The container in it.
pub const IMAGE_CONTAINER: &str = "images";

/// An image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Image {
    #[serde(default = "crate::records::v1")]
    pub v: u32,
    pub id: String,
    pub name: Option<String>,
    /// `queued`, `saving`, `active`, `killed`, `deactivated`, `deleted`.
    pub status: String,
    /// `public`, `private`, `shared`, `community`.
    pub visibility: String,
    pub protected: bool,
    pub os_hidden: bool,
    pub checksum: Option<String>,
    pub os_hash_algo: Option<String>,
    pub os_hash_value: Option<String>,
    pub size: Option<u64>,
    pub virtual_size: Option<u64>,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub min_disk: u64,
    pub min_ram: u64,
    /// The owning project's id.
    pub owner: Option<String>,
    pub tags: Vec<String>,
    /// Microseconds since the epoch.
    pub created_us: u64,
    pub updated_us: u64,
    /// Free-form extra properties (Glance's `additionalProperties`).
    #[serde(default)]
    pub properties: serde_json::Map<String, serde_json::Value>,
    /// The object (in [`IMAGE_CONTAINER`]) holding the bytes, once active.
    #[serde(default)]
    pub object: Option<String>,
}

/// Why an image operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("stored image record is damaged: {0}")]
    Damaged(String),
    #[error(transparent)]
    Meta(#[from] ClientError),
}

fn key(id: &str) -> String {
    format!("{IMAGES}{id}")
}

/// Images in meta.
#[derive(Clone)]
pub struct ImageStore {
    client: MetaClient,
}

impl ImageStore {
    pub fn new(client: MetaClient) -> Self {
        Self { client }
    }

    /// The image with `id` and its record's revision.
    pub async fn get(&self, id: &str) -> Result<Option<(Image, i64)>, ImageError> {
        if id.is_empty() || id.contains('/') {
            return Ok(None);
        }
        match self.client.get(key(id)).await? {
            None => Ok(None),
            Some(kv) => serde_json::from_slice(&kv.value)
                .map(|i| Some((i, kv.mod_revision)))
                .map_err(|e| ImageError::Damaged(e.to_string())),
        }
    }

    /// Every image.
    pub async fn list(&self) -> Result<Vec<Image>, ImageError> {
        let r = self.client.range_prefix(IMAGES, 0).await?;
        r.kvs
            .iter()
            .map(|kv| {
                serde_json::from_slice(&kv.value).map_err(|e| ImageError::Damaged(e.to_string()))
            })
            .collect()
    }

    /// Runs `op` on the image's key if the key is at `target` (`Version(0)`: absent;
    /// `ModRevision(rev)`: unchanged since read); false if it was not.
    async fn when(
        &self,
        id: &str,
        target: pb::compare::Target,
        op: pb::request_op::Request,
    ) -> Result<bool, ImageError> {
        let r = self
            .client
            .txn(pb::TxnRequest {
                compare: vec![pb::Compare {
                    result: pb::compare::Result::Equal as i32,
                    key: key(id).into_bytes(),
                    target: Some(target),
                }],
                success: vec![pb::RequestOp { request: Some(op) }],
                ..Default::default()
            })
            .await?;
        Ok(r.succeeded)
    }

    /// Stores a new image (its id must be new); false if the id is taken.
    pub async fn create(&self, img: &Image) -> Result<bool, ImageError> {
        self.when(&img.id, pb::compare::Target::Version(0), put_op(img))
            .await
    }

    /// Replaces the image if its record is still at `rev`; false if it changed meanwhile.
    pub async fn swap(&self, img: &Image, rev: i64) -> Result<bool, ImageError> {
        self.when(&img.id, pb::compare::Target::ModRevision(rev), put_op(img))
            .await
    }

    /// Deletes the image if its record is still at `rev`.
    pub async fn delete(&self, id: &str, rev: i64) -> Result<bool, ImageError> {
        let del = pb::request_op::Request::Delete(pb::DeleteRequest {
            key: key(id).into_bytes(),
            ..Default::default()
        });
        self.when(id, pb::compare::Target::ModRevision(rev), del)
            .await
    }
}

fn put_op(img: &Image) -> pb::request_op::Request {
    pb::request_op::Request::Put(pb::PutRequest {
        key: key(&img.id).into_bytes(),
        value: serde_json::to_vec(img).expect("plain struct serializes"),
        ..Default::default()
    })
}
