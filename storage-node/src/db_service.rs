//! The `Db` gRPC service: container and account databases over [`crate::db`].

use std::sync::Arc;

use stratus_proto::storage::db_server::Db;
use stratus_proto::storage::{self as pb, POLICY_CONFLICT};
use tonic::{Request, Response, Status};

use crate::db::{self, DeleteOutcome, Kind, Target};
use crate::device::Device;
use crate::updater::report_container;
use crate::Node;

/// Largest listing page a node returns.
pub const MAX_LIMIT: u32 = 10_000;

/// The gRPC database service of one node.
pub struct DbService {
    node: Arc<Node>,
}

impl DbService {
    /// Serves `node`'s devices.
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    fn open(&self, t: Option<pb::DbTarget>) -> Result<(Arc<Device>, Target), Status> {
        let t = t.ok_or_else(|| Status::invalid_argument("missing target"))?;
        if t.account.is_empty() {
            return Err(Status::invalid_argument("target needs an account"));
        }
        if t.account.contains('/') || t.container.contains('/') {
            return Err(Status::invalid_argument(
                "account and container names cannot contain '/'",
            ));
        }
        let dev = self.node.device(&t.device)?;
        // A pulled disk answers nothing, not even reads of what its open files still hold.
        dev.check_present()?;
        Ok((dev, Target::from_pb(&t)))
    }

    /// Reports a container change to its account right away (best effort: a failure leaves
    /// the container dirty for the background reporter).
    async fn report_now(&self, dev: &Arc<Device>, t: &Target) {
        if t.kind == Kind::Container {
            if let Err(e) = report_container(&self.node, dev, t).await {
                tracing::info!(container = %t.container, error = %e, "account update deferred");
                self.node.dirty.notify_one();
            }
        }
    }
}

fn reply(info: &db::Info, changed: bool) -> Response<pb::DbReply> {
    Response::new(pb::DbReply {
        info: Some(info.to_pb()),
        changed,
    })
}

#[tonic::async_trait]
impl Db for DbService {
    async fn put(&self, req: Request<pb::DbPutRequest>) -> Result<Response<pb::DbReply>, Status> {
        let req = req.into_inner();
        let (dev, t) = self.open(req.target)?;
        dev.check_space(0)?;
        let (info, created) =
            match db::put(&dev, &t, req.ts, &req.meta, req.policy, req.default_policy).await? {
                db::PutOutcome::Done(info, created) => (info, created),
                db::PutOutcome::PolicyConflict(p) => {
                    return Err(Status::failed_precondition(format!(
                        "{POLICY_CONFLICT}: the container has storage policy {p}"
                    )))
                }
            };
        self.report_now(&dev, &t).await;
        Ok(reply(&info, created))
    }

    async fn post(&self, req: Request<pb::DbPostRequest>) -> Result<Response<pb::DbReply>, Status> {
        let req = req.into_inner();
        let (dev, t) = self.open(req.target)?;
        dev.check_space(0)?;
        match db::post(&dev, &t, &req.meta).await? {
            Some(info) => Ok(reply(&info, true)),
            None => Err(Status::not_found("no such database")),
        }
    }

    async fn delete(
        &self,
        req: Request<pb::DbDeleteRequest>,
    ) -> Result<Response<pb::DbReply>, Status> {
        let req = req.into_inner();
        let (dev, t) = self.open(req.target)?;
        dev.check_present()?; // deletions and listing rows pass the reserve
        match db::delete(&dev, &t, req.ts).await? {
            DeleteOutcome::Deleted(info) => {
                self.report_now(&dev, &t).await;
                Ok(reply(&info, true))
            }
            DeleteOutcome::NotFound(info) => Ok(reply(&info, false)),
            DeleteOutcome::NotEmpty(_) => Err(Status::failed_precondition("not empty")),
        }
    }

    async fn info(&self, req: Request<pb::DbTarget>) -> Result<Response<pb::DbReply>, Status> {
        let (dev, t) = self.open(Some(req.into_inner()))?;
        Ok(reply(&db::info(&dev, &t)?, false))
    }

    async fn list(&self, req: Request<pb::ListRequest>) -> Result<Response<pb::ListReply>, Status> {
        let mut req = req.into_inner();
        let (dev, t) = self.open(req.target.clone())?;
        req.limit = req.limit.clamp(1, MAX_LIMIT);
        let info = db::info(&dev, &t)?;
        let entries = tokio::task::spawn_blocking(move || db::list(&dev, &t, &req))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(pb::ListReply {
            info: Some(info.to_pb()),
            entries,
        }))
    }

    async fn object_update(
        &self,
        req: Request<pb::ObjectUpdateRequest>,
    ) -> Result<Response<pb::DbReply>, Status> {
        let req = req.into_inner();
        let (dev, t) = self.open(req.target)?;
        if t.kind != Kind::Container {
            return Err(Status::invalid_argument("object updates go to a container"));
        }
        let row = req
            .row
            .ok_or_else(|| Status::invalid_argument("missing row"))?;
        dev.check_present()?; // deletions and listing rows pass the reserve
        let info = db::object_update(&dev, &t, &row).await?;
        self.node.dirty.notify_one();
        Ok(reply(&info, true))
    }

    async fn account_update(
        &self,
        req: Request<pb::AccountUpdateRequest>,
    ) -> Result<Response<pb::DbReply>, Status> {
        let req = req.into_inner();
        let (dev, t) = self.open(req.target)?;
        if t.kind != Kind::Account {
            return Err(Status::invalid_argument("container rows go to an account"));
        }
        let row = req
            .row
            .ok_or_else(|| Status::invalid_argument("missing row"))?;
        dev.check_present()?; // deletions and listing rows pass the reserve
        Ok(reply(&db::account_update(&dev, &t, &row).await?, true))
    }
}
