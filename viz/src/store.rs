//! The embedded time-series store: the few metric families the stat and
//! routes code reads, scraped from every proxy, kept for a short retention,
//! and queried with Prometheus's semantics.
//!
//! ```text
//!  scrape ─► Store::prepare (parse, filter; no lock)
//!         └► Store::commit ─► Target { labels, series: [(family, labels)],
//!                                      snapshots: [(t, [f64; series])] }
//!  Query ─► Store::evaluate_at ─► increase / irate / histogram_quantile / sum
//! ```
//!
//! Only the labels stat and routes group or filter by are kept (per
//! family), and label sets are interned and shared by every target, so a
//! snapshot is a timestamp and one `f64` per series (the `memory_bound` test; the
//! benchmark in `bench/discovery` measures a busy proxy's exposition).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::promtext::{self, ParseError};

/// Ten minutes: the longest window the stat code asks for is a few
/// minutes, and 60 snapshots at the 10 s scrape interval keep memory small.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(600);

/// The labels stat and edges group or filter by, per family; the others
/// (`authority`, `target_addr`, `client_id`, `status_code`, `grpc_status`,
/// `error`...) would multiply series for no number the API shows. Series
/// that become identical without them are summed.
const DST_LABELS: [&str; 4] = ["dst_namespace", "dst_service", "dst_deployment", "dst_pod"];
const RESPONSE_LABELS: [&str; 5] = [
    "direction",
    "tls",
    "server_id",
    "no_tls_reason",
    "classification",
];
const LATENCY_LABELS: [&str; 2] = ["direction", "le"];
const TCP_LABELS: [&str; 3] = ["direction", "peer", "tls"];
/// The route families' labels `routes` groups or filters by: the service
/// called (`dst`, its authority) and the ServiceProfile route's name.
const ROUTE_RESPONSE_LABELS: [&str; 4] = ["direction", "dst", "rt_route", "classification"];
const ROUTE_LATENCY_LABELS: [&str; 4] = ["direction", "dst", "rt_route", "le"];

/// Identifies a scrape target: one meshed pod's proxy.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetKey {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
}

/// What [`Store::targets`] reports about one target.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetInfo {
    /// Which target.
    pub key: TargetKey,
    /// The labels added to its series (`namespace`, `pod`, `deployment`).
    pub labels: BTreeMap<String, String>,
    /// When it was last scraped, successfully or not.
    pub last_scrape: Option<SystemTime>,
    /// When it was last scraped successfully.
    pub last_success: Option<SystemTime>,
    /// Why the last scrape failed; `None` when it succeeded. A target with
    /// an error is stale: it contributes nothing to instant values.
    pub last_error: Option<String>,
    /// Series currently tracked.
    pub series: usize,
    /// Snapshots within the retention.
    pub snapshots: usize,
}

/// How a scrape changed a target's health, for logging transitions once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthChange {
    /// Healthy before and after, or failing before and after.
    Unchanged,
    /// It failed after succeeding (or on its first scrape).
    TurnedStale,
    /// It succeeded after failing.
    Recovered,
}

/// A parsed and filtered exposition, ready for [`Store::commit`]. Parsing
/// happens before taking the store's lock.
#[derive(Clone, Debug)]
pub struct Prepared<'a> {
    samples: Vec<PreparedSample<'a>>,
}

/// The embedded store. Cheap to share behind an `Arc`; evaluation takes a
/// read lock, a scrape's commit a short write lock.
#[derive(Debug)]
pub struct Store {
    retention: Duration,
    inner: RwLock<Inner>,
}

#[derive(Clone, Debug)]
struct PreparedSample<'a> {
    family: Family,
    /// Sorted by name; no empty values.
    labels: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    value: f64,
}

/// The families the stat and routes code reads. `route_request_total`
/// and `route_actual_request_total` are not kept: `routes` counts
/// responses, as Linkerd's does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Family {
    RequestTotal,
    ResponseTotal,
    ResponseLatencyBucket,
    TcpOpenConnections,
    TcpOpenTotal,
    TcpCloseTotal,
    RouteResponseTotal,
    RouteActualResponseTotal,
    RouteResponseLatencyBucket,
}

/// A sorted list of label pairs, shared by every series that has it.
type LabelSet = Arc<[(Arc<str>, Arc<str>)]>;

#[derive(Debug, Default)]
struct Inner {
    targets: HashMap<TargetKey, Target>,
    interner: Interner,
}

#[derive(Debug, Default)]
struct Interner {
    strings: HashSet<Arc<str>, FastHash>,
    sets: HashSet<LabelSet, FastHash>,
}

/// A multiply-rotate hasher (the Fx hash of rustc) for the interner and
/// series indexes, which hash every label of every scraped line: several
/// times cheaper than SipHash. Its keys are the proxies' own label values
/// (workload and identity names from the control plane, status classes),
/// not request data, so flooding it with collisions is not a concern.
type FastHash = std::hash::BuildHasherDefault<FxHasher>;

#[derive(Default)]
struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Debug)]
struct Target {
    labels: LabelSet,
    series: Vec<Series>,
    index: HashMap<Series, usize, FastHash>,
    /// What each line of the last scrape became, by a hash of its text up
    /// to the value: a proxy sends the same lines every time, so a later
    /// scrape only parses values ([`Store::ingest`]).
    lines: HashMap<u64, Option<Series>, FastHash>,
    /// Oldest first, strictly increasing times.
    snapshots: VecDeque<Snapshot>,
    last_scrape: Option<i64>,
    last_success: Option<i64>,
    last_error: Option<String>,
    /// When the current run of failed scrapes began.
    failing_since: Option<i64>,
}

/// Compared and hashed by the identity of its interned label set: equal
/// sets are the same `Arc` (the interner keeps every set in use).
#[derive(Clone, Debug)]
struct Series {
    family: Family,
    labels: LabelSet,
}

/// One scrape: a value per series of the target, aligned with its series
/// list. NaN is a series absent from that scrape (or one added later when
/// the slice is shorter).
#[derive(Debug)]
struct Snapshot {
    at: i64,
    values: Box<[f64]>,
}

// === impl PreparedSample ===

impl<'a> PreparedSample<'a> {
    /// The sample's family and kept labels (`le` normalized: `1.0` is
    /// `1`), when it is of a family the store keeps.
    fn of(s: promtext::TextSample<'a>) -> Option<PreparedSample<'a>> {
        let family = Family::from_name(&s.name)?;
        let mut labels: Vec<_> = s
            .labels
            .into_iter()
            .filter(|l| !l.value.is_empty() && family.keeps(&l.name))
            .map(|l| {
                let value = if l.name == "le" {
                    normalize_le(l.value)
                } else {
                    l.value
                };
                (l.name, value)
            })
            .collect();
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        Some(PreparedSample {
            family,
            labels,
            value: s.value,
        })
    }

    /// Its series, with interned labels.
    fn series(&self, interner: &mut Interner) -> Series {
        let pairs: Vec<_> = self
            .labels
            .iter()
            .map(|(k, v)| (interner.string(k), interner.string(v)))
            .collect();
        Series {
            family: self.family,
            labels: interner.set(&pairs),
        }
    }
}

/// The metric families the store reads; the parser skips the others.
fn wanted(name: &str) -> bool {
    Family::from_name(name).is_some()
}

/// The line cache's key: SipHash (keys fixed) of a line's text up to its
/// value, 64 bits, so that distinct lines do not meet by chance.
fn line_hash(head: &[u8]) -> u64 {
    use std::hash::Hasher as _;
    let mut h = std::hash::DefaultHasher::new();
    h.write(head);
    h.finish()
}

// === impl Family ===

impl Family {
    /// Whether series of this family keep `label`.
    fn keeps(self, label: &str) -> bool {
        match self {
            Family::RequestTotal | Family::ResponseTotal => {
                RESPONSE_LABELS.contains(&label) || DST_LABELS.contains(&label)
            }
            Family::ResponseLatencyBucket => {
                LATENCY_LABELS.contains(&label) || DST_LABELS.contains(&label)
            }
            Family::TcpOpenConnections | Family::TcpOpenTotal | Family::TcpCloseTotal => {
                TCP_LABELS.contains(&label)
            }
            Family::RouteResponseTotal | Family::RouteActualResponseTotal => {
                ROUTE_RESPONSE_LABELS.contains(&label)
            }
            Family::RouteResponseLatencyBucket => ROUTE_LATENCY_LABELS.contains(&label),
        }
    }

    fn from_name(name: &str) -> Option<Family> {
        Some(match name {
            "request_total" => Family::RequestTotal,
            "response_total" => Family::ResponseTotal,
            "response_latency_ms_bucket" => Family::ResponseLatencyBucket,
            "tcp_open_connections" => Family::TcpOpenConnections,
            "tcp_open_total" => Family::TcpOpenTotal,
            "tcp_close_total" => Family::TcpCloseTotal,
            "route_response_total" => Family::RouteResponseTotal,
            "route_actual_response_total" => Family::RouteActualResponseTotal,
            "route_response_latency_ms_bucket" => Family::RouteResponseLatencyBucket,
            _ => return None,
        })
    }
}

// === impl Series ===

impl PartialEq for Series {
    fn eq(&self, other: &Self) -> bool {
        self.family == other.family && Arc::ptr_eq(&self.labels, &other.labels)
    }
}

impl Eq for Series {}

impl std::hash::Hash for Series {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.family.hash(state);
        std::ptr::hash(Arc::as_ptr(&self.labels), state);
    }
}

// === impl Store ===

impl Default for Store {
    fn default() -> Self {
        Store::new(DEFAULT_RETENTION)
    }
}

impl Store {
    /// An empty store keeping snapshots for `retention`.
    pub fn new(retention: Duration) -> Store {
        Store {
            retention,
            inner: RwLock::new(Inner::default()),
        }
    }

    /// How long snapshots are kept.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// Parses an exposition and keeps only what the store ingests: the nine
    /// families, their kept labels (`le` normalized: `1.0` is `1`), and no
    /// NaN samples (NaN marks an absent series in a snapshot). No size
    /// limit is applied here: the scraper bounds the body it reads.
    pub fn prepare(text: &[u8]) -> Result<Prepared<'_>, ParseError> {
        let mut samples = Vec::new();
        promtext::for_each_wanted(text, usize::MAX, wanted, |s| {
            samples.extend(PreparedSample::of(s).filter(|p| !p.value.is_nan()));
        })?;
        Ok(Prepared { samples })
    }

    /// Parses and commits a scrape of `key` taken at `at`; a parse error is
    /// recorded as the target's failure (its earlier snapshots are kept).
    pub fn ingest(
        &self,
        key: &TargetKey,
        labels: &BTreeMap<String, String>,
        at: SystemTime,
        text: &[u8],
    ) -> Result<HealthChange, ParseError> {
        self.ingest_scrape(key, labels, at, text).inspect_err(|e| {
            self.record_failure(key, labels, at, e);
        })
    }

    /// Parses and commits a scrape of `key` taken at `at`, or changes
    /// nothing and says why it cannot be parsed. Lines seen in the
    /// target's previous scrape are not parsed again: their text up to the
    /// value is looked up in the target's line cache, and only the value
    /// is read.
    pub fn ingest_scrape(
        &self,
        key: &TargetKey,
        labels: &BTreeMap<String, String>,
        at: SystemTime,
        text: &[u8],
    ) -> Result<HealthChange, ParseError> {
        let at_ms = to_ms(at);
        let retention = duration_ms(self.retention);
        let mut inner = self.write();
        let Inner { targets, interner } = &mut *inner;
        let target = Target::entry(targets, interner, key, labels);
        let known = std::mem::take(&mut target.lines);
        let mut lines: HashMap<u64, Option<Series>, FastHash> =
            HashMap::with_capacity_and_hasher(known.len(), FastHash::default());
        let mut values = vec![f64::NAN; target.series.len()];
        let mut parsed = Ok(());
        for (i, raw) in text.split(|b| *b == b'\n').enumerate() {
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.iter().all(|b| *b == b' ' || *b == b'\t') {
                continue;
            }
            if raw.trim_ascii() == b"# EOF" {
                break;
            }
            let (head, value) = promtext::split_sample(raw);
            let h = line_hash(head);
            let entry = match known.get(&h).or_else(|| lines.get(&h)) {
                Some(entry) => entry.clone(),
                None => match target.parse_line(interner, raw, i + 1) {
                    Ok(entry) => entry,
                    Err(e) => {
                        parsed = Err(e);
                        break;
                    }
                },
            };
            if let Some(series) = &entry {
                let v = match value.and_then(promtext::parse_value) {
                    Some(v) => v,
                    None => {
                        // Not a plain value: the full parser says why.
                        parsed = target.parse_line(interner, raw, i + 1).map(|_| ());
                        if parsed.is_ok() {
                            continue;
                        }
                        break;
                    }
                };
                if !v.is_nan() {
                    let idx = target.index_of(series, &mut values);
                    if let Some(slot) = values.get_mut(idx) {
                        *slot = if slot.is_nan() { v } else { *slot + v };
                    }
                }
            }
            lines.insert(h, entry);
        }
        parsed?;
        target.lines = lines;
        Ok(target.push_snapshot(interner, at_ms, values, retention))
    }

    /// Records a successful scrape of `key` taken at `at`, adding the
    /// target (with `labels` on all its series) when it is new.
    pub fn commit(
        &self,
        key: &TargetKey,
        labels: &BTreeMap<String, String>,
        at: SystemTime,
        prepared: Prepared<'_>,
    ) -> HealthChange {
        let at = to_ms(at);
        let retention = duration_ms(self.retention);
        let mut inner = self.write();
        let Inner { targets, interner } = &mut *inner;
        let target = Target::entry(targets, interner, key, labels);
        let mut values = vec![f64::NAN; target.series.len()];
        for s in prepared.samples {
            let series = s.series(interner);
            let i = target.index_of(&series, &mut values);
            if let Some(v) = values.get_mut(i) {
                *v = if v.is_nan() { s.value } else { *v + s.value };
            }
        }
        target.push_snapshot(interner, at, values, retention)
    }

    /// Records a failed scrape of `key` at `at`: the target is stale until
    /// its next success, and keeps its snapshots.
    pub fn record_failure(
        &self,
        key: &TargetKey,
        labels: &BTreeMap<String, String>,
        at: SystemTime,
        error: &dyn fmt::Display,
    ) -> HealthChange {
        let at = to_ms(at);
        let retention = duration_ms(self.retention);
        let mut inner = self.write();
        let Inner { targets, interner } = &mut *inner;
        let target = Target::entry(targets, interner, key, labels);
        let change = if target.last_error.is_none() {
            HealthChange::TurnedStale
        } else {
            HealthChange::Unchanged
        };
        target.last_scrape = Some(at);
        target.last_error = Some(error.to_string());
        target.failing_since.get_or_insert(at);
        target.expire(at.saturating_sub(retention));
        if target.compact() {
            interner.collect();
        }
        change
    }

    /// Drops a target and its snapshots at once. Whether it was there.
    pub fn remove(&self, key: &TargetKey) -> bool {
        let mut inner = self.write();
        let removed = inner.targets.remove(key).is_some();
        if removed {
            inner.interner.collect();
        }
        removed
    }

    /// Drops every target `keep` rejects; returns the keys dropped.
    pub fn retain(&self, mut keep: impl FnMut(&TargetKey) -> bool) -> Vec<TargetKey> {
        let mut inner = self.write();
        let gone: Vec<TargetKey> = inner.targets.keys().filter(|k| !keep(k)).cloned().collect();
        for k in &gone {
            inner.targets.remove(k);
        }
        if !gone.is_empty() {
            inner.interner.collect();
        }
        gone
    }

    /// Every target, sorted by key.
    pub fn targets(&self) -> Vec<TargetInfo> {
        let inner = self.read();
        let mut out: Vec<TargetInfo> = inner
            .targets
            .iter()
            .map(|(key, t)| TargetInfo {
                key: key.clone(),
                labels: t
                    .labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                last_scrape: t.last_scrape.map(from_ms),
                last_success: t.last_success.map(from_ms),
                last_error: t.last_error.clone(),
                series: t.series.len(),
                snapshots: t.snapshots.len(),
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// An estimate of the heap the store holds, in bytes: snapshots, series
    /// lists and indexes, and the interned strings and label sets.
    pub fn approx_bytes(&self) -> usize {
        use std::mem::size_of;
        let inner = self.read();
        // A hash table slot costs its entry plus a control byte; tables run
        // at most 7/8 full.
        let slot = |entry: usize| entry + 1;
        let mut total = 0;
        for t in inner.targets.values() {
            total += slot(size_of::<(TargetKey, Target)>());
            total += t.series.capacity() * size_of::<Series>();
            total += t.index.capacity() * slot(size_of::<(Series, usize)>());
            total += t.snapshots.capacity() * size_of::<Snapshot>();
            total += t
                .snapshots
                .iter()
                .map(|s| s.values.len() * size_of::<f64>())
                .sum::<usize>();
            total += t.last_error.as_ref().map_or(0, String::capacity);
        }
        // An `Arc` allocation carries two reference counts.
        let arc = 2 * size_of::<usize>();
        for s in &inner.interner.strings {
            total += slot(size_of::<Arc<str>>()) + arc + s.len();
        }
        for s in &inner.interner.sets {
            total += slot(size_of::<LabelSet>()) + arc + std::mem::size_of_val(&**s);
        }
        total
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock leaves whole snapshots behind (each
        // mutation completes before the next), so the data is still usable.
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl Interner ===

impl Interner {
    fn string(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strings.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.strings.insert(a.clone());
        a
    }

    fn set(&mut self, pairs: &[(Arc<str>, Arc<str>)]) -> LabelSet {
        if let Some(s) = self.sets.get(pairs) {
            return s.clone();
        }
        let s: LabelSet = Arc::from(pairs);
        self.sets.insert(s.clone());
        s
    }

    /// Forgets what no series or target refers to any more.
    fn collect(&mut self) {
        self.sets.retain(|s| Arc::strong_count(s) > 1);
        self.strings.retain(|s| Arc::strong_count(s) > 1);
    }
}

// === impl Target ===

impl Target {
    /// Parses one line in full (`line` is its number, for errors): the
    /// series it feeds, or `None` for a comment or a family not kept.
    fn parse_line(
        &mut self,
        interner: &mut Interner,
        raw: &[u8],
        line: usize,
    ) -> Result<Option<Series>, ParseError> {
        let mut found = None;
        promtext::for_each_wanted(raw, usize::MAX, wanted, |s| {
            found = PreparedSample::of(s).map(|p| p.series(interner));
        })
        .map_err(|e| match e {
            ParseError::Line { reason, .. } => ParseError::Line { line, reason },
            other => other,
        })?;
        Ok(found)
    }

    /// The index of `series` in this target's list, added (with a slot in
    /// `values`) when new.
    fn index_of(&mut self, series: &Series, values: &mut Vec<f64>) -> usize {
        if let Some(i) = self.index.get(series) {
            return *i;
        }
        let i = self.series.len();
        self.index.insert(series.clone(), i);
        self.series.push(series.clone());
        values.push(f64::NAN);
        i
    }

    /// Records a successful scrape at `at` with one value per series;
    /// drops what is past the retention.
    fn push_snapshot(
        &mut self,
        interner: &mut Interner,
        at: i64,
        values: Vec<f64>,
        retention: i64,
    ) -> HealthChange {
        let change = if self.last_error.is_some() {
            HealthChange::Recovered
        } else {
            HealthChange::Unchanged
        };
        self.last_scrape = Some(at);
        self.last_success = Some(at);
        self.last_error = None;
        self.failing_since = None;
        // A clock stepped back: newer snapshots than this one are dropped
        // rather than kept out of order.
        while self.snapshots.back().is_some_and(|s| s.at >= at) {
            self.snapshots.pop_back();
        }
        let present = values.iter().filter(|v| !v.is_nan()).count();
        self.snapshots.push_back(Snapshot {
            at,
            values: values.into_boxed_slice(),
        });
        self.expire(at.saturating_sub(retention));
        if present < self.series.len() && self.compact() {
            interner.collect();
        }
        change
    }

    /// The target for `key`, created if new; its labels updated when they
    /// changed (a pod's deployment label rarely does).
    fn entry<'a>(
        targets: &'a mut HashMap<TargetKey, Target>,
        interner: &mut Interner,
        key: &TargetKey,
        labels: &BTreeMap<String, String>,
    ) -> &'a mut Target {
        let same = |set: &LabelSet| {
            let mut given = labels.iter().filter(|(_, v)| !v.is_empty());
            set.iter().all(|(k1, v1)| {
                given
                    .next()
                    .is_some_and(|(k2, v2)| **k1 == **k2 && **v1 == **v2)
            }) && given.next().is_none()
        };
        let intern = |interner: &mut Interner| {
            let pairs: Vec<_> = labels
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (interner.string(k), interner.string(v)))
                .collect();
            interner.set(&pairs)
        };
        let target = targets.entry(key.clone()).or_insert_with(|| Target {
            labels: Arc::from(Vec::new()),
            series: Vec::new(),
            index: HashMap::default(),
            lines: HashMap::default(),
            snapshots: VecDeque::new(),
            last_scrape: None,
            last_success: None,
            last_error: None,
            failing_since: None,
        });
        if !same(&target.labels) {
            target.labels = intern(interner);
        }
        target
    }

    /// A label of series `s`; the target's labels take precedence, as
    /// Prometheus's target labels do over scraped ones.
    fn label<'a>(&'a self, s: &'a Series, name: &str) -> Option<&'a Arc<str>> {
        find(&self.labels, name).or_else(|| find(&s.labels, name))
    }

    /// Drops snapshots taken at or before `cutoff`.
    fn expire(&mut self, cutoff: i64) {
        while self.snapshots.front().is_some_and(|s| s.at <= cutoff) {
            self.snapshots.pop_front();
        }
    }

    /// Forgets series absent from every retained snapshot. Whether any were.
    fn compact(&mut self) -> bool {
        let mut alive = vec![false; self.series.len()];
        for snap in &self.snapshots {
            for (a, v) in alive.iter_mut().zip(snap.values.iter()) {
                *a |= !v.is_nan();
            }
        }
        if alive.iter().all(|a| *a) {
            return false;
        }
        let keep: Vec<usize> = (0..alive.len()).filter(|i| alive[*i]).collect();
        for snap in &mut self.snapshots {
            snap.values = keep
                .iter()
                .map(|i| snap.values.get(*i).copied().unwrap_or(f64::NAN))
                .collect();
        }
        let old = std::mem::take(&mut self.series);
        self.series = keep.iter().filter_map(|i| old.get(*i).cloned()).collect();
        self.series.shrink_to_fit();
        self.index = self
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i))
            .collect();
        true
    }
}

fn find<'a>(set: &'a LabelSet, name: &str) -> Option<&'a Arc<str>> {
    set.binary_search_by(|(k, _)| (**k).cmp(name))
        .ok()
        .map(|i| &set[i].1)
}

/// `le="1.0"` and `le="1"` are the same bucket; write both as Prometheus
/// 3 normalizes them (`1`, `0.005`, `+Inf`).
fn normalize_le(le: Cow<'_, str>) -> Cow<'_, str> {
    match le.parse::<f64>() {
        Ok(v) if v == f64::INFINITY => Cow::Borrowed("+Inf"),
        Ok(v) if v == f64::NEG_INFINITY => Cow::Borrowed("-Inf"),
        Ok(v) => {
            let s = v.to_string();
            if s == le { le } else { Cow::Owned(s) }
        }
        Err(_) => le,
    }
}

/// Milliseconds since the epoch (negative before it).
fn to_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

fn from_ms(ms: i64) -> SystemTime {
    let d = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

mod eval;

#[cfg(test)]
mod tests;
