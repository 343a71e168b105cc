//! Wire frames as a peer sends them (QUIC streams, both directions): `wire::decode` never
//! panics, the split header/body path agrees with it, and whatever decodes re-encodes to a
//! frame that decodes to the same message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sitecast_protocol::wire::{self, Message, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let whole = wire::decode(data);
    // The stream reader's path: header first, then exactly the announced body.
    if let Some(h) = data.get(..HEADER_LEN) {
        let split = wire::decode_header(h.try_into().unwrap()).and_then(|hd| {
            let end = HEADER_LEN + hd.len as usize;
            match data.get(HEADER_LEN..end) {
                Some(body) => wire::decode_body(hd, body).map(|m| (m, end)),
                None => Err(wire::WireError::Truncated {
                    need: end,
                    have: data.len(),
                }),
            }
        });
        assert_eq!(split, whole, "split and whole-frame decoding disagree");
    }
    let Ok((msg, used)) = whole else { return };
    assert!(used >= HEADER_LEN && used <= data.len());
    let again = wire::encode(&msg);
    let (back, n) = wire::decode(&again).expect("an encoded message decodes");
    assert_eq!(n, again.len());
    assert_eq!(back, msg);
    assert_eq!(again[4], msg.kind());
    if let Message::ChunkData(c) = &msg {
        // Raw payload: byte-exact, and the zero-copy header matches the encoder.
        assert_eq!(&again[..], &data[..used]);
        let head = wire::chunk_data_header(&c.id, c.data.len());
        assert_eq!(&again[..head.len()], &head[..]);
    }
});
