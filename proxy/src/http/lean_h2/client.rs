//! Frames from the client: new streams, request DATA and trailers,
//! resets, settings and the connection's own frames.

use std::time::Instant;

use strand_proxy_h2::frame::{self, Frame, Reason};
use strand_proxy_h2::hpack::HeaderList;
use tokio::io::{AsyncRead, AsyncWrite};

use super::fields::{self, Kind};
use super::streams::send_headers;
use super::{Conn, Half, LeanH2Error, MAX_STREAMS, Stream};

/// Streams a client may reset before their response began, when that is
/// more than half of the streams it opened, before the connection is
/// closed: a rapid-reset flood makes the upstream work for nothing.
const RESET_FLOOD: u32 = 200;

impl<I: AsyncRead + AsyncWrite + Unpin> Conn<'_, I> {
    pub(super) fn client_frames(&mut self) -> Result<(), LeanH2Error> {
        if !self.preface {
            let buffered = self.down.buffered();
            if buffered.len() < frame::PREFACE.len() {
                return if frame::PREFACE.starts_with(buffered) {
                    Ok(())
                } else {
                    Err(LeanH2Error::Preface)
                };
            }
            if &buffered[..frame::PREFACE.len()] != frame::PREFACE {
                return Err(LeanH2Error::Preface);
            }
            self.down.consume(frame::PREFACE.len());
            self.preface = true;
        }
        while let Some(f) = self.down.next_frame().map_err(LeanH2Error::Protocol)? {
            let rbuf = self.down.take_rbuf();
            let res = match f.parse(&rbuf) {
                Ok(frame) => self.client_frame(frame),
                Err(frame::Error::Stream { stream, reason, .. }) => {
                    self.reset_client_stream(stream, reason);
                    Ok(())
                }
                Err(e) => Err(LeanH2Error::Protocol(e)),
            };
            self.down.put_rbuf(rbuf);
            res?;
            if self.error.is_some() || self.fallback {
                break;
            }
        }
        Ok(())
    }

    pub(super) fn client_frame(&mut self, f: Frame<'_>) -> Result<(), LeanH2Error> {
        let protocol = |what| {
            LeanH2Error::Protocol(frame::Error::Connection {
                reason: Reason::PROTOCOL_ERROR,
                what,
            })
        };
        self.down
            .check_block_open(&f)
            .map_err(LeanH2Error::Protocol)?;
        match f {
            Frame::Headers { .. } | Frame::Continuation { .. } => {
                let complete = self
                    .down
                    .header_frame(f, self.max_list)
                    .map_err(LeanH2Error::Protocol)?;
                if let Some((stream, end_stream, block)) = complete {
                    self.client_headers(stream, end_stream, &block)?;
                }
            }
            Frame::Data {
                stream,
                end_stream,
                data,
                flow_len,
            } => self.client_data(stream, end_stream, data, flow_len)?,
            Frame::RstStream { stream, reason } => {
                if let Some(i) = self.find(stream) {
                    let mut s = self.remove(i);
                    self.end_stream_upstream(&s, reason);
                    if s.status.is_none() {
                        self.early_resets += 1;
                        if self.early_resets > RESET_FLOOD && self.early_resets * 2 > self.opened {
                            return Err(LeanH2Error::Protocol(frame::Error::Connection {
                                reason: Reason::ENHANCE_YOUR_CALM,
                                what: "too many streams reset before their response",
                            }));
                        }
                    }
                    Self::record_end(self.fwd, &mut s, false);
                } else if stream > self.last_id {
                    return Err(protocol("RST_STREAM on an idle stream"));
                }
            }
            Frame::Settings(s) => {
                let delta = self.down.apply_settings(&s);
                if delta != 0 {
                    for st in &mut self.streams {
                        st.rsp.send_window += delta;
                    }
                }
            }
            Frame::Ping { ack, data } => {
                if !ack {
                    frame::write_ping(&mut self.down.wbuf, true, data);
                }
            }
            Frame::GoAway { .. } => self.client_goaway = true,
            Frame::WindowUpdate {
                stream: 0,
                increment,
            } => self
                .down
                .grow_send_window(increment)
                .map_err(LeanH2Error::Protocol)?,
            Frame::WindowUpdate { stream, increment } => {
                if let Some(i) = self.find(stream) {
                    let w = &mut self.streams[i].rsp.send_window;
                    *w += i64::from(increment);
                    if *w > i64::from(frame::MAX_WINDOW) {
                        self.reset_client_stream(stream, Reason::FLOW_CONTROL_ERROR);
                    }
                }
            }
            Frame::PushPromise { .. } => return Err(protocol("PUSH_PROMISE from a client")),
            Frame::SettingsAck | Frame::Priority | Frame::Unknown => {}
        }
        Ok(())
    }

    pub(super) fn client_headers(
        &mut self,
        stream: u32,
        end_stream: bool,
        block: &[u8],
    ) -> Result<(), LeanH2Error> {
        let mut list = std::mem::take(&mut self.list);
        let decoded = self.down.decoder.decode(block, &mut list, self.max_list);
        let res = decoded
            .map_err(LeanH2Error::Compression)
            .and_then(|()| self.client_head(stream, end_stream, &list));
        self.list = list;
        res
    }

    pub(super) fn client_head(
        &mut self,
        stream: u32,
        end_stream: bool,
        list: &HeaderList,
    ) -> Result<(), LeanH2Error> {
        if let Some(i) = self.find(stream) {
            // Trailers.
            let mut block = Vec::new();
            let ok = end_stream
                && !self.streams[i].req.end_received
                && self.streams[i].req.count(0, true)
                && !list.is_oversize()
                && fields::response(list, Kind::Trailers, &mut block).is_ok();
            if !ok {
                self.reset_client_stream(stream, Reason::PROTOCOL_ERROR);
                return Ok(());
            }
            let s = &mut self.streams[i];
            s.req.end_received = true;
            s.req.trailers = Some(block);
            return Ok(());
        }
        if stream.is_multiple_of(2) {
            return Err(LeanH2Error::Protocol(frame::Error::Connection {
                reason: Reason::PROTOCOL_ERROR,
                what: "HEADERS on a server stream",
            }));
        }
        if stream <= self.last_id {
            // A stream this proxy already closed (reset, or answered before
            // the request ended): what is still in flight is dropped.
            return Ok(());
        }
        if self.fwd.direction == crate::metrics::Direction::Inbound
            && list
                .get(crate::http::orig_proto::L5D_ORIG_PROTO.as_bytes())
                .is_some()
        {
            // HTTP/1 carried over HTTP/2 by another proxy goes back to
            // HTTP/1 on the general path: this whole connection, when this
            // is its first request; the client's next one otherwise.
            if self.raw.is_some() {
                self.fallback = true;
            } else {
                self.down.go_away(self.last_id, Reason::NO_ERROR, "");
                self.goaway_sent = true;
                frame::write_rst_stream(&mut self.down.wbuf, stream, Reason::REFUSED_STREAM);
                self.last_id = stream;
            }
            return Ok(());
        }
        self.commit();
        self.last_id = stream;
        self.opened += 1;
        if self.goaway_sent || self.streams.len() >= MAX_STREAMS as usize {
            frame::write_rst_stream(&mut self.down.wbuf, stream, Reason::REFUSED_STREAM);
            return Ok(());
        }
        let mut block = Vec::with_capacity(128);
        let checked = fields::request(list, &mut block).and_then(|req| {
            // Headers that end the stream announce no content.
            match req.content_length {
                Some(n) if end_stream && n > 0 => Err("content-length without DATA"),
                _ => Ok(req),
            }
        });
        let req = match checked {
            Ok(req) => req,
            Err(what) => {
                tracing::debug!(
                    direction = self.fwd.direction.as_str(),
                    stream,
                    what,
                    "malformed HTTP/2 request"
                );
                frame::write_rst_stream(&mut self.down.wbuf, stream, Reason::PROTOCOL_ERROR);
                return Ok(());
            }
        };
        let fwd = self.fwd;
        let target = fwd.lean_request(req.authority);
        let mut s = Stream {
            id: stream,
            up: None,
            head: Some(block),
            req: Half {
                recv_window: i64::from(frame::DEFAULT_WINDOW),
                end_received: end_stream,
                remaining: req.content_length,
                ..Half::default()
            },
            rsp: Half {
                send_window: i64::from(self.down.initial_window),
                ..Half::default()
            },
            start: Instant::now(),
            target,
            grpc: req.grpc,
            head_request: req.head,
            status: None,
            grpc_status: None,
            counted: false,
        };
        if list.is_oversize() {
            // As the general path answers: 431, and the stream ends.
            s.head = None;
            s.status = Some(431);
            s.rsp.end_received = true;
            s.rsp.end_sent = true;
            s.req.end_sent = true;
            let mut block = Vec::new();
            strand_proxy_h2::hpack::Encoder::field(b":status", b"431", false, &mut block);
            send_headers(&mut self.down, stream, &block, true);
            Self::record_end(self.fwd, &mut s, true);
            self.streams.push(s);
            return Ok(());
        }
        self.streams.push(s);
        self.ensure_upstream();
        Ok(())
    }

    pub(super) fn client_data(
        &mut self,
        stream: u32,
        end_stream: bool,
        data: &[u8],
        flow_len: u32,
    ) -> Result<(), LeanH2Error> {
        self.down
            .take_recv(flow_len)
            .map_err(LeanH2Error::Protocol)?;
        let Some(i) = self.find(stream) else {
            // A stream already closed: its bytes go back at once.
            self.down.release_recv(flow_len);
            if stream > self.last_id {
                return Err(LeanH2Error::Protocol(frame::Error::Connection {
                    reason: Reason::PROTOCOL_ERROR,
                    what: "DATA on an idle stream",
                }));
            }
            return Ok(());
        };
        let s = &mut self.streams[i];
        s.req.recv_window -= i64::from(flow_len);
        let adds_up = s.req.count(data.len(), end_stream);
        if s.req.end_received || s.req.recv_window < 0 || !adds_up {
            let reason = if s.req.end_received {
                Reason::STREAM_CLOSED
            } else if adds_up {
                Reason::FLOW_CONTROL_ERROR
            } else {
                Reason::PROTOCOL_ERROR
            };
            self.down.release_recv(flow_len);
            self.reset_client_stream(stream, reason);
            return Ok(());
        }
        s.req.end_received = end_stream;
        if s.up.is_none() && s.head.is_none() {
            // Answered by the proxy: the body goes nowhere.
            self.down.release_recv(flow_len);
            return Ok(());
        }
        // Padding is given back now, the data once it has been passed on.
        let padding = flow_len - data.len() as u32;
        s.req.unacked += padding;
        s.req.pending.extend_from_slice(data);
        self.down.release_recv(padding);
        Ok(())
    }

    /// Resets a client stream (and its upstream side).
    pub(super) fn reset_client_stream(&mut self, stream: u32, reason: Reason) {
        frame::write_rst_stream(&mut self.down.wbuf, stream, reason);
        if let Some(i) = self.find(stream) {
            let mut s = self.remove(i);
            self.end_stream_upstream(&s, Reason::CANCEL);
            Self::record_end(self.fwd, &mut s, false);
        }
    }

    /// Resets a removed stream's upstream side, if it is still open there.
    /// Frames that arrive for it later are dropped (their bytes given back
    /// to the connection window), so the connection stays fit for reuse.
    pub(super) fn end_stream_upstream(&mut self, s: &Stream, reason: Reason) {
        let Some((key, up_id)) = s.up else { return };
        if let Some(h) = self.held.iter_mut().find(|h| h.key == key)
            && !(s.req.end_sent && s.rsp.end_received)
        {
            frame::write_rst_stream(&mut h.up.peer.wbuf, up_id, reason);
        }
    }

    pub(super) fn find(&self, stream: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.id == stream)
    }
}
