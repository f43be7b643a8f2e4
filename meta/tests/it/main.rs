//! Integration tests of the meta cluster: real `stratus-meta` processes on loopback ports the
//! OS picks, killed with SIGKILL, restarted and wiped. Every wait is bounded and generous;
//! no test relies on timing to pass.

mod common;
mod t10_basic;
mod t20_leader_kill;
mod t30_recovery;
mod t40_txn;
mod t50_watch;
mod t60_bad_input;
mod t70_rings;
