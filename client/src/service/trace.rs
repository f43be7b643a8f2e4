//! Request ids across hops.
//!
//! The proxy gives every HTTP request a transaction id (`X-Trans-Id`, as Swift does) and runs
//! its handling inside [`scope`]. Every gRPC client built by this crate stamps the current id
//! on its calls as metadata ([`TRANS_ID_HEADER`], by the [`Stamp`] interceptor); every gRPC
//! server of a service reads it back ([`super::metrics::RpcLayer`]), runs the handler in the
//! same scope and in a `rpc` span with a `trans_id` field, so the id is on every log line of
//! the request on every process, and travels on from there to further hops.

use std::future::Future;
use std::sync::Arc;

use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// gRPC metadata key (and HTTP header) carrying the transaction id.
pub const TRANS_ID_HEADER: &str = "x-trans-id";

/// Longest transaction id accepted from a peer; longer ones are ignored.
pub const MAX_TRANS_ID: usize = 64;

tokio::task_local! {
    static TRANS_ID: Arc<str>;
}

/// Runs `f` with `id` as the current transaction id.
pub async fn scope<F: Future>(id: Arc<str>, f: F) -> F::Output {
    TRANS_ID.scope(id, f).await
}

/// The transaction id of the request being handled, if any.
pub fn current() -> Option<Arc<str>> {
    TRANS_ID.try_with(Arc::clone).ok()
}

/// A new transaction id in Swift's shape: `tx` + 21 random hex digits + `-` + the time in
/// hex seconds.
pub fn new_trans_id() -> String {
    let r: u128 = rand::random::<u128>() & ((1u128 << 84) - 1);
    format!("tx{r:021x}-{:010x}", stratus_core::time::now_secs())
}

/// A transaction id as received from a peer, if it is one worth keeping (printable ASCII,
/// bounded length).
pub fn accept(raw: &[u8]) -> Option<Arc<str>> {
    if raw.is_empty()
        || raw.len() > MAX_TRANS_ID
        || !raw.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
    {
        return None;
    }
    std::str::from_utf8(raw).ok().map(Arc::from)
}

/// gRPC metadata key an admin sets to read identity secrets from meta (`--reveal`).
pub const REVEAL_HEADER: &str = "x-stratus-reveal";

/// The interceptor that stamps the current transaction id on outgoing gRPC calls (and,
/// when `reveal` is set, asks meta to show identity secrets to an admin).
#[derive(Clone, Copy, Debug, Default)]
pub struct Stamp {
    pub reveal: bool,
}

impl Interceptor for Stamp {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(id) = current() {
            if let Ok(v) = id.parse() {
                req.metadata_mut().insert(TRANS_ID_HEADER, v);
            }
        }
        if self.reveal {
            req.metadata_mut().insert(
                REVEAL_HEADER,
                tonic::metadata::MetadataValue::from_static("1"),
            );
        }
        Ok(req)
    }
}

/// A channel whose calls carry the current transaction id.
pub type Traced = InterceptedService<Channel, Stamp>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_id_is_stamped_only_inside_a_scope() {
        let stamped = |()| Stamp::default().call(Request::new(())).unwrap();
        assert!(stamped(()).metadata().get(TRANS_ID_HEADER).is_none());
        let id: Arc<str> = Arc::from(new_trans_id());
        let req = scope(id.clone(), async { stamped(()) }).await;
        assert_eq!(
            req.metadata()
                .get(TRANS_ID_HEADER)
                .unwrap()
                .to_str()
                .unwrap(),
            &*id
        );
    }

    #[test]
    fn ids_have_swifts_shape_and_peers_cannot_send_junk() {
        let id = new_trans_id();
        assert_eq!(id.len(), 2 + 21 + 1 + 10, "{id}");
        assert!(accept(id.as_bytes()).is_some());
        assert!(accept(b"").is_none());
        assert!(accept(b"tx\n injected").is_none());
        assert!(accept(&[b'a'; MAX_TRANS_ID + 1]).is_none());
    }
}
