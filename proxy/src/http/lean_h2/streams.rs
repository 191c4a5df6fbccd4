//! Moving a stream's data as the windows allow, ending streams, handing
//! idle upstream connections back, the proxy's own answers, and metrics.

use strand_proxy_h2::frame::{self, Reason};
use tokio::io::{AsyncRead, AsyncWrite};

use super::peer::Peer;
use super::{Conn, Forward, Half, STREAM_UPDATE_AT, Stream};
use crate::errors::ProxyError;
use crate::metrics::{Classification, ResponseLabels};

impl<I: AsyncRead + AsyncWrite + Unpin> Conn<'_, I> {
    /// Sends waiting request heads, and DATA and ends in both directions
    /// as the windows allow; gives back what was passed on; removes
    /// finished streams.
    pub(super) fn flush_streams(&mut self) {
        self.ensure_upstream();
        let mut i = 0;
        while i < self.streams.len() {
            let s = &mut self.streams[i];
            // The request head, once a connection takes it.
            if s.up.is_none()
                && s.head.is_some()
                && let Some(h) = self
                    .held
                    .iter_mut()
                    .find(|h| h.going_away.is_none() && h.open < h.up.peer.max_streams)
            {
                let head = s.head.take().unwrap_or_default();
                let up_id = h.up.next_id;
                h.up.next_id += 2;
                if h.up.next_id > frame::MAX_WINDOW {
                    h.going_away = Some(up_id);
                }
                h.open += 1;
                s.up = Some((h.key, up_id));
                s.req.send_window = i64::from(h.up.peer.initial_window);
                s.rsp.recv_window = i64::from(frame::DEFAULT_WINDOW);
                let end =
                    s.req.end_received && s.req.pending.is_empty() && s.req.trailers.is_none();
                send_headers(&mut h.up.peer, up_id, &head, end);
                if end {
                    s.req.end_sent = true;
                }
            }
            // Request DATA upstream.
            if let Some((key, up_id)) = s.up
                && let Some(h) = self.held.iter_mut().find(|h| h.key == key)
            {
                let sent = flush_half(&mut s.req, &mut h.up.peer, up_id);
                give_back(&mut self.down, &mut s.req, s.id, sent);
            }
            // Response DATA to the client.
            if s.status.is_some() {
                let had_end = s.rsp.end_sent;
                let sent = flush_half(&mut s.rsp, &mut self.down, s.id);
                if let Some((key, up_id)) = s.up
                    && let Some(h) = self.held.iter_mut().find(|h| h.key == key)
                {
                    give_back(&mut h.up.peer, &mut s.rsp, up_id, sent);
                }
                if !had_end && s.rsp.end_sent {
                    Self::record_end(self.fwd, s, true);
                }
            }
            let s = &self.streams[i];
            if s.rsp.end_sent && (s.req.end_sent || s.up.is_none()) {
                let s = self.remove(i);
                if !s.req.end_received {
                    // The response ended first: the client may stop sending.
                    frame::write_rst_stream(&mut self.down.wbuf, s.id, Reason::NO_ERROR);
                }
                self.end_stream_upstream(&s, Reason::CANCEL);
                continue;
            }
            i += 1;
        }
    }

    /// Returns upstream connections with no streams to the pool (or drops
    /// them when they are unfit), once they have written everything.
    pub(super) fn retire(&mut self) {
        let mut i = 0;
        while i < self.held.len() {
            let h = &self.held[i];
            if h.open == 0 && !h.up.peer.wants_flush() {
                let h = self.held.swap_remove(i);
                if h.going_away.is_none() && h.up.peer.block.is_none() {
                    self.fwd.client.lean_h2_pool().put(h.up);
                }
                continue;
            }
            i += 1;
        }
    }

    // --- answers and metrics ---

    /// Answers a stream with the proxy's error response.
    pub(super) fn answer_error(&mut self, s: &mut Stream, e: &ProxyError) {
        let rsp = e.to_response(s.grpc);
        if !e.is_answer() {
            tracing::info!(direction = self.fwd.direction.as_str(), target = %self.fwd.target, error = %e, "request failed");
        }
        let mut block = Vec::with_capacity(128);
        strand_proxy_h2::hpack::Encoder::field(
            b":status",
            rsp.status().as_str().as_bytes(),
            false,
            &mut block,
        );
        for (name, value) in rsp.headers() {
            strand_proxy_h2::hpack::Encoder::field(
                name.as_str().as_bytes(),
                value.as_bytes(),
                false,
                &mut block,
            );
        }
        let code = rsp.status().as_u16();
        let body = rsp.into_body();
        s.head = None;
        s.status = Some(code);
        s.rsp.send_window = i64::from(self.down.initial_window);
        s.rsp.end_received = true;
        s.rsp.pending.extend_from_slice(&body);
        let end = body.is_empty();
        send_headers(&mut self.down, s.id, &block, end);
        s.rsp.end_sent = end;
        // The request's own end no longer matters.
        s.req.end_sent = true;
        Self::record_error(self.fwd, s, e);
    }

    pub(super) fn record_error(fwd: &Forward, s: &mut Stream, e: &ProxyError) {
        s.counted = true;
        let rsp = e.to_response(s.grpc);
        let mut labels = response_labels(s, Classification::Failure, Some(e.kind()));
        labels.status_code = Some(rsp.status().as_u16());
        labels.grpc_status = crate::http::headers::grpc_status(rsp.headers());
        if e.is_answer() {
            labels.classification = Classification::Success;
            labels.error = None;
        }
        fwd.metrics
            .response_latency_cached(&fwd.handles, &labels, s.start);
        fwd.metrics.response_end_cached(&fwd.handles, &labels);
    }

    /// Counts a response's end, for a stream whose response head was
    /// passed on and whose end was not counted yet.
    pub(super) fn record_end(fwd: &Forward, s: &mut Stream, clean: bool) {
        if s.status.is_none() || s.counted {
            return;
        }
        s.counted = true;
        let failed =
            !clean || s.status.is_some_and(|c| c >= 500) || s.grpc_status.is_some_and(|g| g != 0);
        let class = if failed {
            Classification::Failure
        } else {
            Classification::Success
        };
        let labels = response_labels(s, class, None);
        fwd.metrics.response_end_cached(&fwd.handles, &labels);
    }
}

pub(super) fn response_labels(
    s: &Stream,
    classification: Classification,
    error: Option<&'static str>,
) -> ResponseLabels {
    ResponseLabels {
        target: s.target.clone(),
        status_code: s.status,
        classification,
        grpc_status: s.grpc_status,
        error,
    }
}

/// Writes a header block (with the encoder's table-size announcement when
/// due) as HEADERS and CONTINUATION frames.
pub(super) fn send_headers<T: AsyncRead + AsyncWrite + Unpin>(
    to: &mut Peer<T>,
    stream: u32,
    block: &[u8],
    end: bool,
) {
    let mut announce = Vec::new();
    to.encoder.begin(&mut announce);
    if announce.is_empty() {
        frame::write_headers(&mut to.wbuf, stream, block, end, to.max_frame);
    } else {
        announce.extend_from_slice(block);
        frame::write_headers(&mut to.wbuf, stream, &announce, end, to.max_frame);
    }
}

/// Sends what `half` holds to `to` as far as the windows allow, then its
/// trailers or end. Returns the DATA bytes sent (to give back).
pub(super) fn flush_half<T: AsyncRead + AsyncWrite + Unpin>(
    half: &mut Half,
    to: &mut Peer<T>,
    id: u32,
) -> u32 {
    let mut sent = 0;
    let mut at = 0;
    while at < half.pending.len() {
        let room = half
            .send_window
            .min(to.send_window)
            .min(i64::from(to.max_frame));
        if room <= 0 {
            break;
        }
        let n = (half.pending.len() - at).min(room as usize);
        let last = at + n == half.pending.len();
        let end = last && half.end_received && half.trailers.is_none();
        frame::write_data(&mut to.wbuf, id, &half.pending[at..at + n], end);
        at += n;
        half.send_window -= n as i64;
        to.send_window -= n as i64;
        sent += n as u32;
        if end {
            half.end_sent = true;
        }
    }
    half.pending.drain(..at);
    if half.pending.is_empty() && !half.end_sent && half.end_received {
        match half.trailers.take() {
            Some(t) => send_headers(to, id, &t, true),
            None => frame::write_data(&mut to.wbuf, id, &[], true),
        }
        half.end_sent = true;
    }
    sent
}

/// Gives `sent` bytes back to the peer they came from: on the connection
/// always, on the stream (with any padding noted) while it may send more.
pub(super) fn give_back<T: AsyncRead + AsyncWrite + Unpin>(
    from: &mut Peer<T>,
    half: &mut Half,
    id: u32,
    sent: u32,
) {
    if sent == 0 {
        return;
    }
    from.release_recv(sent);
    if half.end_received {
        return;
    }
    half.unacked += sent;
    if half.unacked >= STREAM_UPDATE_AT {
        frame::write_window_update(&mut from.wbuf, id, half.unacked);
        half.recv_window += i64::from(half.unacked);
        half.unacked = 0;
    }
}
