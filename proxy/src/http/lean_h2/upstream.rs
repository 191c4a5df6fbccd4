//! Upstream connections: taking one from the pool or connecting, frames
//! from the upstream (response heads, DATA, trailers, resets, GOAWAY), and
//! what happens to streams when an upstream connection fails.

use std::time::Instant;

use strand_proxy_h2::frame::{self, Frame, Reason};
use strand_proxy_h2::hpack::HeaderList;
use tokio::io::{AsyncRead, AsyncWrite};

use super::fields::{self, Kind};
use super::peer::{CONN_WINDOW, Peer};
use super::streams::{response_labels, send_headers};
use super::{Conn, Held, Stream, Upstream};
use crate::client::UpstreamIo;
use crate::errors::ProxyError;
use crate::metrics::{Classification, TcpConn};

impl<I: AsyncRead + AsyncWrite + Unpin> Conn<'_, I> {
    /// Gets streams waiting for a connection one: a held one that takes new
    /// streams, a pooled one, or a new one.
    pub(super) fn ensure_upstream(&mut self) {
        if self
            .streams
            .iter()
            .all(|s| s.up.is_some() || s.head.is_none())
        {
            return;
        }
        if self.held.iter().any(|h| h.going_away.is_none()) || self.connecting.is_some() {
            return;
        }
        let fwd = self.fwd;
        if let Some(up) = fwd.client.lean_h2_pool().take(fwd.target) {
            self.adopt(up);
            return;
        }
        let client = fwd.client.clone();
        let addr = fwd.target;
        let tls = fwd.tls.clone();
        self.connecting = Some(Box::pin(async move {
            let (io, metrics) = client.connector().connect(addr, tls).await?;
            Ok(Upstream::new(io, addr, metrics))
        }));
    }

    pub(super) fn connected(&mut self, res: Result<Box<Upstream>, ProxyError>) {
        match res {
            Ok(up) => self.adopt(up),
            Err(e) => {
                // Every stream waiting for a connection gets the error.
                let mut waiting = Vec::new();
                let mut i = 0;
                while i < self.streams.len() {
                    if self.streams[i].up.is_none() && self.streams[i].head.is_some() {
                        waiting.push(self.streams.swap_remove(i));
                    } else {
                        i += 1;
                    }
                }
                for mut s in waiting {
                    self.answer_error(&mut s, &e);
                    self.streams.push(s);
                }
            }
        }
    }

    pub(super) fn adopt(&mut self, up: Box<Upstream>) {
        let key = self.next_key;
        self.next_key = self.next_key.wrapping_add(1);
        self.held.push(Held {
            key,
            up,
            open: 0,
            going_away: None,
        });
        // A pooled connection may hold frames its server sent while it
        // waited (a PING, a GOAWAY): they count before any new stream.
        let i = self.held.len() - 1;
        if let Err(e) = self.upstream_frames(i) {
            self.upstream_failed(i, &e);
        }
    }

    pub(super) fn upstream_frames(&mut self, i: usize) -> Result<(), String> {
        loop {
            let h = &mut self.held[i];
            let Some(f) = h.up.peer.next_frame().map_err(|e| e.to_string())? else {
                return Ok(());
            };
            let rbuf = h.up.peer.take_rbuf();
            let res = match f.parse(&rbuf) {
                Ok(frame) => self.upstream_frame(i, frame),
                Err(frame::Error::Stream { stream, reason, .. }) => {
                    self.reset_upstream_stream(i, stream, reason);
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            };
            self.held[i].up.peer.put_rbuf(rbuf);
            res?;
        }
    }

    pub(super) fn upstream_frame(&mut self, i: usize, f: Frame<'_>) -> Result<(), String> {
        let h = &mut self.held[i];
        h.up.peer.check_block_open(&f).map_err(|e| e.to_string())?;
        match f {
            Frame::Headers { .. } | Frame::Continuation { .. } => {
                let complete =
                    h.up.peer
                        .header_frame(f, self.max_list)
                        .map_err(|e| e.to_string())?;
                if let Some((stream, end_stream, block)) = complete {
                    self.upstream_headers(i, stream, end_stream, &block)?;
                }
            }
            Frame::Data {
                stream,
                end_stream,
                data,
                flow_len,
            } => {
                h.up.peer.take_recv(flow_len).map_err(|e| e.to_string())?;
                let key = h.key;
                let Some(si) = self.find_up(key, stream) else {
                    self.held[i].up.peer.release_recv(flow_len);
                    return Ok(());
                };
                let s = &mut self.streams[si];
                s.rsp.recv_window -= i64::from(flow_len);
                if s.rsp.end_received
                    || s.status.is_none()
                    || s.rsp.recv_window < 0
                    || !s.rsp.count(data.len(), end_stream)
                {
                    self.held[i].up.peer.release_recv(flow_len);
                    self.reset_upstream_stream(i, stream, Reason::PROTOCOL_ERROR);
                    return Ok(());
                }
                let padding = flow_len - data.len() as u32;
                s.rsp.unacked += padding;
                s.rsp.pending.extend_from_slice(data);
                s.rsp.end_received = end_stream;
                self.held[i].up.peer.release_recv(padding);
            }
            Frame::RstStream { stream, reason } => {
                let key = h.key;
                if let Some(si) = self.find_up(key, stream) {
                    let s = self.remove(si);
                    self.upstream_reset(s, reason);
                }
            }
            Frame::Settings(s) => {
                let delta = h.up.peer.apply_settings(&s);
                let key = h.key;
                if delta != 0 {
                    for st in self
                        .streams
                        .iter_mut()
                        .filter(|s| s.up.is_some_and(|u| u.0 == key))
                    {
                        st.req.send_window += delta;
                    }
                }
            }
            Frame::Ping { ack, data } => {
                if !ack {
                    frame::write_ping(&mut h.up.peer.wbuf, true, data);
                }
            }
            Frame::GoAway {
                last_stream,
                reason,
                ..
            } => {
                h.going_away = Some(last_stream);
                let key = h.key;
                tracing::debug!(target = %self.fwd.target, %reason, last_stream, "upstream sent GOAWAY");
                // Streams it never processed are refused: the client may
                // retry them.
                let mut j = 0;
                while j < self.streams.len() {
                    if self.streams[j]
                        .up
                        .is_some_and(|(k, id)| k == key && id > last_stream)
                    {
                        let s = self.remove(j);
                        self.upstream_reset(s, Reason::REFUSED_STREAM);
                    } else {
                        j += 1;
                    }
                }
                self.ensure_upstream();
            }
            Frame::WindowUpdate {
                stream: 0,
                increment,
            } => {
                h.up.peer
                    .grow_send_window(increment)
                    .map_err(|e| e.to_string())?;
            }
            Frame::WindowUpdate { stream, increment } => {
                let key = h.key;
                if let Some(si) = self.find_up(key, stream) {
                    self.streams[si].req.send_window += i64::from(increment);
                }
            }
            Frame::PushPromise { .. } => return Err("PUSH_PROMISE with push disabled".into()),
            Frame::SettingsAck | Frame::Priority | Frame::Unknown => {}
        }
        Ok(())
    }

    pub(super) fn upstream_headers(
        &mut self,
        i: usize,
        stream: u32,
        end_stream: bool,
        block: &[u8],
    ) -> Result<(), String> {
        let mut list = std::mem::take(&mut self.list);
        let res = self.held[i]
            .up
            .peer
            .decoder
            .decode(block, &mut list, self.max_list)
            .map_err(|e| e.to_string());
        let res = res.map(|()| self.upstream_head(i, stream, end_stream, &list));
        self.list = list;
        res
    }

    pub(super) fn upstream_head(
        &mut self,
        i: usize,
        stream: u32,
        end_stream: bool,
        list: &HeaderList,
    ) {
        let key = self.held[i].key;
        let Some(si) = self.find_up(key, stream) else {
            return;
        };
        let s = &mut self.streams[si];
        let kind = if s.status.is_some() {
            Kind::Trailers
        } else {
            Kind::Response
        };
        let mut block = Vec::with_capacity(64);
        let rsp = match fields::response(list, kind, &mut block) {
            Ok(rsp)
                if !list.is_oversize()
                    && (kind == Kind::Response || end_stream)
                    && (kind == Kind::Response || s.rsp.count(0, true)) =>
            {
                rsp
            }
            _ => {
                tracing::debug!(target = %self.fwd.target, stream, "malformed HTTP/2 response");
                self.reset_upstream_stream(i, stream, Reason::PROTOCOL_ERROR);
                return;
            }
        };
        if kind == Kind::Trailers {
            s.grpc_status = rsp.grpc_status.or(s.grpc_status);
            s.rsp.end_received = true;
            s.rsp.trailers = Some(block);
            return;
        }
        let status = rsp.status.unwrap_or(0);
        let fwd = self.fwd;
        if (100..200).contains(&status) {
            // An interim response goes on as it is.
            if end_stream || status == 101 {
                self.reset_upstream_stream(i, stream, Reason::PROTOCOL_ERROR);
                return;
            }
            send_headers(&mut self.down, s.id, &block, false);
            return;
        }
        // A HEAD response's or a 304's content-length describes no DATA.
        let bodiless = s.head_request || matches!(status, 204 | 304);
        s.rsp.remaining = rsp.content_length.filter(|_| !bodiless);
        if end_stream && !s.rsp.count(0, true) {
            self.reset_upstream_stream(i, stream, Reason::PROTOCOL_ERROR);
            return;
        }
        s.status = Some(status);
        s.grpc_status = rsp.grpc_status;
        let labels = response_labels(s, Classification::Success, None);
        fwd.metrics
            .response_latency_cached(&fwd.handles, &labels, s.start);
        s.rsp.end_received = end_stream;
        send_headers(&mut self.down, s.id, &block, end_stream);
        if end_stream {
            s.rsp.end_sent = true;
            Self::record_end(fwd, s, true);
        }
    }

    /// The upstream reset a stream (or refused it): the reset goes on to
    /// the client, and a stream whose response had not begun counts as a
    /// failed request.
    pub(super) fn upstream_reset(&mut self, mut s: Stream, reason: Reason) {
        frame::write_rst_stream(&mut self.down.wbuf, s.id, reason);
        if s.status.is_some() {
            if !s.rsp.end_sent {
                Self::record_end(self.fwd, &mut s, false);
            }
        } else if reason != Reason::REFUSED_STREAM {
            let e = ProxyError::UpstreamIo {
                addr: self.fwd.target,
                source: std::io::Error::other(format!("stream reset with {reason}")),
            };
            Self::record_error(self.fwd, &mut s, &e);
        }
    }

    pub(super) fn reset_upstream_stream(&mut self, i: usize, stream: u32, reason: Reason) {
        let key = self.held[i].key;
        frame::write_rst_stream(&mut self.held[i].up.peer.wbuf, stream, reason);
        if let Some(si) = self.find_up(key, stream) {
            let s = self.remove(si);
            self.upstream_reset(s, Reason::INTERNAL_ERROR);
        }
    }

    /// The upstream connection failed or closed: its streams get a 502
    /// (gRPC: UNAVAILABLE) when their response had not begun, a reset
    /// otherwise.
    pub(super) fn upstream_failed(&mut self, i: usize, why: &str) {
        let key = self.held[i].key;
        let mut j = 0;
        let mut answered = Vec::new();
        while j < self.streams.len() {
            if self.streams[j].up.is_some_and(|u| u.0 == key) {
                let mut s = self.remove(j);
                s.up = None;
                if s.status.is_some() {
                    frame::write_rst_stream(&mut self.down.wbuf, s.id, Reason::INTERNAL_ERROR);
                    Self::record_end(self.fwd, &mut s, false);
                } else {
                    answered.push(s);
                }
            } else {
                j += 1;
            }
        }
        self.held.swap_remove(i);
        if answered.is_empty() {
            tracing::debug!(target = %self.fwd.target, error = why, "upstream HTTP/2 connection ended");
        }
        let e = ProxyError::UpstreamIo {
            addr: self.fwd.target,
            source: std::io::Error::other(why.to_string()),
        };
        for mut s in answered {
            self.answer_error(&mut s, &e);
            self.streams.push(s);
        }
        self.ensure_upstream();
    }

    pub(super) fn find_up(&self, key: u32, up_id: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.up == Some((key, up_id)))
    }
}

// === impl Upstream ===

impl Upstream {
    /// A new connection: the preface, our SETTINGS (no push) and the larger
    /// connection window go out with the first request.
    pub(super) fn new(io: UpstreamIo, addr: std::net::SocketAddr, metrics: TcpConn) -> Box<Self> {
        let mut peer = Peer::new(io);
        peer.wbuf.extend_from_slice(frame::PREFACE);
        frame::Settings {
            enable_push: Some(false),
            ..Default::default()
        }
        .write(&mut peer.wbuf);
        frame::write_window_update(&mut peer.wbuf, 0, CONN_WINDOW - frame::DEFAULT_WINDOW);
        peer.recv_window = i64::from(CONN_WINDOW);
        Box::new(Upstream {
            peer,
            addr,
            _metrics: metrics,
            next_id: 1,
            idle_since: Instant::now(),
        })
    }
}
