//! The response body the proxy sends to clients: an upstream body that
//! records `response_total` when it ends (reading `grpc-status` from its
//! trailers), or a body the proxy made itself. And the upstream body
//! itself: from a hyper HTTP/1 connection or an h2 one.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::Forward;
use super::headers;
use crate::client::{H2Body, StickyH1};
use crate::metrics::{Classification, ResponseLabels};

#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "one per response, moved once; boxing would allocate per response"
)]
pub enum ProxyBody {
    Upstream {
        inner: UpstreamBody,
        end: Option<End>,
    },
    Full {
        data: Option<Bytes>,
    },
}

/// A response body as an upstream connection delivers it.
#[derive(Debug)]
pub enum UpstreamBody {
    /// From an HTTP/1 connection (hyper).
    H1(Incoming),
    /// From an HTTP/2 connection (`client::h2`).
    H2(H2Body),
}

/// Why an upstream body failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamBodyError {
    #[error(transparent)]
    H1(hyper::Error),
    #[error(transparent)]
    H2(h2::Error),
}

/// What happens when an upstream body ends: metrics, and the HTTP/1
/// upstream connection's return to the pool.
#[derive(Debug)]
pub struct End {
    /// The connection's metrics and their handles.
    forward: Arc<Forward>,
    labels: ResponseLabels,
    h1: Option<Arc<StickyH1>>,
    /// Raised when the upstream body fails, to reset an HTTP/1 client
    /// connection (see `io::ResetOnDrop`).
    reset_client: Option<Arc<AtomicBool>>,
    /// The taps that took this request.
    tap: Option<Box<crate::tap::Tapped>>,
    /// A ServiceProfile route's response count, when the request had one.
    route: Option<super::profile::RouteResponse>,
    /// The proxy's span, when the request was traced.
    span: Option<Box<crate::trace::ActiveSpan>>,
}

// === impl ProxyBody ===

impl ProxyBody {
    pub fn upstream(
        inner: UpstreamBody,
        forward: Arc<Forward>,
        labels: ResponseLabels,
        h1: Option<Arc<StickyH1>>,
        reset_client: Option<Arc<AtomicBool>>,
    ) -> Self {
        ProxyBody::Upstream {
            inner,
            end: Some(End {
                forward,
                labels,
                h1,
                reset_client,
                tap: None,
                route: None,
                span: None,
            }),
        }
    }

    /// Counts the response on its ServiceProfile route when it ends.
    pub fn with_route(mut self, route: Option<super::profile::RouteResponse>) -> Self {
        if let ProxyBody::Upstream { end: Some(e), .. } = &mut self {
            e.route = route;
        }
        self
    }

    /// Ends the request's span when the body ends.
    pub fn with_span(mut self, span: Option<crate::trace::ActiveSpan>) -> Self {
        if let ProxyBody::Upstream { end: Some(e), .. } = &mut self {
            e.span = span.map(Box::new);
        }
        self
    }

    /// Reports the body's bytes and end to the taps that took its request.
    pub fn with_tap(mut self, tap: Option<Box<crate::tap::Tapped>>) -> Self {
        if let ProxyBody::Upstream { end: Some(e), .. } = &mut self {
            e.tap = tap;
        }
        self
    }

    pub fn full(data: Bytes) -> Self {
        ProxyBody::Full {
            data: if data.is_empty() { None } else { Some(data) },
        }
    }
}

// === impl UpstreamBody ===

impl From<Incoming> for UpstreamBody {
    fn from(body: Incoming) -> Self {
        UpstreamBody::H1(body)
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = UpstreamBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamBodyError>>> {
        match self.get_mut() {
            UpstreamBody::H1(b) => Pin::new(b).poll_frame(cx).map_err(UpstreamBodyError::H1),
            UpstreamBody::H2(b) => Pin::new(b).poll_frame(cx).map_err(UpstreamBodyError::H2),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::H1(b) => b.is_end_stream(),
            UpstreamBody::H2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::H1(b) => b.size_hint(),
            UpstreamBody::H2(b) => b.size_hint(),
        }
    }
}

// === impl ProxyBody (Body) ===

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = UpstreamBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamBodyError>>> {
        match self.get_mut() {
            ProxyBody::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ProxyBody::Upstream { inner, end } => {
                let res = std::task::ready!(Pin::new(inner).poll_frame(cx));
                match &res {
                    Some(Ok(frame)) => {
                        if let Some(e) = end.as_mut() {
                            if let Some(trailers) = frame.trailers_ref() {
                                e.labels.grpc_status =
                                    headers::grpc_status(trailers).or(e.labels.grpc_status);
                                if let Some(t) = &mut e.tap {
                                    t.trailers(trailers);
                                }
                            } else if let (Some(t), Some(data)) = (&mut e.tap, frame.data_ref()) {
                                t.data(data.len());
                            }
                        }
                    }
                    Some(Err(err)) => {
                        if let Some(e) = end.take() {
                            if let Some(flag) = &e.reset_client {
                                flag.store(true, Ordering::Release);
                            }
                            e.finish(false, Some(reset_reason(err)));
                        }
                    }
                    None => {
                        if let Some(e) = end.take() {
                            e.finish(true, None);
                        }
                    }
                }
                Poll::Ready(res)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full { data } => data.is_none(),
            ProxyBody::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ProxyBody::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // Reached with `end` still set when the body was never polled to its
        // end: an empty body hyper did not need to poll (clean), or a client
        // that went away mid-stream (not clean).
        if let ProxyBody::Upstream { inner, end } = self
            && let Some(e) = end.take()
        {
            let clean = inner.is_end_stream();
            e.finish(clean, (!clean).then_some(h2::Reason::CANCEL));
        }
    }
}

// === impl End ===

/// The HTTP/2 reason an upstream body failed with, for taps.
fn reset_reason(err: &UpstreamBodyError) -> h2::Reason {
    let h2 = match err {
        UpstreamBodyError::H1(e) => {
            std::error::Error::source(e).and_then(|s| s.downcast_ref::<h2::Error>())
        }
        UpstreamBodyError::H2(e) => Some(e),
    };
    h2.and_then(h2::Error::reason)
        .unwrap_or(h2::Reason::INTERNAL_ERROR)
}

impl End {
    /// Records the response's end; `reset` is how it failed, for taps.
    fn finish(mut self, clean: bool, reset: Option<h2::Reason>) {
        if let Some(t) = self.tap.take() {
            t.response_end(reset);
        }
        let l = &mut self.labels;
        let failed = !clean
            || l.status_code.is_some_and(|s| s >= 500)
            || l.grpc_status.is_some_and(|g| g != 0);
        l.classification = if failed {
            Classification::Failure
        } else {
            Classification::Success
        };
        if let (Some(route), Some(status)) = (self.route.take(), l.status_code) {
            route.finish(status, l.grpc_status, clean);
        }
        if let (Some(span), Some(tracer)) = (self.span.take(), &self.forward.tracer) {
            let error = if !clean {
                Some("response stream failed")
            } else if l.grpc_status.is_some_and(|g| g != 0) {
                Some("grpc error")
            } else {
                None
            };
            tracer.finish(*span, l.status_code, error);
        }
        let f = &self.forward;
        f.metrics.response_end_cached(&f.handles, &self.labels);
        if clean && let Some(h1) = &self.h1 {
            h1.response_done();
        }
    }
}
