//! Rebalance: assign every partition-replica to a device.
//!
//! # How
//! 1. **Topology and targets.** Devices group into nodes, zones and regions. Top-down, each
//!    tier's share of the `replicas` copies of a partition is split among its children in
//!    proportion to weight (water-filling), but no child gets more than
//!    `ceil(parent's copies / children)` — the spread that keeps dispersion at 0 — unless
//!    there are not enough devices under its siblings. A device's share × partitions is its
//!    target; targets are rounded to integer *quotas* that sum to the slot count, rounding
//!    towards what a device already holds so rounding alone never moves anything.
//! 2. **Fill** empty slots (first build, or slots of removed devices): descend region →
//!    zone → node → device, at each tier preferring the child holding the fewest copies of
//!    this partition (and with room below it for a new zone/node), then the one furthest
//!    under its quota.
//! 3. **Disperse:** a partition with more copies in a tier than that tier's cap gives one
//!    copy to a better place.
//! 4. **Balance:** devices under quota pull partitions from devices over quota, taking only
//!    moves that leave every tier's dispersion no worse.
//!
//! Steps 3 and 4 touch a partition only if it has not moved for `min_part_hours`, and move
//! at most one of its copies per rebalance. Slots on removed devices ignore both rules.
//! Every choice is ordered by a seeded hash, so the same inputs give the same ring.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::builder::RingBuilder;
use super::{mix, DevId, RingError, MAX_REPLICAS, NO_DEVICE};

/// Tiers below the root, in order: region, zone, node.
const LEVELS: usize = 3;
const TIER_NAMES: [&str; LEVELS] = ["region", "zone", "node"];
const NONE: u32 = u32::MAX;

/// What a rebalance did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RebalanceReport {
    /// Version of the ring this rebalance produced.
    pub version: u64,
    /// Partition-replica slots that got a new device (first placements included).
    pub reassigned: u64,
    /// Slots that had a device and now have another: data that must move.
    pub moved: u64,
    /// All slots: partitions × replicas.
    pub slots: u64,
    /// Largest per-device deviation from the weight-fair share, percent.
    pub balance: f64,
    /// Partitions placed more narrowly than the topology allows, percent.
    pub dispersion: f64,
    /// False when nothing changed (no slot reassigned and no device edited): nothing to publish.
    pub changed: bool,
}

impl RebalanceReport {
    /// `reassigned` as a percentage of all slots.
    pub fn reassigned_percent(&self) -> f64 {
        100.0 * self.reassigned as f64 / self.slots.max(1) as f64
    }
}

/// How well partitions are spread over failure domains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DispersionReport {
    /// Partitions in the ring.
    pub partitions: u64,
    /// Per tier (`region`, `zone`, `node`): partitions with more copies in one unit of that
    /// tier than the topology requires.
    pub tiers: Vec<TierDispersion>,
    /// Partitions over-concentrated in any tier.
    pub worst: u64,
}

/// One tier's line of a [`DispersionReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TierDispersion {
    pub tier: String,
    /// Units of this tier that hold weight.
    pub units: u64,
    pub over: u64,
    pub percent: f64,
}

impl DispersionReport {
    /// Overall dispersion, percent of partitions.
    pub fn percent(&self) -> f64 {
        100.0 * self.worst as f64 / self.partitions.max(1) as f64
    }
}

impl RingBuilder {
    /// Computes a new assignment at time `now` (Unix seconds). See the module docs.
    ///
    /// Refuses (leaving the builder unchanged) when the devices cannot hold `replicas`
    /// distinct copies of every partition.
    pub fn rebalance(&mut self, now: u64) -> Result<RebalanceReport, RingError> {
        self.check_buildable()?;
        let slots = self.partitions() * usize::from(self.replicas);
        if self.assignment.is_empty() {
            self.assignment = vec![NO_DEVICE; slots];
            self.last_moved = vec![0; self.partitions()];
        }
        let seed = mix(self.seed ^ mix(self.version + 1));
        let mut w = Work::new(self, seed, (now / 3600) as u32);
        w.fill()?;
        w.disperse()?;
        w.balance();
        let before = std::mem::take(&mut self.assignment);
        self.assignment = w.a.iter().map(|&l| w.topo.id_of(l)).collect();
        let mut reassigned = 0u64;
        let mut moved = 0u64;
        for (i, (&old, &new)) in before.iter().zip(&self.assignment).enumerate() {
            if old != new {
                reassigned += 1;
                if old != NO_DEVICE {
                    moved += 1;
                }
                self.last_moved[i / usize::from(self.replicas)] = w.now_h;
            }
        }
        let dropped = self.devices.values().any(|d| d.removing);
        self.devices.retain(|_, d| !d.removing);
        let changed = reassigned > 0 || dropped || self.dirty;
        if changed {
            self.version += 1;
            self.rebalanced_at = now;
            self.dirty = false;
        }
        Ok(RebalanceReport {
            version: self.version,
            reassigned,
            moved,
            slots: slots as u64,
            balance: self.balance(),
            dispersion: self.dispersion().percent(),
            changed,
        })
    }

    /// How many partitions are over-concentrated, per tier.
    pub fn dispersion(&self) -> DispersionReport {
        let r = usize::from(self.replicas);
        let parts = self.partitions();
        let mut tiers: Vec<TierDispersion> = TIER_NAMES
            .iter()
            .map(|t| TierDispersion {
                tier: t.to_string(),
                units: 0,
                over: 0,
                percent: 0.0,
            })
            .collect();
        let mut worst = 0u64;
        if self.check_buildable().is_ok() && !self.assignment.is_empty() {
            let topo = Topo::new(self);
            for (l, t) in tiers.iter_mut().enumerate() {
                t.units = topo.weight[l].iter().filter(|w| **w > 0.0).count() as u64;
            }
            for p in 0..parts {
                let cur = Cur::new(
                    self.assignment[p * r..(p + 1) * r]
                        .iter()
                        .map(|&id| topo.local_of(id)),
                );
                let mut any = false;
                for (l, t) in tiers.iter_mut().enumerate() {
                    if topo.violation(&cur, l).is_some() {
                        t.over += 1;
                        any = true;
                    }
                }
                worst += u64::from(any);
            }
        }
        for t in &mut tiers {
            t.percent = 100.0 * t.over as f64 / parts.max(1) as f64;
        }
        DispersionReport {
            partitions: parts as u64,
            tiers,
            worst,
        }
    }
}

/// The devices that can hold partitions, grouped into tiers, with per-tier caps and quotas.
struct Topo {
    ids: Vec<DevId>,
    /// Device id → local index (`NONE` for removed or unknown ids).
    local: Vec<u32>,
    dev_weight: Vec<f64>,
    /// Local device → its unit at each level.
    dev_unit: Vec<[u32; LEVELS]>,
    /// Children of the root (regions), of each region (zones), of each zone (nodes), of
    /// each node (devices): `children[0]` is the root's, `children[l + 1][unit]` level l's.
    roots: Vec<u32>,
    children: [Vec<Vec<u32>>; LEVELS],
    weight: [Vec<f64>; LEVELS],
    /// Most copies of one partition a unit should hold (ceil of its share).
    cap: [Vec<u32>; LEVELS],
    /// Devices with weight under each unit.
    placeable: [Vec<u32>; LEVELS],
    /// `below[l][m - l - 1][unit]`: units of level m > l with weight under a level-l unit.
    below: [Vec<Vec<u32>>; LEVELS],
    /// Fractional target of each device, in partition-replicas.
    target: Vec<f64>,
}

impl Topo {
    fn new(b: &RingBuilder) -> Topo {
        let r = usize::from(b.replicas);
        let devs: Vec<_> = b.live_devices().collect();
        let mut region_ix: BTreeMap<u32, u32> = BTreeMap::new();
        let mut zone_ix: BTreeMap<(u32, u32), u32> = BTreeMap::new();
        let mut node_ix: BTreeMap<(u32, u32, &str), u32> = BTreeMap::new();
        for d in &devs {
            let n = region_ix.len() as u32;
            region_ix.entry(d.region).or_insert(n);
            let n = zone_ix.len() as u32;
            zone_ix.entry((d.region, d.zone)).or_insert(n);
            let n = node_ix.len() as u32;
            node_ix
                .entry((d.region, d.zone, d.node.as_str()))
                .or_insert(n);
        }
        let counts = [region_ix.len(), zone_ix.len(), node_ix.len()];
        let mut children: [Vec<Vec<u32>>; LEVELS] = counts.map(|n| vec![Vec::new(); n]);
        let mut weight: [Vec<f64>; LEVELS] = counts.map(|n| vec![0.0; n]);
        let mut placeable: [Vec<u32>; LEVELS] = counts.map(|n| vec![0; n]);
        let mut roots = Vec::new();
        let mut dev_unit = Vec::with_capacity(devs.len());
        let mut local = vec![NONE; b.next_dev_id as usize];
        for (i, d) in devs.iter().enumerate() {
            let u = [
                region_ix[&d.region],
                zone_ix[&(d.region, d.zone)],
                node_ix[&(d.region, d.zone, d.node.as_str())],
            ];
            dev_unit.push(u);
            local[d.id as usize] = i as u32;
            for l in 0..LEVELS {
                weight[l][u[l] as usize] += d.weight;
                placeable[l][u[l] as usize] += u32::from(d.weight > 0.0);
            }
        }
        // Tree edges, in a deterministic order (units are numbered in sorted key order of
        // first appearance; devices in id order).
        for (i, u) in dev_unit.iter().enumerate() {
            if !roots.contains(&u[0]) {
                roots.push(u[0]);
            }
            for l in 0..LEVELS - 1 {
                let kids = &mut children[l][u[l] as usize];
                if !kids.contains(&u[l + 1]) {
                    kids.push(u[l + 1]);
                }
            }
            children[LEVELS - 1][u[LEVELS - 1] as usize].push(i as u32);
        }
        let mut below: [Vec<Vec<u32>>; LEVELS] = Default::default();
        for l in 0..LEVELS {
            for m in l + 1..LEVELS {
                let mut per = vec![0u32; counts[l]];
                let mut seen = std::collections::BTreeSet::new();
                for (i, u) in dev_unit.iter().enumerate() {
                    if devs[i].weight > 0.0 && seen.insert((u[l], u[m])) {
                        per[u[l] as usize] += 1;
                    }
                }
                below[l].push(per);
            }
        }
        let mut t = Topo {
            ids: devs.iter().map(|d| d.id).collect(),
            local,
            dev_weight: devs.iter().map(|d| d.weight).collect(),
            dev_unit,
            roots,
            children,
            weight,
            cap: counts.map(|n| vec![0; n]),
            placeable,
            below,
            target: vec![0.0; devs.len()],
        };
        let parts = b.partitions() as f64;
        let roots = t.roots.clone();
        t.split(None, r as f64, r as u32, &roots, parts);
        t
    }

    /// Splits `share` copies (at most `cap` per partition) among `kids` at level `level`.
    fn split(&mut self, level: Option<usize>, share: f64, cap: u32, kids: &[u32], parts: f64) {
        let child_level = level.map_or(0, |l| l + 1);
        let (w, devcount): (Vec<f64>, Vec<u32>) = kids
            .iter()
            .map(|&k| {
                if child_level == LEVELS {
                    (
                        self.dev_weight[k as usize],
                        u32::from(self.dev_weight[k as usize] > 0.0),
                    )
                } else {
                    (
                        self.weight[child_level][k as usize],
                        self.placeable[child_level][k as usize],
                    )
                }
            })
            .unzip();
        let active = w.iter().filter(|x| **x > 0.0).count() as u32;
        if active == 0 {
            return;
        }
        // Caps for dispersion, raised where siblings lack devices to take the rest.
        let even = cap.div_ceil(active);
        let mut caps: Vec<u32> = devcount.iter().map(|&n| n.min(even)).collect();
        let need = (share - 1e-9).ceil().max(0.0) as u32;
        while caps.iter().sum::<u32>() < need {
            match caps.iter().zip(&devcount).position(|(c, n)| c < n) {
                Some(i) => caps[i] += 1,
                None => break,
            }
        }
        let shares = waterfill(share, &w, &caps);
        for (i, &k) in kids.iter().enumerate() {
            if child_level == LEVELS {
                self.target[k as usize] = shares[i] * parts;
                continue;
            }
            let c = ((shares[i] - 1e-9).ceil().max(0.0) as u32).min(caps[i]);
            self.cap[child_level][k as usize] = c;
            let grandkids = self.children[child_level][k as usize].clone();
            self.split(Some(child_level), shares[i], c, &grandkids, parts);
        }
    }

    /// Weighted devices under `unit` already holding a copy.
    fn used_below_self(&self, cur: &[u32], l: usize, unit: u32) -> u32 {
        cur.iter()
            .filter(|&&d| self.dev_unit[d as usize][l] == unit && self.dev_weight[d as usize] > 0.0)
            .count() as u32
    }

    fn id_of(&self, l: u32) -> DevId {
        if l == NONE {
            NO_DEVICE
        } else {
            self.ids[l as usize]
        }
    }

    fn local_of(&self, id: DevId) -> u32 {
        self.local.get(id as usize).copied().unwrap_or(NONE)
    }

    fn count(&self, cur: &[u32], level: usize, unit: u32) -> u32 {
        cur.iter()
            .filter(|&&d| self.dev_unit[d as usize][level] == unit)
            .count() as u32
    }

    /// A unit at `level` holding more copies of the partition than its cap, if any.
    fn violation(&self, cur: &[u32], level: usize) -> Option<u32> {
        cur.iter()
            .map(|&d| self.dev_unit[d as usize][level])
            .find(|&u| self.count(cur, level, u) > self.cap[level][u as usize])
    }

    /// Distinct units of level `m` under `unit` (level `l`) used by the partition's
    /// weighted devices.
    fn used_below(&self, cur: &[u32], l: usize, unit: u32, m: usize) -> u32 {
        let mut seen = [NONE; MAX_REPLICAS as usize];
        let mut n = 0;
        for &d in cur {
            let u = self.dev_unit[d as usize];
            if u[l] == unit && self.dev_weight[d as usize] > 0.0 && !seen[..n].contains(&u[m]) {
                seen[n] = u[m];
                n += 1;
            }
        }
        n as u32
    }
}

/// Splits `total` among children in proportion to weight, none above its cap.
fn waterfill(total: f64, weights: &[f64], caps: &[u32]) -> Vec<f64> {
    let n = weights.len();
    let mut share = vec![0.0; n];
    let mut fixed: Vec<bool> = weights.iter().map(|w| *w <= 0.0).collect();
    loop {
        let rest = total
            - share
                .iter()
                .zip(&fixed)
                .filter(|(_, f)| **f)
                .map(|(s, _)| s)
                .sum::<f64>();
        let wsum: f64 = (0..n).filter(|&i| !fixed[i]).map(|i| weights[i]).sum();
        if wsum <= 0.0 {
            return share;
        }
        let lambda = rest / wsum;
        let mut capped = false;
        for i in 0..n {
            if !fixed[i] && lambda * weights[i] > f64::from(caps[i]) {
                share[i] = f64::from(caps[i]);
                fixed[i] = true;
                capped = true;
            }
        }
        if !capped {
            for i in 0..n {
                if !fixed[i] {
                    share[i] = lambda * weights[i];
                }
            }
            return share;
        }
    }
}

/// The copies a partition has now, as local device indices (on the stack: this is the
/// innermost loop of a rebalance).
struct Cur {
    buf: [u32; MAX_REPLICAS as usize],
    len: usize,
}

impl Cur {
    /// The assigned devices among `slots` (empty slots, `NONE`, are skipped).
    fn new(slots: impl Iterator<Item = u32>) -> Cur {
        let mut c = Cur {
            buf: [NONE; MAX_REPLICAS as usize],
            len: 0,
        };
        for d in slots.filter(|&d| d != NONE) {
            c.buf[c.len] = d;
            c.len += 1;
        }
        c
    }
}

impl std::ops::Deref for Cur {
    type Target = [u32];
    fn deref(&self) -> &[u32] {
        &self.buf[..self.len]
    }
}

/// The mutable state of one rebalance, in local device indices.
struct Work {
    topo: Topo,
    r: usize,
    parts: usize,
    seed: u64,
    now_h: u32,
    /// Part-major local device per slot (`NONE` = empty).
    a: Vec<u32>,
    /// May move in steps 3–4: not moved within `min_part_hours`.
    eligible: Vec<bool>,
    /// Moved in this rebalance.
    moved: Vec<bool>,
    quota: Vec<i64>,
    assigned: Vec<i64>,
    unit_quota: [Vec<i64>; LEVELS],
    unit_assigned: [Vec<i64>; LEVELS],
}

impl Work {
    fn new(b: &RingBuilder, seed: u64, now_h: u32) -> Work {
        let topo = Topo::new(b);
        let r = usize::from(b.replicas);
        let parts = b.partitions();
        let mut moved = vec![false; parts];
        let a: Vec<u32> = b
            .assignment
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                let l = topo.local_of(id);
                if l == NONE && id != NO_DEVICE {
                    // Its device was removed: the refill is this partition's move.
                    moved[i / r] = true;
                }
                l
            })
            .collect();
        let eligible = b
            .last_moved
            .iter()
            .map(|&h| h == 0 || now_h.saturating_sub(h) >= b.min_part_hours)
            .collect();
        let n = topo.ids.len();
        let mut assigned = vec![0i64; n];
        for &l in &a {
            if l != NONE {
                assigned[l as usize] += 1;
            }
        }
        let quota = quotas(&topo.target, &assigned, (parts * r) as i64, seed);
        let unit_sum = |v: &[i64]| -> [Vec<i64>; LEVELS] {
            let mut out: [Vec<i64>; LEVELS] = std::array::from_fn(|l| vec![0; topo.cap[l].len()]);
            for (d, x) in v.iter().enumerate() {
                for (l, o) in out.iter_mut().enumerate() {
                    o[topo.dev_unit[d][l] as usize] += x;
                }
            }
            out
        };
        let unit_quota = unit_sum(&quota);
        let unit_assigned = unit_sum(&assigned);
        Work {
            topo,
            r,
            parts,
            seed,
            now_h,
            a,
            eligible,
            moved,
            quota,
            assigned,
            unit_quota,
            unit_assigned,
        }
    }

    /// Partitions in this rebalance's seeded order.
    fn order(&self) -> Vec<u32> {
        let mut ps: Vec<u32> = (0..self.parts as u32).collect();
        ps.sort_by_key(|&p| mix(self.seed ^ u64::from(p)));
        ps
    }

    fn cur(&self, p: usize) -> Cur {
        Cur::new(self.a[p * self.r..(p + 1) * self.r].iter().copied())
    }

    fn set(&mut self, slot: usize, d: u32) {
        let old = self.a[slot];
        if old != NONE {
            self.bump(old, -1);
        }
        if d != NONE {
            self.bump(d, 1);
        }
        self.a[slot] = d;
    }

    fn bump(&mut self, d: u32, by: i64) {
        self.assigned[d as usize] += by;
        for l in 0..LEVELS {
            self.unit_assigned[l][self.topo.dev_unit[d as usize][l] as usize] += by;
        }
    }

    fn want(&self, d: u32) -> i64 {
        self.quota[d as usize] - self.assigned[d as usize]
    }

    /// The best device for one more copy of partition `p`, whose other copies are `cur`.
    fn choose(&self, p: usize, cur: &[u32]) -> Option<u32> {
        let t = &self.topo;
        let tie =
            |unit: u32, level: u64| mix(self.seed ^ mix((p as u64) << 8 | level) ^ u64::from(unit));
        let mut kids: &[u32] = &t.roots;
        for l in 0..LEVELS {
            let best = kids
                .iter()
                .copied()
                .filter(|&u| t.placeable[l][u as usize] > t.used_below_self(cur, l, u))
                .min_by_key(|&u| {
                    let c = t.count(cur, l, u);
                    let mut crowded = [false; LEVELS - 1];
                    for m in l + 1..LEVELS {
                        crowded[m - l - 1] =
                            t.below[l][m - l - 1][u as usize] <= t.used_below(cur, l, u, m);
                    }
                    let want = self.unit_quota[l][u as usize] - self.unit_assigned[l][u as usize];
                    (
                        c >= t.cap[l][u as usize],
                        c,
                        crowded,
                        -want,
                        tie(u, l as u64),
                    )
                })?;
            kids = &t.children[l][best as usize];
        }
        kids.iter()
            .copied()
            .filter(|&d| t.dev_weight[d as usize] > 0.0 && !cur.contains(&d))
            .min_by_key(|&d| (-self.want(d), tie(d, 9)))
    }

    /// Step 2: every empty slot gets a device.
    fn fill(&mut self) -> Result<(), RingError> {
        let order = self.order();
        for r in 0..self.r {
            for &p in &order {
                let p = p as usize;
                if self.a[p * self.r + r] != NONE {
                    continue;
                }
                let cur = self.cur(p);
                let d = self.choose(p, &cur).ok_or_else(no_room)?;
                self.set(p * self.r + r, d);
            }
        }
        Ok(())
    }

    /// Step 3: partitions crowded into one unit give one copy to a better place.
    fn disperse(&mut self) -> Result<(), RingError> {
        for p in self.order() {
            let p = p as usize;
            if !self.eligible[p] || self.moved[p] {
                continue;
            }
            let cur = self.cur(p);
            let Some((level, unit)) =
                (0..LEVELS).find_map(|l| self.topo.violation(&cur, l).map(|u| (l, u)))
            else {
                continue;
            };
            // Give up the copy in the crowded unit whose device is most over quota.
            let slot = (0..self.r)
                .map(|r| p * self.r + r)
                .filter(|&s| self.topo.dev_unit[self.a[s] as usize][level] == unit)
                .min_by_key(|&s| (self.want(self.a[s]), s))
                .expect("a violating unit holds a copy");
            let old = self.a[slot];
            self.set(slot, NONE);
            let rest = self.cur(p);
            let d = self.choose(p, &rest).ok_or_else(no_room)?;
            self.set(slot, d);
            if d != old {
                self.moved[p] = true;
            }
        }
        Ok(())
    }

    /// Step 4: devices under quota pull from devices over quota.
    fn balance(&mut self) {
        let n = self.topo.ids.len() as u32;
        for _pass in 0..3 {
            let mut parts_on: Vec<Vec<u32>> = vec![Vec::new(); n as usize];
            for (s, &d) in self.a.iter().enumerate() {
                parts_on[d as usize].push((s / self.r) as u32);
            }
            let mut unders: Vec<u32> = (0..n)
                .filter(|&d| self.topo.dev_weight[d as usize] > 0.0 && self.want(d) > 0)
                .collect();
            unders.sort_by_key(|&d| (-self.want(d), mix(self.seed ^ u64::from(d))));
            let mut progress = false;
            for u in unders {
                let mut overs: Vec<u32> = (0..n).filter(|&d| self.want(d) < 0).collect();
                overs.sort_by_key(|&d| (self.want(d), mix(self.seed ^ u64::from(d))));
                for o in overs {
                    let mut take = self.want(u).min(-self.want(o));
                    if take <= 0 {
                        continue;
                    }
                    for &p in &parts_on[o as usize] {
                        if take == 0 {
                            break;
                        }
                        let p = p as usize;
                        if !self.eligible[p] || self.moved[p] {
                            continue;
                        }
                        let cur = self.cur(p);
                        if cur.contains(&u) || !self.no_worse(&cur, o, u) {
                            continue;
                        }
                        let Some(slot) = (0..self.r)
                            .map(|r| p * self.r + r)
                            .find(|&s| self.a[s] == o)
                        else {
                            continue;
                        };
                        self.set(slot, u);
                        self.moved[p] = true;
                        take -= 1;
                        progress = true;
                    }
                    if self.want(u) <= 0 {
                        break;
                    }
                }
            }
            if !progress {
                break;
            }
        }
    }

    /// Moving a copy from `o` to `u` leaves no tier more crowded than before.
    fn no_worse(&self, cur: &[u32], o: u32, u: u32) -> bool {
        let t = &self.topo;
        (0..LEVELS).all(|l| {
            let (uo, uu) = (t.dev_unit[o as usize][l], t.dev_unit[u as usize][l]);
            uo == uu || t.count(cur, l, uu) < t.count(cur, l, uo)
        })
    }
}

fn no_room() -> RingError {
    RingError::Corrupt("no device has room for a replica".into())
}

/// Integer quotas summing to `total`, each the floor or ceiling of its target, preferring
/// the one closest to what the device holds now (so rounding moves nothing).
fn quotas(target: &[f64], assigned: &[i64], total: i64, seed: u64) -> Vec<i64> {
    let mut q: Vec<i64> = target
        .iter()
        .zip(assigned)
        .map(|(&t, &a)| {
            if t <= 0.0 {
                0
            } else {
                a.clamp(t.floor() as i64, t.ceil() as i64)
            }
        })
        .collect();
    let mut diff = total - q.iter().sum::<i64>();
    let mut idx: Vec<usize> = (0..q.len()).filter(|&i| target[i] > 0.0).collect();
    let key = |q: &[i64], i: usize, up: bool| {
        let rem = if up {
            target[i] - q[i] as f64
        } else {
            q[i] as f64 - target[i]
        };
        // Largest remainder first; the seeded hash breaks ties.
        (std::cmp::Reverse((rem * 1e6) as i64), mix(seed ^ i as u64))
    };
    while diff != 0 && !idx.is_empty() {
        let up = diff > 0;
        idx.sort_by_key(|&i| key(&q, i, up));
        let mut changed = false;
        for &i in &idx {
            if diff == 0 {
                break;
            }
            let room = if up {
                (target[i].ceil() as i64) > q[i]
            } else {
                (target[i].floor() as i64) < q[i] && q[i] > 0
            };
            if room {
                q[i] += if up { 1 } else { -1 };
                diff += if up { -1 } else { 1 };
                changed = true;
            }
        }
        if !changed {
            // Floating-point targets left no room within floor..ceil: widen by one.
            let i = idx[0];
            q[i] += if up { 1 } else { -1 };
            diff += if up { -1 } else { 1 };
        }
    }
    q
}
