//! A meta node's Raft metrics, copied from openraft's at each scrape, beside the shared RPC
//! and fsync ones ([`stratus_client::service::metrics`]):
//! - `stratus_raft_term`, `stratus_raft_is_leader`, `stratus_raft_leader_id`;
//! - `stratus_raft_last_log_index`, `stratus_raft_last_applied_index`, and
//!   `stratus_raft_apply_lag` (entries appended but not yet applied here);
//! - `stratus_raft_snapshot_index`, `stratus_raft_purged_index`;
//! - `stratus_raft_replication_lag{peer}` (leader only: entries a follower lacks).

use std::sync::LazyLock;

use openraft::ServerState;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use stratus_client::service::metrics::{labels, on_scrape, register, Labels};

use crate::Raft;

struct RaftGauges {
    term: Gauge,
    is_leader: Gauge,
    leader: Gauge,
    last_log: Gauge,
    applied: Gauge,
    apply_lag: Gauge,
    snapshot: Gauge,
    purged: Gauge,
    replication_lag: Family<Labels, Gauge>,
}

static RAFT: LazyLock<RaftGauges> = LazyLock::new(|| {
    let g = |name: &str, help: &str| register(name, help, Gauge::default());
    RaftGauges {
        term: g("stratus_raft_term", "Current Raft term"),
        is_leader: g("stratus_raft_is_leader", "1 if this node is the leader"),
        leader: g(
            "stratus_raft_leader_id",
            "Id of the leader this node knows (0: none)",
        ),
        last_log: g("stratus_raft_last_log_index", "Index of the last log entry"),
        applied: g(
            "stratus_raft_last_applied_index",
            "Index of the last entry applied to the state machine",
        ),
        apply_lag: g(
            "stratus_raft_apply_lag",
            "Log entries appended here but not yet applied",
        ),
        snapshot: g(
            "stratus_raft_snapshot_index",
            "Last index in the current snapshot",
        ),
        purged: g("stratus_raft_purged_index", "Last purged log index"),
        replication_lag: register(
            "stratus_raft_replication_lag",
            "Entries a follower lacks (leader only)",
            Family::default(),
        ),
    }
});

fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Registers the Raft gauges, filled from `raft`'s metrics at each scrape.
pub fn install(raft: Raft) {
    let g = &*RAFT;
    on_scrape(move || {
        let m = raft.metrics().borrow().clone();
        let last = m.last_log_index.unwrap_or(0);
        let applied = m.last_applied.map_or(0, |l| l.index);
        g.term.set(gauge_value(m.current_term));
        g.is_leader.set(i64::from(m.state == ServerState::Leader));
        g.leader.set(gauge_value(m.current_leader.unwrap_or(0)));
        g.last_log.set(gauge_value(last));
        g.applied.set(gauge_value(applied));
        g.apply_lag.set(gauge_value(last.saturating_sub(applied)));
        g.snapshot
            .set(gauge_value(m.snapshot.map_or(0, |l| l.index)));
        g.purged.set(gauge_value(m.purged.map_or(0, |l| l.index)));
        if let Some(repl) = &m.replication {
            for (peer, matched) in repl.iter() {
                let have = matched.map_or(0, |l| l.index);
                g.replication_lag
                    .get_or_create(&labels(&[("peer", &peer.to_string())]))
                    .set(gauge_value(last.saturating_sub(have)));
            }
        }
    });
}
