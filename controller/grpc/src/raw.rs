//! gRPC server streaming by hand, for messages that are encoded once and
//! sent on many streams.
//!
//! Tonic's generated servers encode every message of every stream into that
//! stream's own buffer. For `Destination/Get`, where 1,000 streams send the
//! same 250 KB `Add`s, that is 1,000 encodings of each and, since the buffer
//! keeps the capacity of the largest message, ~250 KB held per idle stream.
//! Here a message is framed once ([`frame`]: the 5-byte gRPC prefix and the
//! protobuf) into [`Bytes`], and each stream's response body yields clones of
//! it, which hyper and h2 queue and write without copying.
//!
//! ```text
//!   Update ──frame()──► Bytes ─┬─ clone ─► body of stream 1 ──► DATA frames ... grpc-status trailers
//!                              └─ clone ─► body of stream n ──►
//! ```
//!
//! The request side is the usual unary message: read whole (bounded), one
//! uncompressed message, decoded with prost. Errors before the stream starts
//! are "trailers-only" responses, as tonic sends them.

use crate::stream::ResponseStream;
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::Frame;
use http_body_util::{BodyExt, Limited};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tonic::Status;
use tonic::body::Body;

/// The gRPC message prefix: a compression flag and a big-endian length.
const PREFIX_LEN: usize = 5;

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// The largest request body read.
///
/// A `GetDestination` is a scheme, a path (a DNS name of at most 253 bytes
/// and a port) and a context token (a small JSON object naming the client's
/// namespace, node and pod): well under 1 KB. 64 KiB leaves room for any
/// honest client while bounding what a stream can make the server buffer.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// A response body yielding pre-framed messages, then the `grpc-status`
/// trailers (`0` when the stream ends, or the stream's error).
pub(crate) struct FramesBody {
    stream: Option<ResponseStream<Bytes>>,
}

/// One message with its gRPC prefix (uncompressed), ready to be sent as is.
pub(crate) fn frame(msg: &impl prost::Message) -> Bytes {
    let len = msg.encoded_len();
    let mut buf = BytesMut::with_capacity(PREFIX_LEN + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).expect("a message is under 4 GiB (updates are chunked)"));
    msg.encode(&mut buf)
        .expect("the buffer was sized for the message");
    buf.freeze()
}

/// Reads the single message of a unary request.
pub(crate) async fn read_unary<M: prost::Message + Default>(body: Body) -> Result<M, Status> {
    let bytes = Limited::new(body, MAX_REQUEST_BYTES)
        .collect()
        .await
        .map_err(|e| match e.downcast::<Status>() {
            Ok(status) => *status,
            Err(e) => Status::out_of_range(format!("request: {e}")),
        })?
        .to_bytes();
    let Some((prefix, msg)) = bytes.split_at_checked(PREFIX_LEN) else {
        return Err(Status::internal("missing request message"));
    };
    match prefix[0] {
        0 => {}
        1 => {
            return Err(Status::unimplemented(
                "compressed requests are not supported",
            ));
        }
        flag => return Err(Status::internal(format!("invalid compression flag {flag}"))),
    }
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]);
    if usize::try_from(len).ok() != Some(msg.len()) {
        return Err(Status::internal(format!(
            "expected one request message of {len} bytes, got {} bytes",
            msg.len()
        )));
    }
    M::decode(msg).map_err(|e| Status::internal(format!("invalid request message: {e}")))
}

/// A `200` response streaming `frames`.
pub(crate) fn streaming(frames: ResponseStream<Bytes>) -> http::Response<Body> {
    let mut rsp = http::Response::new(Body::new(FramesBody {
        stream: Some(frames),
    }));
    rsp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    rsp
}

// === impl FramesBody ===

impl http_body::Body for FramesBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let Some(stream) = self.stream.as_mut() else {
            return Poll::Ready(None);
        };
        let status = match ready!(stream.as_mut().poll_next(cx)) {
            Some(Ok(bytes)) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
            Some(Err(status)) => status,
            None => Status::ok(""),
        };
        // Release the stream (its watch) now rather than when hyper drops us.
        self.stream = None;
        let mut trailers = HeaderMap::new();
        if let Err(status) = status.add_header(&mut trailers) {
            // Only a message that cannot be a header value fails; the code
            // alone still tells the client what happened.
            tracing::debug!(%status, "status message dropped from trailers");
            trailers.insert(GRPC_STATUS, HeaderValue::from(status.code() as i32));
        }
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.stream.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use linkerd2_proxy_api::destination::GetDestination;

    fn get(path: &str) -> GetDestination {
        GetDestination {
            path: path.into(),
            ..Default::default()
        }
    }

    async fn read(bytes: Vec<u8>) -> Result<GetDestination, Status> {
        read_unary(Body::new(Full::new(Bytes::from(bytes)))).await
    }

    #[tokio::test]
    async fn a_framed_message_reads_back() {
        let msg = get("web.default.svc.cluster.local:80");
        let framed = frame(&msg);
        assert_eq!(framed[0], 0, "uncompressed");
        assert_eq!(framed.len(), PREFIX_LEN + prost::Message::encoded_len(&msg));
        assert_eq!(read(framed.to_vec()).await.expect("valid"), msg);
    }

    #[tokio::test]
    async fn bad_requests_are_refused() {
        let framed = frame(&get("web.default.svc.cluster.local:80")).to_vec();
        let mut compressed = framed.clone();
        compressed[0] = 1;
        let two = [framed.clone(), framed.clone()].concat();
        let cases: [(&str, Vec<u8>, tonic::Code); 5] = [
            ("empty", vec![], tonic::Code::Internal),
            ("compressed", compressed, tonic::Code::Unimplemented),
            (
                "truncated",
                framed[..framed.len() - 1].to_vec(),
                tonic::Code::Internal,
            ),
            ("two messages", two, tonic::Code::Internal),
            (
                "too long",
                vec![0; MAX_REQUEST_BYTES + 1],
                tonic::Code::OutOfRange,
            ),
        ];
        for (name, bytes, code) in cases {
            let status = read(bytes).await.expect_err(name);
            assert_eq!(status.code(), code, "{name}: {status}");
        }
    }

    #[tokio::test]
    async fn the_body_ends_with_the_status() {
        let frames: ResponseStream<Bytes> = Box::pin(futures_util::stream::iter([
            Ok(Bytes::from_static(b"one")),
            Err(Status::unavailable("going away")),
        ]));
        let mut body = FramesBody {
            stream: Some(frames),
        };
        let first = body.frame().await.expect("a frame").expect("infallible");
        assert_eq!(first.into_data().expect("data"), "one");
        let last = body.frame().await.expect("a frame").expect("infallible");
        let trailers = last.into_trailers().expect("trailers");
        assert_eq!(trailers["grpc-status"], "14");
        assert_eq!(trailers["grpc-message"], "going%20away");
        assert!(http_body::Body::is_end_stream(&body));
        assert!(body.frame().await.is_none());
    }
}
