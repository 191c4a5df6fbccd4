//! HTTP/2 frames and HPACK blocks from untrusted bytes: the input is read
//! as a sequence of frames, each parsed; header block fragments go through
//! one decoder (so the dynamic table carries over), and every block that
//! decodes is encoded again and must decode to the same fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strand_proxy_h2::frame::{Frame, HEAD_LEN, Head};
use strand_proxy_h2::hpack::{Decoder, Encoder, HeaderList};

fuzz_target!(|data: &[u8]| {
    let mut decoder = Decoder::new(4096);
    let mut list = HeaderList::default();
    let mut again = HeaderList::default();
    let mut rest = data;
    while let Some((head, tail)) = rest.split_first_chunk::<HEAD_LEN>() {
        let head = Head::parse(head);
        let len = (head.len as usize).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        rest = tail;
        let block = match Frame::parse(&head, payload) {
            Ok(Frame::Headers { block, .. } | Frame::Continuation { block, .. }) => block,
            _ => continue,
        };
        if decoder.decode(block, &mut list, 16 * 1024).is_err() {
            return;
        }
        let mut encoder = Encoder::new();
        let mut out = Vec::new();
        encoder.begin(&mut out);
        for f in list.iter() {
            Encoder::field(f.name, f.value, f.sensitive, &mut out);
        }
        Decoder::new(4096)
            .decode(&out, &mut again, usize::MAX)
            .expect("our own encoding decodes");
        assert!(list.iter().eq(again.iter()));
    }
});
