//! The body of a request the proxy sends upstream: the client's, streamed
//! as it arrives, or one read in full so that a retry can send it again.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

#[derive(Debug)]
pub enum RequestBody {
    /// The client's body, streamed.
    Streaming(Incoming),
    /// A body read in full (and its trailers), sent as one frame.
    Buffered {
        data: Option<Bytes>,
        trailers: Option<HeaderMap>,
    },
    /// The client's body, of which `prefix` was read already (to see
    /// whether it could be kept for retries): `prefix`, then the rest.
    Prefixed {
        prefix: Option<Bytes>,
        rest: Incoming,
    },
}

impl RequestBody {
    /// A buffered body: `data` (if not empty), then `trailers`.
    pub fn buffered(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        RequestBody::Buffered {
            data: (!data.is_empty()).then_some(data),
            trailers,
        }
    }
}

impl From<Incoming> for RequestBody {
    fn from(body: Incoming) -> Self {
        RequestBody::Streaming(body)
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Streaming(b) => Pin::new(b).poll_frame(cx),
            RequestBody::Buffered { data, trailers } => {
                if let Some(d) = data.take() {
                    return Poll::Ready(Some(Ok(Frame::data(d))));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
            RequestBody::Prefixed { prefix, rest } => match prefix.take() {
                Some(d) => Poll::Ready(Some(Ok(Frame::data(d)))),
                None => Pin::new(rest).poll_frame(cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Streaming(b) => b.is_end_stream(),
            RequestBody::Buffered { data, trailers } => data.is_none() && trailers.is_none(),
            RequestBody::Prefixed { prefix, rest } => prefix.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Streaming(b) => b.size_hint(),
            RequestBody::Buffered { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            RequestBody::Prefixed { prefix, rest } => {
                let before = prefix.as_ref().map_or(0, |d| d.len() as u64);
                let hint = rest.size_hint();
                let mut sum = SizeHint::new();
                sum.set_lower(hint.lower() + before);
                if let Some(upper) = hint.upper() {
                    sum.set_upper(upper + before);
                }
                sum
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    #[tokio::test]
    async fn a_buffered_body_sends_its_data_then_its_trailers() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let body = RequestBody::buffered(Bytes::from_static(b"hello"), Some(trailers));
        assert_eq!(body.size_hint().exact(), Some(5));
        assert!(!body.is_end_stream());
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
        assert_eq!(collected.to_bytes(), "hello");
        let empty = RequestBody::buffered(Bytes::new(), None);
        assert!(empty.is_end_stream());
        assert_eq!(empty.size_hint().exact(), Some(0));
    }
}
