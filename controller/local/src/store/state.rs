//! The in-memory state and the pure planning of changes against it.
//!
//! Planning decides everything (actions, generations, addresses) without
//! mutating; `commit` then applies the planned ops, both for a live change
//! once its log record is durable and for a record replayed at start.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};
use strand_controller_core::{
    FieldError, Kind, ManifestError, Pod, PodStatus, Resource, ResourceKey,
};

use super::codec::{Cursors, Op};
use super::ipam::{IpPool, IpProblem};
use super::{Action, Applied, ApplyError, Change, StatusError, WatchEvent};
use crate::config::StoreConfig;

#[derive(Debug)]
pub(super) struct State {
    objects: BTreeMap<ResourceKey, Resource>,
    /// The sequence number of the last committed record.
    seq: u64,
    services: IpPool,
    pods: IpPool,
}

/// What one apply will do.
#[derive(Debug)]
pub(super) struct Plan {
    pub applied: Vec<Applied>,
    pub ops: Vec<Op>,
}

/// What a document asks of `spec.clusterIP`.
enum VipRequest {
    Unspecified,
    Headless,
    Ip(IpAddr),
}

// === impl State ===

impl State {
    pub(super) fn new(config: &StoreConfig) -> Self {
        Self {
            objects: BTreeMap::new(),
            seq: 0,
            services: IpPool::new(config.service_cidr, "service CIDR"),
            pods: IpPool::new(config.pod_cidr, "pod CIDR"),
        }
    }

    pub(super) fn seq(&self) -> u64 {
        self.seq
    }

    pub(super) fn get(&self, key: &ResourceKey) -> Option<&Resource> {
        self.objects.get(key)
    }

    /// Objects of one kind sorted by namespace, then name.
    pub(super) fn list(&self, kind: Kind, namespace: Option<&str>) -> Vec<Resource> {
        let from = ResourceKey::new(kind, namespace.unwrap_or(""), "");
        self.objects
            .range(from..)
            .take_while(|(k, _)| k.kind == kind && namespace.is_none_or(|ns| k.namespace == ns))
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Every object, by kind, namespace and name.
    pub(super) fn objects(&self) -> impl Iterator<Item = &Resource> {
        self.objects.values()
    }

    pub(super) fn cursors(&self) -> Cursors {
        Cursors {
            service: self.services.cursor(),
            pod: self.pods.cursor(),
        }
    }

    /// Loads a snapshot into an empty state.
    pub(super) fn load(&mut self, seq: u64, cursors: Cursors, objects: Vec<Resource>) {
        self.commit(seq, objects.into_iter().map(Op::Put).collect());
        self.services.set_cursor(cursors.service);
        self.pods.set_cursor(cursors.pod);
    }

    pub(super) fn plan_apply(
        &self,
        docs: Vec<(usize, Resource)>,
        now: &str,
    ) -> Result<Plan, ApplyError> {
        let invalid = |doc: usize, key: &ResourceKey, e: FieldError| {
            ApplyError::Invalid(manifest_error(doc, key, e))
        };
        let mut seen: HashMap<ResourceKey, usize> = HashMap::new();
        for (doc, r) in &docs {
            if let Some(first) = seen.insert(r.key(), *doc) {
                let e = FieldError::new(
                    "metadata.name",
                    format!("{} is also defined by document {first}", r.key()),
                );
                return Err(invalid(*doc, &r.key(), e));
            }
        }

        // Addresses asked for explicitly are checked (and claimed) before any
        // is allocated, so an allocation never takes one a later document names.
        let mut vips: HashMap<IpAddr, usize> = HashMap::new();
        let mut pod_ips: HashMap<IpAddr, usize> = HashMap::new();
        let mut want_vip = Vec::new();
        let mut want_pod_ip = Vec::new();
        let mut docs = docs;
        for (i, (doc, r)) in docs.iter_mut().enumerate() {
            let key = r.key();
            let old = self.objects.get(&key);
            let conflict = |p: IpProblem, field: &str| match p {
                IpProblem::Invalid(m) => invalid(*doc, &key, FieldError::new(field, m)),
                IpProblem::Taken(m) => {
                    ApplyError::Conflict(manifest_error(*doc, &key, FieldError::new(field, m)))
                }
            };
            match r {
                Resource::Service(s) => {
                    let old_vip = match old {
                        Some(Resource::Service(o)) => o.spec.cluster_ip.clone(),
                        _ => None,
                    };
                    let request = match s.spec.cluster_ip.as_deref() {
                        None | Some("") => VipRequest::Unspecified,
                        Some("None") => VipRequest::Headless,
                        Some(ip) => VipRequest::Ip(ip.parse().map_err(|_| {
                            let e = FieldError::new("spec.clusterIP", "is not an IP address");
                            invalid(*doc, &key, e)
                        })?),
                    };
                    let immutable = |old: &str| {
                        let e = FieldError::new(
                            "spec.clusterIP",
                            format!(
                                "may not change once set (it is {old:?}); delete the service to change it"
                            ),
                        );
                        invalid(*doc, &key, e)
                    };
                    match (request, old_vip) {
                        (VipRequest::Unspecified, Some(old)) => s.spec.cluster_ip = Some(old),
                        (VipRequest::Unspecified, None) => want_vip.push(i),
                        (VipRequest::Headless, Some(old)) if old != "None" => {
                            return Err(immutable(&old));
                        }
                        (VipRequest::Headless, _) => {}
                        (VipRequest::Ip(ip), Some(old))
                            if old.parse::<IpAddr>().ok() != Some(ip) =>
                        {
                            return Err(immutable(&old));
                        }
                        (VipRequest::Ip(ip), _) => {
                            self.services
                                .check(ip, &key, &vips)
                                .map_err(|p| conflict(p, "spec.clusterIP"))?;
                            vips.insert(ip, *doc);
                            s.spec.cluster_ip = Some(ip.to_string());
                        }
                    }
                }
                Resource::Pod(p) => match old {
                    // Status belongs to the status subresource once a pod exists.
                    Some(Resource::Pod(o)) => p.status = o.status.clone(),
                    _ => match p.status.pod_ip {
                        Some(ip) => {
                            self.pods
                                .check(ip, &key, &pod_ips)
                                .map_err(|p| conflict(p, "status.podIP"))?;
                            pod_ips.insert(ip, *doc);
                        }
                        None => want_pod_ip.push(i),
                    },
                },
                Resource::Workload(w) => {
                    if let Some(Resource::Workload(o)) = old {
                        w.status = o.status.clone();
                    }
                }
                Resource::HttpRoute(_) | Resource::GrpcRoute(_) | Resource::ServiceProfile(_) => {}
            }
        }

        let mut taken: HashSet<IpAddr> = vips.into_keys().collect();
        let mut cursor = self.services.cursor();
        for i in want_vip {
            let (doc, r) = &mut docs[i];
            let key = r.key();
            let ip = self
                .services
                .allocate(&mut cursor, &taken)
                .map_err(|p| ip_error(*doc, &key, "spec.clusterIP", p))?;
            taken.insert(ip);
            if let Resource::Service(s) = r {
                s.spec.cluster_ip = Some(ip.to_string());
            }
        }
        let mut taken: HashSet<IpAddr> = pod_ips.into_keys().collect();
        let mut cursor = self.pods.cursor();
        for i in want_pod_ip {
            let (doc, r) = &mut docs[i];
            let key = r.key();
            let ip = self
                .pods
                .allocate(&mut cursor, &taken)
                .map_err(|p| ip_error(*doc, &key, "status.podIP", p))?;
            taken.insert(ip);
            if let Resource::Pod(p) = r {
                p.status.pod_ip = Some(ip);
            }
        }

        let mut plan = Plan {
            applied: Vec::with_capacity(docs.len()),
            ops: Vec::new(),
        };
        for (_, mut r) in docs {
            let key = r.key();
            let action = match self.objects.get(&key) {
                None => {
                    let meta = r.meta_mut();
                    meta.generation = 1;
                    meta.creation_timestamp = Some(now.to_string());
                    Action::Created
                }
                Some(old) => {
                    let meta = r.meta_mut();
                    meta.generation = old.meta().generation;
                    meta.creation_timestamp = old.meta().creation_timestamp.clone();
                    if &r == old {
                        Action::Unchanged
                    } else {
                        r.meta_mut().generation += 1;
                        Action::Configured
                    }
                }
            };
            plan.applied.push(Applied {
                kind: key.kind,
                namespace: key.namespace,
                name: key.name,
                action,
            });
            if action != Action::Unchanged {
                plan.ops.push(Op::Put(r));
            }
        }
        Ok(plan)
    }

    /// The status subresource: replaces `status`, keeping the pod IP unless
    /// a new one is given. No op when nothing changes.
    pub(super) fn plan_status(
        &self,
        key: &ResourceKey,
        mut status: PodStatus,
    ) -> Result<(Pod, Option<Op>), StatusError> {
        let Some(Resource::Pod(old)) = self.objects.get(key) else {
            return Err(StatusError::NotFound(key.clone()));
        };
        match status.pod_ip {
            None => status.pod_ip = old.status.pod_ip,
            Some(ip) if Some(ip) != old.status.pod_ip => {
                self.pods
                    .check(ip, key, &HashMap::new())
                    .map_err(|p| match p {
                        IpProblem::Invalid(m) => StatusError::Invalid {
                            key: key.clone(),
                            error: FieldError::new("status.podIP", m),
                        },
                        IpProblem::Taken(m) => StatusError::Conflict {
                            key: key.clone(),
                            error: FieldError::new("status.podIP", m),
                        },
                    })?;
            }
            Some(_) => {}
        }
        if status == old.status {
            return Ok((old.clone(), None));
        }
        let mut pod = old.clone();
        pod.status = status;
        Ok((pod.clone(), Some(Op::Put(Resource::Pod(pod)))))
    }

    /// Applies ops as record `seq`; returns the events to publish.
    pub(super) fn commit(&mut self, seq: u64, ops: Vec<Op>) -> Vec<WatchEvent> {
        self.seq = self.seq.max(seq);
        let mut events = Vec::with_capacity(ops.len());
        for op in ops {
            let change = match op {
                Op::Put(r) => {
                    let key = r.key();
                    if let Some(old) = self.objects.get(&key) {
                        let old = old.clone();
                        self.release_ips(&old);
                    }
                    self.reserve_ips(&r);
                    match self.objects.insert(key, r.clone()) {
                        Some(_) => Change::Modified(r),
                        None => Change::Added(r),
                    }
                }
                Op::Delete(key) => match self.objects.remove(&key) {
                    Some(old) => {
                        self.release_ips(&old);
                        Change::Deleted(old)
                    }
                    None => continue,
                },
            };
            events.push(WatchEvent {
                resource_version: seq,
                change,
            });
        }
        events
    }

    fn reserve_ips(&mut self, r: &Resource) {
        let key = r.key();
        match r {
            Resource::Service(s) => {
                if let Some(ip) = s.cluster_ip() {
                    self.services.reserve(ip, &key);
                }
            }
            Resource::Pod(p) => {
                if let Some(ip) = p.status.pod_ip {
                    self.pods.reserve(ip, &key);
                }
            }
            Resource::Workload(_)
            | Resource::HttpRoute(_)
            | Resource::GrpcRoute(_)
            | Resource::ServiceProfile(_) => {}
        }
    }

    fn release_ips(&mut self, r: &Resource) {
        let key = r.key();
        match r {
            Resource::Service(s) => {
                if let Some(ip) = s.cluster_ip() {
                    self.services.release(ip, &key);
                }
            }
            Resource::Pod(p) => {
                if let Some(ip) = p.status.pod_ip {
                    self.pods.release(ip, &key);
                }
            }
            Resource::Workload(_)
            | Resource::HttpRoute(_)
            | Resource::GrpcRoute(_)
            | Resource::ServiceProfile(_) => {}
        }
    }
}

fn manifest_error(document: usize, key: &ResourceKey, e: FieldError) -> ManifestError {
    ManifestError {
        document,
        resource: Some(key.to_string()),
        field: e.field,
        reason: e.reason,
    }
}

fn ip_error(doc: usize, key: &ResourceKey, field: &str, p: IpProblem) -> ApplyError {
    match p {
        IpProblem::Invalid(m) => {
            ApplyError::Invalid(manifest_error(doc, key, FieldError::new(field, m)))
        }
        IpProblem::Taken(m) => {
            ApplyError::Conflict(manifest_error(doc, key, FieldError::new(field, m)))
        }
    }
}

/// RFC 3339 in UTC with second precision, e.g. `2024-05-01T12:00:00Z`.
pub(super) fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 >= 0.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}
