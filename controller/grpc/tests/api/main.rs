//! The servers end to end: a real tonic server on 127.0.0.1:0 over a fake
//! index (over the real one for HTTPRoutes, fed with parsed manifests),
//! asked by the clients of `linkerd2-proxy-api`.

mod support;

mod destination;
mod filters;
mod grpc_routes;
mod lifecycle;
mod policy;
mod profile;
mod retries;
mod routes;

use std::fmt::Debug;
use tonic::Streaming;

/// The next message of a stream, failing the test if none comes within the
/// patience (`STRAND_TEST_PATIENCE_MS`) or the stream ends.
async fn next<T: Debug>(stream: &mut Streaming<T>) -> T {
    match tokio::time::timeout(strand_testkit::patience(), stream.message()).await {
        Ok(Ok(Some(msg))) => msg,
        Ok(Ok(None)) => panic!("the stream ended"),
        Ok(Err(status)) => panic!("the stream failed: {status}"),
        Err(_) => panic!("no message within {:?}", strand_testkit::patience()),
    }
}
