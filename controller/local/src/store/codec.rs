//! The JSON inside log records and the snapshot.
//!
//! Objects are stored as the Kubernetes-style documents `Resource::to_json`
//! produces, and read back without re-validating them: a stored object was
//! valid when it was accepted, and a later, stricter release must still start
//! over yesterday's state.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use strand_controller_core::{Kind, Resource, ResourceKey};

/// Bumped on an incompatible change of the snapshot's layout.
const SNAPSHOT_FORMAT: u32 = 1;

/// One change inside a log record.
#[derive(Clone, Debug, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "ops live briefly in short vectors; boxing would buy nothing"
)]
pub(super) enum Op {
    Put(Resource),
    Delete(ResourceKey),
}

/// Where the IP allocators continue, so that a restart does not hand out a
/// just-freed address again sooner than it would have otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Cursors {
    pub service: u128,
    pub pod: u128,
}

/// The snapshot file: every object at log sequence number `seq`.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Snapshot {
    pub format: u32,
    pub seq: u64,
    #[serde(default)]
    pub cursors: Cursors,
    pub objects: Vec<Value>,
}

#[derive(Serialize, Deserialize)]
struct Record {
    seq: u64,
    ops: Vec<OpJson>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum OpJson {
    Put {
        object: Value,
    },
    Delete {
        kind: Kind,
        namespace: String,
        name: String,
    },
}

pub(super) fn encode_record(seq: u64, ops: &[Op]) -> Vec<u8> {
    let ops = ops
        .iter()
        .map(|op| match op {
            Op::Put(r) => OpJson::Put {
                object: r.to_json(),
            },
            Op::Delete(k) => OpJson::Delete {
                kind: k.kind,
                namespace: k.namespace.clone(),
                name: k.name.clone(),
            },
        })
        .collect();
    serde_json::to_vec(&Record { seq, ops }).expect("records always serialize")
}

pub(super) fn decode_record(bytes: &[u8]) -> Result<(u64, Vec<Op>), String> {
    let record: Record = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let ops = record
        .ops
        .into_iter()
        .map(|op| match op {
            OpJson::Put { object } => decode_resource(object).map(Op::Put),
            OpJson::Delete {
                kind,
                namespace,
                name,
            } => Ok(Op::Delete(ResourceKey::new(kind, &namespace, &name))),
        })
        .collect::<Result<_, _>>()?;
    Ok((record.seq, ops))
}

/// The inverse of `Resource::to_json`, without validation.
pub(super) fn decode_resource(value: Value) -> Result<Resource, String> {
    let Value::Object(mut obj) = value else {
        return Err("a stored object is not a JSON object".into());
    };
    let api_version = obj.remove("apiVersion");
    let kind = match obj.remove("kind") {
        Some(Value::String(k)) => k,
        _ => return Err("a stored object has no kind".into()),
    };
    let value = Value::Object(obj);
    let res = match Kind::ALL.into_iter().find(|k| k.name() == kind) {
        Some(Kind::Service) => serde_json::from_value(value).map(Resource::Service),
        Some(Kind::Workload) => serde_json::from_value(value).map(Resource::Workload),
        Some(Kind::Pod) => serde_json::from_value(value).map(Resource::Pod),
        Some(Kind::HttpRoute) => serde_json::from_value(value).map(Resource::HttpRoute),
        Some(Kind::GrpcRoute) => serde_json::from_value(value).map(Resource::GrpcRoute),
        Some(Kind::ServiceProfile) => serde_json::from_value(value).map(Resource::ServiceProfile),
        None => return Err(format!("a stored object has an unknown kind {kind:?}")),
    };
    let mut res = res.map_err(|e| format!("a stored {kind} is not valid: {e}"))?;
    // Which of its kind's API versions it was written as.
    if let Some(v) = api_version.as_ref().and_then(Value::as_str) {
        res.set_api_version(v);
    }
    Ok(res)
}

/// Reads the snapshot; `None` when there is none yet.
pub(super) fn read_snapshot(path: &Path) -> io::Result<Option<Snapshot>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let snap: Snapshot = serde_json::from_slice(&bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    if snap.format != SNAPSHOT_FORMAT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "format {} is not the supported {SNAPSHOT_FORMAT}",
                snap.format
            ),
        ));
    }
    Ok(Some(snap))
}

/// Replaces the snapshot atomically: a synced temporary file renamed over
/// the old one, then the directory synced so that the rename is durable.
pub(super) fn write_snapshot(
    path: &Path,
    seq: u64,
    cursors: Cursors,
    objects: Vec<Value>,
) -> io::Result<()> {
    let snap = Snapshot {
        format: SNAPSHOT_FORMAT,
        seq,
        cursors,
        objects,
    };
    let bytes = serde_json::to_vec(&snap).expect("snapshots always serialize");
    let tmp = path.with_extension("json.tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Makes creations, renames and removals of directory entries durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
