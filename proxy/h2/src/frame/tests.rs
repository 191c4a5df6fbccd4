use super::*;

fn parse(bytes: &[u8]) -> Result<Frame<'_>, Error> {
    let (head, payload) = bytes.split_first_chunk::<HEAD_LEN>().expect("a head");
    let head = Head::parse(head);
    assert_eq!(head.len as usize, payload.len());
    Frame::parse(&head, payload)
}

fn conn(reason: Reason) -> impl Fn(Result<Frame<'_>, Error>) {
    move |r| match r {
        Err(Error::Connection { reason: got, .. }) => assert_eq!(got, reason),
        other => panic!("expected a connection error {reason}, got {other:?}"),
    }
}

#[test]
fn written_frames_parse_back() {
    let mut out = Vec::new();
    write_data(&mut out, 3, b"hello", true);
    assert_eq!(
        parse(&out),
        Ok(Frame::Data {
            stream: 3,
            end_stream: true,
            data: b"hello",
            flow_len: 5
        })
    );
    out.clear();
    write_rst_stream(&mut out, 5, Reason::CANCEL);
    assert_eq!(
        parse(&out),
        Ok(Frame::RstStream {
            stream: 5,
            reason: Reason::CANCEL
        })
    );
    out.clear();
    write_goaway(&mut out, 7, Reason::NO_ERROR, b"bye");
    assert_eq!(
        parse(&out),
        Ok(Frame::GoAway {
            last_stream: 7,
            reason: Reason::NO_ERROR,
            debug: b"bye"
        })
    );
    out.clear();
    write_window_update(&mut out, 0, 1 << 20);
    assert_eq!(
        parse(&out),
        Ok(Frame::WindowUpdate {
            stream: 0,
            increment: 1 << 20
        })
    );
    out.clear();
    write_ping(&mut out, true, *b"12345678");
    assert_eq!(
        parse(&out),
        Ok(Frame::Ping {
            ack: true,
            data: *b"12345678"
        })
    );
    out.clear();
    let settings = Settings {
        initial_window_size: Some(1 << 20),
        max_concurrent_streams: Some(100),
        enable_push: Some(false),
        ..Settings::default()
    };
    settings.write(&mut out);
    assert_eq!(parse(&out), Ok(Frame::Settings(settings)));
    out.clear();
    write_settings_ack(&mut out);
    assert_eq!(parse(&out), Ok(Frame::SettingsAck));
}

#[test]
fn header_blocks_split_into_continuations() {
    let block: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
    let mut out = Vec::new();
    write_headers(&mut out, 1, &block, true, DEFAULT_MAX_FRAME_SIZE);
    let mut rest = &out[..];
    let mut got = Vec::new();
    let mut frames = Vec::new();
    while let Some((head, tail)) = rest.split_first_chunk::<HEAD_LEN>() {
        let head = Head::parse(head);
        let (payload, tail) = tail.split_at(head.len as usize);
        frames.push((head.kind, head.flags));
        match Frame::parse(&head, payload).expect("parses") {
            Frame::Headers { block, .. } | Frame::Continuation { block, .. } => {
                got.extend_from_slice(block)
            }
            other => panic!("unexpected {other:?}"),
        }
        rest = tail;
    }
    assert_eq!(got, block);
    assert_eq!(
        frames,
        [
            (kind::HEADERS, flag::END_STREAM),
            (kind::CONTINUATION, 0),
            (kind::CONTINUATION, flag::END_HEADERS)
        ]
    );
}

#[test]
fn padding_and_priority_are_removed() {
    // HEADERS, padded (2) and with priority, block "ab".
    let mut f = vec![
        0,
        0,
        10,
        kind::HEADERS,
        flag::PADDED | flag::PRIORITY | flag::END_HEADERS,
    ];
    f.extend_from_slice(&1u32.to_be_bytes());
    f.extend_from_slice(&[2, 0, 0, 0, 3, 16, b'a', b'b', 0, 0]);
    assert_eq!(
        parse(&f),
        Ok(Frame::Headers {
            stream: 1,
            end_stream: false,
            end_headers: true,
            block: b"ab"
        })
    );
    // DATA padded with 3: flow control counts all 6 bytes.
    let mut d = vec![0, 0, 6, kind::DATA, flag::PADDED, 0, 0, 0, 1];
    d.extend_from_slice(&[3, b'x', b'y', 0, 0, 0]);
    assert_eq!(
        parse(&d),
        Ok(Frame::Data {
            stream: 1,
            end_stream: false,
            data: b"xy",
            flow_len: 6
        })
    );
}

#[test]
fn malformed_frames_are_refused_with_the_rfc_error() {
    let protocol = conn(Reason::PROTOCOL_ERROR);
    let size = conn(Reason::FRAME_SIZE_ERROR);
    // DATA on stream 0.
    protocol(parse(&[0, 0, 1, kind::DATA, 0, 0, 0, 0, 0, b'x']));
    // Padding longer than the payload.
    protocol(parse(&[
        0,
        0,
        2,
        kind::DATA,
        flag::PADDED,
        0,
        0,
        0,
        1,
        5,
        b'x',
    ]));
    // SETTINGS on a stream, of 5 bytes, ack with payload, bad values.
    protocol(parse(&[0, 0, 0, kind::SETTINGS, 0, 0, 0, 0, 1]));
    size(parse(&[
        0,
        0,
        5,
        kind::SETTINGS,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ]));
    size(parse(&[
        0,
        0,
        6,
        kind::SETTINGS,
        flag::ACK,
        0,
        0,
        0,
        0,
        0,
        4,
        0,
        0,
        0,
        0,
    ]));
    conn(Reason::FLOW_CONTROL_ERROR)(parse(&[
        0,
        0,
        6,
        kind::SETTINGS,
        0,
        0,
        0,
        0,
        0,
        0,
        4,
        0x80,
        0,
        0,
        0,
    ]));
    protocol(parse(&[
        0,
        0,
        6,
        kind::SETTINGS,
        0,
        0,
        0,
        0,
        0,
        0,
        5,
        0,
        0,
        0,
        1,
    ]));
    protocol(parse(&[
        0,
        0,
        6,
        kind::SETTINGS,
        0,
        0,
        0,
        0,
        0,
        0,
        2,
        0,
        0,
        0,
        2,
    ]));
    // PING of 7 bytes; GOAWAY of 4; RST_STREAM of 3; WINDOW_UPDATE 0 on the connection.
    size(parse(&[
        0,
        0,
        7,
        kind::PING,
        0,
        0,
        0,
        0,
        0,
        1,
        2,
        3,
        4,
        5,
        6,
        7,
    ]));
    size(parse(&[0, 0, 4, kind::GOAWAY, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    size(parse(&[0, 0, 3, kind::RST_STREAM, 0, 0, 0, 0, 1, 0, 0, 0]));
    protocol(parse(&[
        0,
        0,
        4,
        kind::WINDOW_UPDATE,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ]));
    // WINDOW_UPDATE 0 on a stream and a stream depending on itself: stream errors.
    assert!(matches!(
        parse(&[0, 0, 4, kind::WINDOW_UPDATE, 0, 0, 0, 0, 3, 0, 0, 0, 0]),
        Err(Error::Stream {
            stream: 3,
            reason: Reason::PROTOCOL_ERROR,
            ..
        })
    ));
    assert!(matches!(
        parse(&[0, 0, 5, kind::PRIORITY, 0, 0, 0, 0, 3, 0, 0, 0, 3, 16]),
        Err(Error::Stream {
            stream: 3,
            reason: Reason::PROTOCOL_ERROR,
            ..
        })
    ));
    // Unknown types are ignored.
    assert_eq!(
        parse(&[0, 0, 1, 0xfa, 0, 0, 0, 0, 1, 0]),
        Ok(Frame::Unknown)
    );
}
