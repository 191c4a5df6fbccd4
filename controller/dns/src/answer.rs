//! What to do with one query message: answer it from the zone, refuse it,
//! reject it as malformed, or hand it to the forwarder. No I/O here.

use std::{net::IpAddr, sync::Arc};

use hickory_proto::{
    op::{Edns, Header, Message, MessageType, Metadata, OpCode, ResponseCode},
    rr::{
        DNSClass, Name, RData, Record, RecordType,
        rdata::{A, AAAA, SOA},
    },
    serialize::binary::{BinDecodable, BinDecoder},
};

use crate::{Lookup, Records, Zone};

/// Decides the fate of queries; shared by the UDP and TCP paths.
pub(crate) struct Responder {
    zone: Zone,
    soa: Record,
    ttl: u32,
    records: Arc<dyn Records>,
    forwarding: bool,
}

/// The decision for one message.
#[derive(Debug)]
pub(crate) enum Action {
    /// Send this response.
    Reply(Reply),
    /// Relay the raw query to an upstream; the parsed query is kept to
    /// build SERVFAIL or a truncated reply if that goes wrong.
    Forward(Message),
    /// Not a query we can answer at all (unparseable header, or a
    /// response): stay silent, as answering garbage invites reflection.
    Drop,
}

/// A response, with how much of it the client can take over UDP.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) message: Message,
    udp_limit: usize,
}

/// Whether a response travels by UDP (size-limited) or TCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    Udp,
    Tcp,
}

/// The EDNS payload size we advertise and the most we send over UDP,
/// whatever the client advertises: the DNS Flag Day 2020 value, chosen so
/// that answers are never IP-fragmented (1280-byte IPv6 minimum MTU minus
/// headers). Larger answers go TC=1 and the client retries over TCP.
pub(crate) const MAX_UDP_PAYLOAD: u16 = 1232;

/// RFC 1035's UDP limit for clients that do not speak EDNS.
const CLASSIC_UDP_PAYLOAD: u16 = 512;

/// The SOA timers only matter to secondaries, which this zone never has;
/// these are RFC 1912's suggested values so that tools showing them do
/// not look alarming.
const SOA_REFRESH: i32 = 7200;
const SOA_RETRY: i32 = 1800;
const SOA_EXPIRE: i32 = 86400;

// === impl Responder ===

impl Responder {
    pub(crate) fn new(
        zone: Zone,
        ttl: u32,
        negative_ttl: u32,
        records: Arc<dyn Records>,
        forwarding: bool,
    ) -> Self {
        // The serial never changes: nothing transfers this zone, and
        // resolvers do not look at it.
        let soa = SOA::new(
            zone.mname().clone(),
            zone.rname().clone(),
            1,
            SOA_REFRESH,
            SOA_RETRY,
            SOA_EXPIRE,
            negative_ttl,
        );
        let soa = Record::from_rdata(zone.name().clone(), negative_ttl, RData::SOA(soa));
        Self {
            zone,
            soa,
            ttl,
            records,
            forwarding,
        }
    }

    /// Decides what to do with the message in `bytes`.
    pub(crate) fn handle(&self, bytes: &[u8]) -> Action {
        let request = match Message::from_vec(bytes) {
            Ok(request) => request,
            Err(_) => return self.unparseable(bytes),
        };
        if request.message_type != MessageType::Query {
            return Action::Drop;
        }
        if request.op_code != OpCode::Query {
            return Action::Reply(self.reply(&request, ResponseCode::NotImp));
        }
        if request.queries.len() != 1 {
            return Action::Reply(self.reply(&request, ResponseCode::FormErr));
        }
        if request.edns.as_ref().is_some_and(|e| e.version() != 0) {
            return Action::Reply(self.reply(&request, ResponseCode::BADVERS));
        }
        let query = &request.queries[0];
        if query.query_class() != DNSClass::IN {
            return Action::Reply(self.reply(&request, ResponseCode::Refused));
        }
        if self.zone.name().zone_of(query.name()) {
            Action::Reply(self.authoritative(&request))
        } else if self.forwarding {
            Action::Forward(request)
        } else {
            Action::Reply(self.reply(&request, ResponseCode::Refused))
        }
    }

    /// An empty response to `request` with `code`: same ID, opcode, RD and
    /// CD, the question echoed, and our OPT if the client sent one.
    pub(crate) fn reply(&self, request: &Message, code: ResponseCode) -> Reply {
        let mut message = Message::response(request.id, request.op_code);
        message.metadata = Metadata::response_from_request(&request.metadata);
        message.metadata.recursion_available = self.forwarding;
        message.metadata.response_code = code;
        message.queries = request.queries.clone();
        if request.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(MAX_UDP_PAYLOAD);
            message.edns = Some(edns);
        }
        Reply {
            message,
            udp_limit: udp_limit(request),
        }
    }

    /// The header parsed but the rest did not: FORMERR without a question
    /// for queries, silence for anything else.
    fn unparseable(&self, bytes: &[u8]) -> Action {
        match Header::read(&mut BinDecoder::new(bytes)) {
            Ok(header) if header.message_type == MessageType::Query => {
                let mut message =
                    Message::error_msg(header.id, header.op_code, ResponseCode::FormErr);
                message.metadata.recursion_desired = header.recursion_desired;
                message.metadata.recursion_available = self.forwarding;
                Action::Reply(Reply {
                    message,
                    udp_limit: usize::from(CLASSIC_UDP_PAYLOAD),
                })
            }
            _ => Action::Drop,
        }
    }

    fn authoritative(&self, request: &Message) -> Reply {
        let mut reply = self.reply(request, ResponseCode::NoError);
        let message = &mut reply.message;
        message.metadata.authoritative = true;
        let query = &request.queries[0];
        let name = query.name();
        let is_apex = name.num_labels() == self.zone.name().num_labels();

        let found = match lookup_key(name).map(|key| self.records.lookup(&key)) {
            Some(Lookup::Found(addrs)) => Some(addrs),
            Some(Lookup::NoSuchName) | None => None,
        };
        let Some(addrs) = found.or_else(|| is_apex.then(Vec::new)) else {
            message.metadata.response_code = ResponseCode::NXDomain;
            message.authorities.push(self.soa.clone());
            return reply;
        };

        let qtype = query.query_type();
        let record = |data| Record::from_rdata(name.clone(), self.ttl, data);
        message.answers = addrs
            .into_iter()
            .filter_map(|addr| match (addr, qtype) {
                (IpAddr::V4(ip), RecordType::A | RecordType::ANY) => {
                    Some(record(RData::A(A::from(ip))))
                }
                (IpAddr::V6(ip), RecordType::AAAA | RecordType::ANY) => {
                    Some(record(RData::AAAA(AAAA::from(ip))))
                }
                _ => None,
            })
            .collect();
        if is_apex && qtype == RecordType::SOA {
            let mut soa = self.soa.clone();
            soa.name = name.clone();
            message.answers.push(soa);
        }
        if message.answers.is_empty() {
            message.authorities.push(self.soa.clone());
        }
        reply
    }
}

/// The name as [`Records::lookup`] sees it, or `None` when a label holds a
/// byte no Service or pod name can contain (so it cannot exist, and
/// escaping rules never reach the trait).
fn lookup_key(name: &Name) -> Option<String> {
    let mut key = String::with_capacity(name.len());
    for label in name.iter() {
        if !label
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return None;
        }
        if !key.is_empty() {
            key.push('.');
        }
        key.extend(label.iter().map(|b| char::from(b.to_ascii_lowercase())));
    }
    Some(key)
}

/// The most a response to `request` may weigh on `transport`.
pub(crate) fn size_limit(request: &Message, transport: Transport) -> usize {
    match transport {
        Transport::Udp => udp_limit(request),
        Transport::Tcp => usize::from(u16::MAX),
    }
}

/// The most a response to `request` may weigh over UDP: what the client
/// advertised in EDNS, within 512..=[`MAX_UDP_PAYLOAD`].
fn udp_limit(request: &Message) -> usize {
    let limit = match &request.edns {
        None => CLASSIC_UDP_PAYLOAD,
        Some(edns) => edns
            .max_payload()
            .clamp(CLASSIC_UDP_PAYLOAD, MAX_UDP_PAYLOAD),
    };
    usize::from(limit)
}

// === impl Reply ===

impl Reply {
    /// The most this reply may weigh on `transport`.
    pub(crate) fn limit(&self, transport: Transport) -> usize {
        match transport {
            Transport::Udp => self.udp_limit,
            Transport::Tcp => usize::from(u16::MAX),
        }
    }

    /// Encodes the reply; if it is too big for `transport`, the header and
    /// question only with TC=1 instead (RFC 2181 §9 allows partial answers,
    /// but an empty one cannot be mistaken for a complete set).
    pub(crate) fn encode(&self, transport: Transport) -> Option<Vec<u8>> {
        let bytes = (self.message.to_vec())
            .inspect_err(|error| tracing::warn!(%error, "cannot encode a response"))
            .ok()?;
        if bytes.len() <= self.limit(transport) {
            return Some(bytes);
        }
        self.message.truncate().to_vec().ok()
    }
}

#[cfg(test)]
mod tests;
