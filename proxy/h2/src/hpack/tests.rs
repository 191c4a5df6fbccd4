use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn fields(list: &HeaderList) -> Vec<(String, String)> {
    list.iter()
        .map(|f| {
            (
                String::from_utf8_lossy(f.name).into_owned(),
                String::from_utf8_lossy(f.value).into_owned(),
            )
        })
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

const REQUESTS: [&[(&str, &str)]; 3] = [
    &[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
    ],
    &[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
        ("cache-control", "no-cache"),
    ],
    &[
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/index.html"),
        (":authority", "www.example.com"),
        ("custom-key", "custom-value"),
    ],
];

/// Decodes RFC 7541's three requests, in order, on one decoder.
fn decode_requests(blocks: [&str; 3]) {
    let mut dec = Decoder::new(4096);
    let mut list = HeaderList::default();
    for (block, want) in blocks.iter().zip(REQUESTS) {
        dec.decode(&hex(block), &mut list, usize::MAX)
            .expect("decodes");
        assert_eq!(fields(&list), pairs(want));
    }
}

/// RFC 7541 C.3: requests on one connection, without Huffman coding.
#[test]
fn rfc7541_requests_without_huffman() {
    let blocks = [
        "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "8286 84be 5808 6e6f 2d63 6163 6865",
        "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
    ];
    decode_requests(blocks);
}

/// RFC 7541 C.4: the same requests with Huffman-coded strings.
#[test]
fn rfc7541_requests_with_huffman() {
    let blocks = [
        "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
        "8286 84be 5886 a8eb 1064 9cbf",
        "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
    ];
    decode_requests(blocks);
    let mut out = Vec::new();
    huffman::encode(b"www.example.com", &mut out);
    assert_eq!(out, hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff"));
    assert_eq!(huffman::encoded_len(b"www.example.com"), out.len());
}

#[test]
fn huffman_round_trips_every_byte() {
    let mut rng = fastrand::Rng::with_seed(7);
    for len in 0..300 {
        let src: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        let mut coded = Vec::new();
        huffman::encode(&src, &mut coded);
        let mut back = Vec::new();
        huffman::decode(&coded, &mut back).expect("decodes");
        assert_eq!(back, src, "length {len}");
    }
    let all: Vec<u8> = (0..=255).collect();
    let mut coded = Vec::new();
    huffman::encode(&all, &mut coded);
    let mut back = Vec::new();
    huffman::decode(&coded, &mut back).expect("decodes");
    assert_eq!(back, all);
}

#[test]
fn huffman_refuses_bad_padding_and_eos() {
    let mut out = Vec::new();
    // Eight bits of padding.
    assert_eq!(huffman::decode(&[0xff], &mut out), Err(HpackError::Huffman));
    // 'a' (00011) padded with zeros instead of ones.
    assert_eq!(huffman::decode(&[0x18], &mut out), Err(HpackError::Huffman));
    // EOS itself (30 ones), padded.
    assert_eq!(
        huffman::decode(&[0xff, 0xff, 0xff, 0xff], &mut out),
        Err(HpackError::Huffman)
    );
    // 'a' padded with ones is fine.
    out.clear();
    huffman::decode(&[0x1f], &mut out).expect("decodes");
    assert_eq!(out, b"a");
}

#[test]
fn dynamic_table_evicts_oldest_and_indexes_newest_first() {
    // Each entry "k<i>: v" is 2 + 1 + 32 = 35 bytes: 3 fit in 110.
    let mut dec = Decoder::new(110);
    let mut list = HeaderList::default();
    for i in 0..4u8 {
        let block = [0x40, 2, b'k', b'0' + i, 1, b'v'];
        dec.decode(&block, &mut list, usize::MAX).expect("decodes");
    }
    // 62 is the newest (k3), 64 the oldest kept (k1); k0 was evicted.
    dec.decode(&[0x80 | 62, 0x80 | 64], &mut list, usize::MAX)
        .expect("decodes");
    assert_eq!(fields(&list), pairs(&[("k3", "v"), ("k1", "v")]));
    assert_eq!(
        dec.decode(&[0x80 | 65], &mut list, usize::MAX),
        Err(HpackError::Index(65))
    );
    // A size update to 40 keeps only the newest.
    dec.decode(&[0x20 | 31, 9, 0x80 | 62], &mut list, usize::MAX)
        .expect("decodes");
    assert_eq!(fields(&list), pairs(&[("k3", "v")]));
    assert_eq!(dec.table_max(), 40);
    assert_eq!(
        dec.decode(&[0x80 | 63], &mut list, usize::MAX),
        Err(HpackError::Index(63))
    );
}

#[test]
fn malformed_blocks_are_compression_errors() {
    let mut dec = Decoder::new(4096);
    let mut list = HeaderList::default();
    let cases: &[(&[u8], HpackError)] = &[
        (&[0x80], HpackError::Index(0)),
        (&[0xff, 0x80, 0x80, 0x80, 0x80, 0x01], HpackError::Integer),
        (&[0xff], HpackError::Truncated),
        (&[0x40, 0x05, b'a'], HpackError::Truncated),
        (&[0x00, 0x01, b'a', 0x7f], HpackError::Truncated),
        (&[0x3f, 0xe2, 0x1f], HpackError::SizeUpdate(4097)),
        (&[0x82, 0x20], HpackError::LateSizeUpdate),
        (&[0x0f, 0x30, 0x00], HpackError::Index(63)),
    ];
    for (block, want) in cases {
        assert_eq!(
            dec.decode(block, &mut list, usize::MAX),
            Err(*want),
            "{block:02x?}"
        );
    }
}

#[test]
fn fields_past_the_list_limit_are_dropped_but_still_indexed() {
    let mut dec = Decoder::new(4096);
    let mut list = HeaderList::default();
    // ":method GET" (42) fits in 50; "big: xxxx" (incremental) does not.
    let mut block = vec![0x82, 0x40, 3, b'b', b'i', b'g', 4];
    block.extend_from_slice(b"xxxx");
    dec.decode(&block, &mut list, 50).expect("decodes");
    assert!(list.is_oversize());
    assert_eq!(fields(&list), pairs(&[(":method", "GET")]));
    assert_eq!(list.size(), 42 + 3 + 4 + 32);
    // The dropped field went into the table all the same.
    dec.decode(&[0x80 | 62], &mut list, usize::MAX)
        .expect("decodes");
    assert!(!list.is_oversize());
    assert_eq!(fields(&list), pairs(&[("big", "xxxx")]));
}

#[test]
fn encoder_output_decodes_to_the_same_fields() {
    let mut enc = Encoder::new();
    let mut dec = Decoder::new(4096);
    let mut list = HeaderList::default();
    let want = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/grpc.health.v1.Health/Check"),
        (":authority", "svc.ns.svc.cluster.local:8080"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("x-long", &"y".repeat(300)),
    ];
    for round in 0..2 {
        let mut block = Vec::new();
        enc.begin(&mut block);
        for (n, v) in want {
            Encoder::field(n.as_bytes(), v.as_bytes(), false, &mut block);
        }
        // The first block announces a table of 0; exact static matches take a byte.
        if round == 0 {
            assert_eq!(&block[..3], &[0x20, 0x83, 0x86]);
        } else {
            assert_eq!(&block[..2], &[0x83, 0x86]);
        }
        dec.decode(&block, &mut list, usize::MAX).expect("decodes");
        assert_eq!(fields(&list), pairs(&want));
        assert_eq!(dec.table_max(), 0);
    }
}

#[test]
fn never_indexed_fields_stay_never_indexed() {
    let mut dec = Decoder::new(4096);
    let mut list = HeaderList::default();
    // authorization (23) never indexed, value "s".
    dec.decode(&[0x1f, 0x08, 1, b's'], &mut list, usize::MAX)
        .expect("decodes");
    let f = list.iter().next().expect("one field");
    assert!(f.sensitive);
    let mut out = Vec::new();
    Encoder::field(f.name, f.value, f.sensitive, &mut out);
    assert_eq!(out, [0x1f, 0x08, 1, b's']);
}

/// Mutated blocks either fail cleanly or decode to fields that survive our
/// encoder; nothing panics or grows without bound. (The `h2_wire` fuzz
/// target does the same with coverage guidance.)
#[test]
fn mutated_blocks_fail_cleanly_or_round_trip() {
    let seeds = [
        hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"),
        hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"),
        hex("8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65"),
    ];
    let mut rng = fastrand::Rng::with_seed(42);
    let mut list = HeaderList::default();
    let mut again = HeaderList::default();
    for _ in 0..20_000 {
        let mut block = seeds[rng.usize(..seeds.len())].clone();
        for _ in 0..rng.usize(1..4) {
            let at = rng.usize(..block.len());
            match rng.u8(..3) {
                0 => block[at] = rng.u8(..),
                1 => block.truncate(at),
                _ => block.insert(at, rng.u8(..)),
            }
            if block.is_empty() {
                break;
            }
        }
        let mut dec = Decoder::new(4096);
        if dec.decode(&block, &mut list, 1024).is_err() {
            continue;
        }
        assert!(list.size() <= 1024 || list.is_oversize());
        let mut enc = Encoder::new();
        let mut out = Vec::new();
        enc.begin(&mut out);
        for f in list.iter() {
            Encoder::field(f.name, f.value, f.sensitive, &mut out);
        }
        Decoder::new(4096)
            .decode(&out, &mut again, usize::MAX)
            .expect("our encoding decodes");
        assert!(list.iter().eq(again.iter()), "{block:02x?}");
    }
}
