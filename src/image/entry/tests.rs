//! The entry reader against CRIU 4.2's images and built ones of every
//! payload layout: good images read the same from a slice and from a
//! stream and write back byte for byte; every kind of bad length is an
//! error naming the byte offset.

use super::*;
use crate::image::magic;
use std::path::PathBuf;

/// An entry read, with its payload's parts copied out.
#[derive(Debug, PartialEq)]
struct Got {
    offset: u64,
    msg: usize,
    message: Vec<u8>,
    /// "none", "bytes", "shm", "tcp", "sem" or "msgs".
    kind: &'static str,
    /// Bytes: [data]; tcp: [inq, outq]; msgs: [header, body, ...].
    parts: Vec<Vec<u8>>,
    raw: Vec<u8>,
}

fn got(e: &Entry) -> Got {
    let (kind, parts) = match e.payload {
        Payload::None => ("none", vec![]),
        Payload::Bytes(d) => ("bytes", vec![d.to_vec()]),
        Payload::Shm(d) => ("shm", vec![d.to_vec()]),
        Payload::Tcp { inq, outq } => ("tcp", vec![inq.to_vec(), outq.to_vec()]),
        Payload::Sem(d) => ("sem", vec![d.to_vec()]),
        Payload::Msgs(m) => (
            "msgs",
            m.flat_map(|m| [m.header.to_vec(), m.body.to_vec()])
                .collect(),
        ),
    };
    Got {
        offset: e.offset,
        msg: e.msg,
        message: e.message.to_vec(),
        kind,
        parts,
        raw: e.raw_payload.to_vec(),
    }
}

fn read_src(mut src: Source) -> std::result::Result<Vec<Got>, String> {
    let mut rd = EntryReader::new(&mut src).map_err(|e| e.to_string())?;
    let mut v = Vec::new();
    while let Some(e) = rd.next_entry().map_err(|e| e.to_string())? {
        v.push(got(&e));
    }
    Ok(v)
}

/// A reader that gives at most 3 bytes per call, so that every entry
/// straddles reads.
struct Trickle<'a>(&'a [u8]);

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(3).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

/// Reads `bytes` from a slice and from a stream; both must agree.
fn read(bytes: &[u8]) -> std::result::Result<Vec<Got>, String> {
    let a = read_src(Source::from_slice("t.img", bytes));
    let b = read_src(Source::from_reader("t.img", Trickle(bytes)));
    assert_eq!(a, b, "slice and stream differ");
    a
}

fn err(bytes: &[u8]) -> String {
    match read(bytes) {
        Ok(v) => panic!("read {} entries, wanted an error", v.len()),
        Err(e) => e,
    }
}

/// The image written again from what the reader gave.
fn rewrite(bytes: &[u8]) -> Vec<u8> {
    let mut src = Source::from_slice("t.img", bytes);
    let mut rd = EntryReader::new(&mut src).unwrap();
    let mut out = Vec::new();
    write_header(&mut out, rd.magic()).unwrap();
    while let Some(e) = rd.next_entry().unwrap() {
        write_entry(&mut out, e.message).unwrap();
        write_payload(&mut out, &e.payload).unwrap();
    }
    out
}

/// Reads `bytes`, checks that entries follow one another, and that
/// writing them again gives `bytes` back.
fn good(bytes: &[u8]) -> Vec<Got> {
    let v = read(bytes).unwrap_or_else(|e| panic!("{e}"));
    let mut src = Source::from_slice("t.img", bytes);
    let mut at = EntryReader::new(&mut src).unwrap().pos();
    for g in &v {
        assert_eq!(g.offset, at);
        at += 4 + (g.message.len() + g.raw.len()) as u64;
    }
    assert_eq!(at, bytes.len() as u64);
    assert_eq!(rewrite(bytes), bytes);
    v
}

fn image(name: &str, f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    write_header(&mut out, magic::by_name(name.as_bytes()).unwrap()).unwrap();
    f(&mut out);
    out
}

fn entry(out: &mut Vec<u8>, m: &impl Message, p: Payload) {
    write_entry(out, &m.encode_to_vec()).unwrap();
    write_payload(out, &p).unwrap();
}

fn desc() -> pb::IpcDescEntry {
    pb::IpcDescEntry::default()
}

fn ipc_msg(mtype: u64, body: &[u8]) -> Vec<u8> {
    pb::IpcMsg {
        mtype,
        msize: body.len() as u32,
    }
    .encode_to_vec()
}

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/criu-4.2/kitchen");
    std::fs::read(p.join(name)).unwrap()
}

#[test]
fn criu_images_read_and_write_back() {
    for (name, kind) in [
        ("inventory.img", "none"),
        ("files.img", "none"),
        ("pagemap-26773.img", "none"),
        ("pipes-data.img", "bytes"),
        ("fifo-data.img", "bytes"),
        ("sk-queues.img", "bytes"),
        ("ghost-file-1.img", "bytes"),
    ] {
        let v = good(&fixture(name));
        assert!(!v.is_empty(), "{name}");
        assert_eq!(v[0].kind, kind, "{name}");
    }
    let pm = good(&fixture("pagemap-26773.img"));
    assert_eq!(pm[0].msg, msg::PAGEMAP_HEAD);
    assert!(pm[1..].iter().all(|g| g.msg == msg::PAGEMAP_ENTRY));
    // A queued packet is as long as its entry says.
    for g in good(&fixture("sk-queues.img")) {
        let e = pb::SkPacketEntry::decode(&g.message[..]).unwrap();
        assert_eq!(g.parts[0].len(), e.length as usize);
    }
}

#[test]
fn every_payload_layout() {
    let tcp = image("TCP_STREAM", |o| {
        let t = pb::TcpStreamEntry {
            inq_len: 3,
            outq_len: 2,
            ..Default::default()
        };
        let p = Payload::Tcp {
            inq: b"abc",
            outq: b"xy",
        };
        entry(o, &t, p);
    });
    let v = good(&tcp);
    assert_eq!(
        (v[0].kind, &v[0].parts[..]),
        ("tcp", &[b"abc".to_vec(), b"xy".to_vec()][..])
    );

    let bpf = image("BPFMAP_DATA", |o| {
        let b = pb::BpfmapDataEntry {
            keys_bytes: 2,
            values_bytes: 3,
            ..Default::default()
        };
        entry(o, &b, Payload::Bytes(b"kkvvv"));
    });
    assert_eq!(good(&bpf)[0].parts, [b"kkvvv".to_vec()]);

    // Segments padded to 4: 5 bytes take 8, 4 take 4, none take none.
    let shm = image("IPCNS_SHM", |o| {
        for d in [&b"abcde"[..], b"abcd", b""] {
            let e = pb::IpcShmEntry {
                desc: desc(),
                size: d.len() as u64,
                ..Default::default()
            };
            entry(o, &e, Payload::Shm(d));
        }
    });
    let v = good(&shm);
    assert_eq!(v[0].raw, b"abcde\0\0\0");
    assert_eq!((v[0].kind, &v[0].parts[0][..]), ("shm", &b"abcde"[..]));
    assert_eq!((v[1].raw.len(), v[2].raw.len()), (4, 0));

    // Three semaphores take 6 bytes, padded to 8.
    let sem = image("IPCNS_SEM", |o| {
        let e = pb::IpcSemEntry {
            desc: desc(),
            nsems: 3,
        };
        entry(o, &e, Payload::Sem(&[1, 0, 2, 0, 0xff, 0xff]));
    });
    let v = good(&sem);
    assert_eq!(v[0].raw, [1, 0, 2, 0, 0xff, 0xff, 0, 0]);
    assert_eq!(v[0].parts, [vec![1, 0, 2, 0, 0xff, 0xff]]);

    // Two queued messages, bodies padded to 8; then an empty queue.
    let msgs = image("IPCNS_MSG", |o| {
        let e = pb::IpcMsgEntry {
            desc: desc(),
            qbytes: 11,
            qnum: 2,
        };
        write_entry(o, &e.encode_to_vec()).unwrap();
        write_ipc_msg(o, &ipc_msg(1, b"abc"), b"abc").unwrap();
        write_ipc_msg(o, &ipc_msg(2, b"12345678"), b"12345678").unwrap();
        let empty = pb::IpcMsgEntry { qnum: 0, ..e };
        entry(o, &empty, Payload::None);
    });
    let v = good(&msgs);
    assert_eq!(v[0].kind, "msgs");
    assert_eq!(
        v[0].parts,
        [
            ipc_msg(1, b"abc"),
            b"abc".to_vec(),
            ipc_msg(2, b"12345678"),
            b"12345678".to_vec()
        ]
    );
    assert_eq!(v[0].raw.len(), 4 + 4 + 8 + 4 + 4 + 8);
    assert_eq!((v[1].kind, v[1].parts.len()), ("msgs", 0));
    // Where each message's header is in the file.
    let mut src = Source::from_slice("t.img", &msgs);
    let mut rd = EntryReader::new(&mut src).unwrap();
    let e = rd.next_entry().unwrap().unwrap();
    let Payload::Msgs(m) = e.payload else {
        panic!("no messages")
    };
    let first = e.message_offset() + e.message.len() as u64 + 4;
    let at: Vec<u64> = m.map(|m| m.header_offset).collect();
    // Header, body padded to 8, the next length prefix.
    assert_eq!(at, [first, first + 4 + 8 + 4]);
}

#[test]
fn ghost_files_plain_and_chunked() {
    let head = |chunks| pb::GhostFileEntry {
        chunks,
        ..Default::default()
    };
    let plain = image("GHOST_FILE", |o| {
        entry(o, &head(None), Payload::Bytes(b"contents"))
    });
    let v = good(&plain);
    assert_eq!(v.len(), 1);
    assert_eq!((v[0].msg, v[0].kind), (msg::GHOST_FILE_ENTRY, "bytes"));
    assert_eq!(v[0].parts, [b"contents".to_vec()]);

    let chunked = image("GHOST_FILE", |o| {
        entry(o, &head(Some(true)), Payload::None);
        for (off, d) in [(0u64, &b"ab"[..]), (10, b"xyz")] {
            let c = pb::GhostChunkEntry {
                len: d.len() as u64,
                off,
            };
            entry(o, &c, Payload::Bytes(d));
        }
    });
    let v = good(&chunked);
    assert_eq!(v.len(), 3);
    assert_eq!((v[0].msg, v[0].kind), (msg::GHOST_FILE_ENTRY, "none"));
    assert_eq!(
        (v[2].msg, &v[2].parts[0][..]),
        (msg::GHOST_CHUNK_ENTRY, &b"xyz"[..])
    );
}

/// A pipes-data image: two entries of 3 and 0 bytes of data.
fn pipes() -> Vec<u8> {
    image("PIPES_DATA", |o| {
        for (id, d) in [(1, &b"abc"[..]), (2, b"")] {
            let e = pb::PipeDataEntry {
                pipe_id: id,
                bytes: d.len() as u32,
                size: None,
            };
            entry(o, &e, Payload::Bytes(d));
        }
    })
}

#[test]
fn truncated_length_prefix_message_and_payload() {
    let img = pipes();
    // Header 8 bytes; entry at 8: prefix, 4 bytes of message, 3 of data.
    assert_eq!(img.len(), 8 + (4 + 4 + 3) + (4 + 4));
    assert_eq!(
        err(&img[..10]),
        "t.img: at byte 8: truncated length prefix: 2 of 4 bytes"
    );
    assert_eq!(
        err(&img[..14]),
        "t.img: at byte 8: entry claims 4 bytes but only 2 are left"
    );
    assert_eq!(
        err(&img[..17]),
        "t.img: at byte 16: truncated payload: needs 3 bytes, only 1 left"
    );
    assert_eq!(
        err(&img[..21]),
        "t.img: at byte 19: truncated length prefix: 2 of 4 bytes"
    );
    // Cut between entries: a shorter, good image.
    assert_eq!(read(&img[..19]).unwrap().len(), 1);
}

#[test]
fn truncated_payload_parts_are_named() {
    let tcp = image("TCP_STREAM", |o| {
        let t = pb::TcpStreamEntry {
            inq_len: 3,
            outq_len: 2,
            ..Default::default()
        };
        entry(
            o,
            &t,
            Payload::Tcp {
                inq: b"abc",
                outq: b"xy",
            },
        );
    });
    let end = tcp.len();
    assert!(err(&tcp[..end - 4]).ends_with("truncated tcp input queue: needs 3 bytes, only 1 left"));
    assert!(
        err(&tcp[..end - 1]).ends_with("truncated tcp output queue: needs 2 bytes, only 1 left")
    );

    let sem = image("IPCNS_SEM", |o| {
        let e = pb::IpcSemEntry {
            desc: desc(),
            nsems: 1,
        };
        entry(o, &e, Payload::Sem(&[7, 0]));
    });
    let end = sem.len();
    let e = err(&sem[..end - 1]);
    assert!(
        e.ends_with("truncated semaphore padding: needs 6 bytes, only 5 left"),
        "{e}"
    );

    let shm = image("IPCNS_SHM", |o| {
        let e = pb::IpcShmEntry {
            desc: desc(),
            size: 1,
            ..Default::default()
        };
        entry(o, &e, Payload::Shm(b"a"));
    });
    let end = shm.len();
    assert!(err(&shm[..end - 1]).ends_with("truncated payload padding: needs 3 bytes, only 2 left"));

    let chunk = image("GHOST_FILE", |o| {
        let head = pb::GhostFileEntry {
            chunks: Some(true),
            ..Default::default()
        };
        entry(o, &head, Payload::None);
        entry(
            o,
            &pb::GhostChunkEntry { len: 4, off: 0 },
            Payload::Bytes(b"abcd"),
        );
    });
    let end = chunk.len();
    assert!(
        err(&chunk[..end - 1]).ends_with("truncated ghost chunk data: needs 4 bytes, only 3 left")
    );
}

#[test]
fn queued_messages_truncated_or_cut_short() {
    let e = pb::IpcMsgEntry {
        desc: desc(),
        qbytes: 3,
        qnum: 2,
    };
    let img = image("IPCNS_MSG", |o| {
        write_entry(o, &e.encode_to_vec()).unwrap();
        write_ipc_msg(o, &ipc_msg(1, b"abc"), b"abc").unwrap();
    });
    // The image ends before the second message: the list ends there.
    let v = good(&img);
    assert_eq!(v[0].parts.len(), 2);
    let end = img.len();
    let first = end - (4 + 4 + 8);
    assert_eq!(
        err(&img[..first + 6]),
        format!("t.img: at byte {first}: message header claims 4 bytes but only 2 are left")
    );
    let body = first + 8;
    assert_eq!(
        err(&img[..body + 2]),
        format!("t.img: at byte {body}: truncated message body: needs 3 bytes, only 2 left")
    );
    assert_eq!(
        err(&img[..end - 1]),
        format!(
            "t.img: at byte {}: truncated message padding: needs 5 bytes, only 4 left",
            body + 3
        )
    );
}

#[test]
fn negative_and_oversized_lengths() {
    let head = &pipes()[..8];
    let mut neg = head.to_vec();
    neg.extend_from_slice(&0xffff_fff0u32.to_le_bytes());
    assert_eq!(
        err(&neg),
        "t.img: at byte 8: entry has a negative length (-16)"
    );
    let mut big = head.to_vec();
    big.extend_from_slice(&0x7fff_ffffu32.to_le_bytes());
    big.extend_from_slice(b"abc");
    assert_eq!(
        err(&big),
        "t.img: at byte 8: entry claims 2147483647 bytes but only 3 are left"
    );
    // The same inside a message queue.
    let img = image("IPCNS_MSG", |o| {
        let e = pb::IpcMsgEntry {
            desc: desc(),
            qbytes: 0,
            qnum: 1,
        };
        write_entry(o, &e.encode_to_vec()).unwrap();
        o.extend_from_slice(&u32::MAX.to_le_bytes());
    });
    let at = img.len() - 4;
    assert_eq!(
        err(&img),
        format!("t.img: at byte {at}: message header has a negative length (-1)")
    );
    // A ghost file's head and chunks are named as such.
    let mut g = image("GHOST_FILE", |_| {});
    g.extend_from_slice(&9u32.to_le_bytes());
    assert_eq!(
        err(&g),
        "t.img: at byte 8: ghost file entry claims 9 bytes but only 0 are left"
    );
}

#[test]
fn payload_length_field_absent() {
    // pipe_data_entry with its pipe_id (field 1) but no bytes (field 2).
    let img = image("PIPES_DATA", |o| write_entry(o, &[0x08, 0x01]).unwrap());
    assert_eq!(
        err(&img),
        "t.img: at byte 12: pipe_data_entry has no bytes, so where its payload ends is unknown"
    );
    let tcp = image("TCP_STREAM", |o| {
        // inq_len (1) and inq_seq (2), no outq_len (3).
        write_entry(o, &[0x08, 0x00, 0x10, 0x00]).unwrap();
    });
    assert!(err(&tcp)
        .ends_with("tcp_stream_entry has no outq_len, so where its payload ends is unknown"));
    let msgs = image("IPCNS_MSG", |o| {
        let e = pb::IpcMsgEntry {
            desc: desc(),
            qbytes: 0,
            qnum: 1,
        };
        write_entry(o, &e.encode_to_vec()).unwrap();
        // mtype (1) only.
        write_entry(o, &[0x08, 0x05]).unwrap();
    });
    let at = msgs.len() - 2;
    assert_eq!(
        err(&msgs),
        format!("t.img: at byte {at}: ipc_msg has no msize, so where its payload ends is unknown")
    );
    let ghost = image("GHOST_FILE", |o| {
        let head = pb::GhostFileEntry {
            chunks: Some(true),
            ..Default::default()
        };
        entry(o, &head, Payload::None);
        // off (2) only.
        write_entry(o, &[0x10, 0x00]).unwrap();
    });
    assert!(
        err(&ghost).ends_with("ghost_chunk_entry has no len, so where its payload ends is unknown")
    );
}

#[test]
fn bad_messages_and_magics() {
    // A wire fault in an entry that carries a payload: where it is.
    let img = image("SK_QUEUES", |o| {
        write_entry(o, &[0x08, 0x01, 0x00]).unwrap()
    });
    assert_eq!(err(&img), "t.img: at byte 14: invalid field number 0");
    assert_eq!(err(b""), "t.img: at byte 0: empty file: no magic");
    assert_eq!(
        err(&img[..6]),
        "t.img: at byte 4: truncated magic: 2 of 4 bytes"
    );
    assert_eq!(
        err(&img[..4]),
        "t.img: at byte 4: truncated magic: the file ends after the common magic"
    );
    assert!(err(&[1, 2, 3, 4]).starts_with("t.img: at byte 0: unknown magic 0x4030201"));
    let mut src = Source::from_slice("t.img", &img);
    let e = EntryReader::expect(&mut src, "FILES").err().unwrap();
    assert_eq!(
        e.to_string(),
        "t.img: at byte 0: expected a FILES image, found SK_QUEUES"
    );
}

#[test]
fn entries_decode_with_their_offset() {
    let img = image("FILES", |o| write_entry(o, &[0x08]).unwrap());
    let mut src = Source::from_slice("t.img", &img);
    let mut rd = EntryReader::expect(&mut src, "FILES").unwrap();
    let e = rd.next_entry().unwrap().unwrap();
    let msg = e.decode::<pb::FileEntry>().unwrap_err().to_string();
    assert!(msg.starts_with("t.img: at byte 8: bad entry: "), "{msg}");
}
