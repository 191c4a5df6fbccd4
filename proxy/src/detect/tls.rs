//! Just enough TLS parsing to recognise a ClientHello and read its SNI
//! (RFC 8446 §4.1.2, RFC 6066 §3). Every length is checked against the
//! bytes present; nothing here allocates beyond the returned name.

/// TLS record content type for handshake messages.
pub const CONTENT_TYPE_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const SNI_HOST_NAME: u8 = 0;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Hello {
    NeedMore,
    NotTls,
    Tls(Option<String>),
}

pub(super) fn classify(buf: &[u8]) -> Hello {
    // Record header: type(1) version(2) length(2).
    if buf.len() < 5 {
        // Check what we can: type, then a major version of 3.
        if buf.len() >= 2 && buf[1] != 3 {
            return Hello::NotTls;
        }
        return Hello::NeedMore;
    }
    if buf[0] != CONTENT_TYPE_HANDSHAKE || buf[1] != 3 || buf[2] > 4 {
        return Hello::NotTls;
    }
    let record_len = u16::from_be_bytes([buf[3], buf[4]]) as usize;
    if record_len == 0 || record_len > 16384 + 256 {
        return Hello::NotTls;
    }
    let body = &buf[5..];
    if body.first().is_some_and(|&t| t != HANDSHAKE_CLIENT_HELLO) {
        return Hello::NotTls;
    }
    if body.len() < record_len {
        return Hello::NeedMore;
    }
    let body = &body[..record_len];
    // Handshake header: type(1) length(3). A hello split over several
    // records is rare; we then read what the first record holds and report
    // TLS without a name rather than reassembling.
    let mut r = Reader(body);
    let Some(_) = r.u8() else {
        return Hello::NotTls;
    };
    let Some(hs_len) = r.u24() else {
        return Hello::NotTls;
    };
    if hs_len as usize > r.0.len() {
        return Hello::Tls(None);
    }
    let mut r = Reader(&r.0[..hs_len as usize]);
    Hello::Tls(parse_hello_body(&mut r).unwrap_or(None))
}

fn parse_hello_body(r: &mut Reader<'_>) -> Option<Option<String>> {
    r.skip(2)?; // legacy_version
    r.skip(32)?; // random
    let sid = r.u8()? as usize;
    r.skip(sid)?;
    let suites = r.u16()? as usize;
    r.skip(suites)?;
    let comp = r.u8()? as usize;
    r.skip(comp)?;
    if r.0.is_empty() {
        return Some(None);
    }
    let ext_len = r.u16()? as usize;
    let mut exts = Reader(r.take(ext_len)?);
    while !exts.0.is_empty() {
        let ty = exts.u16()?;
        let len = exts.u16()? as usize;
        let data = exts.take(len)?;
        if ty == EXT_SERVER_NAME {
            let mut d = Reader(data);
            let list_len = d.u16()? as usize;
            let mut list = Reader(d.take(list_len)?);
            while !list.0.is_empty() {
                let name_type = list.u8()?;
                let name_len = list.u16()? as usize;
                let name = list.take(name_len)?;
                if name_type == SNI_HOST_NAME {
                    let name = std::str::from_utf8(name).ok()?;
                    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
                        return None;
                    }
                    return Some(Some(name.to_ascii_lowercase()));
                }
            }
        }
    }
    Some(None)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u24(&mut self) -> Option<u32> {
        self.take(3)
            .map(|b| u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }
}
