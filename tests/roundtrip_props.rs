//! Property tests: random messages (unix sockets, files, VMAs, mm, core),
//! framed into images with `ImageBuilder`, decoded to JSON (compact and
//! pretty), encoded back: the image must come back byte for byte.
//!
//! prost writes fields in field-number order with minimal varints and
//! always writes `required` fields, as CRIU's protobuf-c does, so its bytes
//! are the canonical form that encode must reproduce. Strings that are not
//! UTF-8 and fields unknown to the schema cannot be held in prost structs:
//! those messages are written by hand with the small wire encoder below.

use crit::image::pb;
use crit::image::source::Source;
use crit::image::typed::ImageBuilder;
use crit::json::image::{decode, encode, DecodeOpts};
use crit::json::reader::JsonReader;
use crit::json::writer::JsonWriter;
use proptest::collection::vec;
use proptest::option::of as opt;
use proptest::prelude::*;
use prost::Message;

// ---------------------------------------------------------------- harness

fn to_json(img: &[u8], pretty: bool) -> Vec<u8> {
    let mut src = Source::from_slice("prop.img", img);
    let mut w = JsonWriter::new(Vec::new(), pretty);
    if let Err(e) = decode(
        &mut src,
        &mut w,
        DecodeOpts {
            pretty,
            nopl: false,
        },
    ) {
        panic!("decode (pretty={pretty}) failed: {e}\nimage: {img:02x?}");
    }
    w.finish().unwrap()
}

fn to_image(json: &[u8]) -> Result<Vec<u8>, String> {
    let mut r = JsonReader::new(json);
    let mut out = Vec::new();
    encode(&mut r, "prop.json", &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// decode → encode gives back `img`, in both JSON styles.
fn assert_round_trip(img: &[u8]) -> Result<(), TestCaseError> {
    for pretty in [false, true] {
        let json = to_json(img, pretty);
        let back = to_image(&json).map_err(|e| {
            TestCaseError::fail(format!(
                "encode (pretty={pretty}) failed: {e}\njson: {}",
                String::from_utf8_lossy(&json)
            ))
        })?;
        if back != img {
            let at = back
                .iter()
                .zip(img)
                .position(|(a, b)| a != b)
                .unwrap_or(back.len().min(img.len()));
            return Err(TestCaseError::fail(format!(
                "pretty={pretty}: round trip differs at byte {at} (lengths {} → {})\njson: {}\nin:  {:02x?}\nout: {:02x?}",
                img.len(),
                back.len(),
                String::from_utf8_lossy(&json),
                img,
                back
            )));
        }
    }
    Ok(())
}

fn image<T: Message>(magic: &str, entries: &[T]) -> Vec<u8> {
    let mut b = ImageBuilder::new(magic).unwrap();
    for e in entries {
        b.entry(e);
    }
    b.bytes
}

/// `cases` per property; PROPTEST_CASES=N runs more (e.g. for a long hunt).
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        // Failures are reported in the test output; no files in the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ------------------------------------------------------------- strategies

/// Bytes with NULs, high bytes and printable text all likely.
fn bytes(max: usize) -> BoxedStrategy<Vec<u8>> {
    vec(
        prop_oneof![
            3 => 0x20u8..0x7f,
            1 => Just(0u8),
            1 => 0x80u8..=0xff,
            1 => any::<u8>(),
        ],
        0..max,
    )
    .boxed()
}

/// Any Unicode scalar values: controls, NUL, quotes, astral characters.
fn text(max: usize) -> BoxedStrategy<String> {
    vec(
        prop_oneof![
            3 => proptest::char::range(' ', '~'),
            1 => prop_oneof![Just('\0'), Just('"'), Just('\\'), Just('\n'), Just('\u{7f}')],
            1 => any::<char>(),
        ],
        0..max,
    )
    .prop_map(|v| v.into_iter().collect())
    .boxed()
}

/// u32s that stress the number forms: small, flag-like and extreme.
fn num32() -> BoxedStrategy<u32> {
    prop_oneof![
        2 => 0u32..16,
        1 => any::<u32>(),
        1 => prop_oneof![Just(u32::MAX), Just(0x8000_0000u32), Just(0o100002u32)],
    ]
    .boxed()
}

fn num64() -> BoxedStrategy<u64> {
    prop_oneof![
        2 => 0u64..4096,
        2 => any::<u64>(),
        1 => prop_oneof![Just(u64::MAX), Just(1u64 << 63), Just(0x7fff_ffff_f000u64)],
    ]
    .boxed()
}

/// Enum numbers: mostly known values, sometimes unknown or negative.
fn enum_val(known: std::ops::Range<i32>) -> BoxedStrategy<i32> {
    prop_oneof![4 => known, 1 => any::<i32>()].boxed()
}

fn fown() -> BoxedStrategy<pb::FownEntry> {
    (num32(), num32(), num32(), num32(), num32())
        .prop_map(|(uid, euid, signum, pid_type, pid)| pb::FownEntry {
            uid,
            euid,
            signum,
            pid_type,
            pid,
        })
        .boxed()
}

fn sk_opts() -> BoxedStrategy<pb::SkOptsEntry> {
    (
        (num32(), num32(), num64(), num64(), num64(), num64()),
        (
            opt(any::<bool>()),
            opt(num32()),
            opt(num32()),
            opt(num32()),
            opt(any::<bool>()),
            opt(any::<bool>()),
        ),
        (
            opt(any::<bool>()),
            opt(any::<bool>()),
            opt(text(12)),
            vec(any::<u64>(), 0..3),
        ),
        (
            opt(any::<bool>()),
            opt(any::<bool>()),
            opt(any::<bool>()),
            opt(num32()),
            opt(num32()),
        ),
        (opt(num32()), opt(num32()), opt(num32()), opt(num32())),
    )
        .prop_map(|(a, b, c, d, e)| pb::SkOptsEntry {
            so_sndbuf: a.0,
            so_rcvbuf: a.1,
            so_snd_tmo_sec: a.2,
            so_snd_tmo_usec: a.3,
            so_rcv_tmo_sec: a.4,
            so_rcv_tmo_usec: a.5,
            reuseaddr: b.0,
            so_priority: b.1,
            so_rcvlowat: b.2,
            so_mark: b.3,
            so_passcred: b.4,
            so_passsec: b.5,
            so_dontroute: c.0,
            so_no_check: c.1,
            so_bound_dev: c.2,
            so_filter: c.3,
            so_reuseport: d.0,
            so_broadcast: d.1,
            so_keepalive: d.2,
            tcp_keepcnt: d.3,
            tcp_keepidle: d.4,
            tcp_keepintvl: e.0,
            so_oobinline: e.1,
            so_linger: e.2,
            so_buf_lock: e.3,
        })
        .boxed()
}

fn unix_sk() -> BoxedStrategy<pb::UnixSkEntry> {
    (
        (
            num32(),
            num32(),
            0u32..7,
            0u32..13,
            num32(),
            num32(),
            num32(),
            num32(),
        ),
        (fown(), sk_opts(), bytes(40)),
        (
            opt(enum_val(0..4)),
            opt((num32(), num32(), num32())),
            opt(text(20)),
            opt(any::<bool>()),
            opt(num32()),
            opt(any::<i32>()),
        ),
    )
        .prop_map(|(a, (fown, opts, name), c)| pb::UnixSkEntry {
            id: a.0,
            ino: a.1,
            r#type: a.2,
            state: a.3,
            flags: a.4,
            uflags: a.5,
            backlog: a.6,
            peer: a.7,
            fown,
            opts,
            name,
            shutdown: c.0,
            file_perms: c
                .1
                .map(|(mode, uid, gid)| pb::FilePermsEntry { mode, uid, gid }),
            name_dir: c.2,
            deleted: c.3,
            ns_id: c.4,
            mnt_id: c.5,
        })
        .boxed()
}

fn reg_file() -> BoxedStrategy<pb::RegFileEntry> {
    (
        (num32(), num32(), num64(), fown(), text(40)),
        (
            opt(any::<i32>()),
            opt(num64()),
            opt(any::<bool>()),
            opt(num32()),
            vec(any::<u32>(), 0..6),
        ),
        (opt(num32()), opt(num32()), opt(num32())),
    )
        .prop_map(|(a, b, c)| pb::RegFileEntry {
            id: a.0,
            flags: a.1,
            pos: a.2,
            fown: a.3,
            name: a.4,
            mnt_id: b.0,
            size: b.1,
            ext: b.2,
            mode: b.3,
            build_id: b.4,
            checksum: c.0,
            checksum_config: c.1,
            checksum_parameter: c.2,
        })
        .boxed()
}

fn file_entry() -> BoxedStrategy<pb::FileEntry> {
    (
        enum_val(0..22),
        num32(),
        opt(reg_file()),
        opt(unix_sk()),
        opt((num32(), num32(), num32(), fown())),
        opt((num32(), num32(), opt(num32()))),
    )
        .prop_map(|(ty, id, reg, usk, pipe, fifo)| pb::FileEntry {
            r#type: ty,
            id,
            reg,
            usk,
            pipe: pipe.map(|(id, pipe_id, flags, fown)| pb::PipeEntry {
                id,
                pipe_id,
                flags,
                fown,
            }),
            fifo: fifo.map(|(id, pipe_id, regf_id)| pb::FifoEntry {
                id,
                pipe_id,
                regf_id,
            }),
            ..Default::default()
        })
        .boxed()
}

fn vma() -> BoxedStrategy<pb::VmaEntry> {
    (
        (num64(), num64(), num64(), num64()),
        (
            0u32..16,
            num32(),
            num32(),
            prop_oneof![Just(-1i64), any::<i64>()],
        ),
        (opt(num64()), opt(num32())),
    )
        .prop_map(|(a, b, c)| pb::VmaEntry {
            start: a.0,
            end: a.1,
            pgoff: a.2,
            shmid: a.3,
            prot: b.0,
            flags: b.1,
            status: b.2,
            fd: b.3,
            madv: c.0,
            fdflags: c.1,
        })
        .boxed()
}

fn mm() -> BoxedStrategy<pb::MmEntry> {
    (
        vec(num64(), 11),
        num32(),
        vec(num64(), 0..12),
        vec(vma(), 0..5),
        (opt(any::<i32>()), opt(any::<bool>())),
    )
        .prop_map(|(f, exe, auxv, vmas, (dumpable, thp))| pb::MmEntry {
            mm_start_code: f[0],
            mm_end_code: f[1],
            mm_start_data: f[2],
            mm_end_data: f[3],
            mm_start_stack: f[4],
            mm_start_brk: f[5],
            mm_brk: f[6],
            mm_arg_start: f[7],
            mm_arg_end: f[8],
            mm_env_start: f[9],
            mm_env_end: f[10],
            exe_file_id: exe,
            mm_saved_auxv: auxv,
            vmas,
            dumpable,
            thp_disabled: thp,
            ..Default::default()
        })
        .boxed()
}

fn gpregs() -> BoxedStrategy<pb::UserX86RegsEntry> {
    (vec(num64(), 27), opt(enum_val(1..3)))
        .prop_map(|(r, mode)| pb::UserX86RegsEntry {
            r15: r[0],
            r14: r[1],
            r13: r[2],
            r12: r[3],
            bp: r[4],
            bx: r[5],
            r11: r[6],
            r10: r[7],
            r9: r[8],
            r8: r[9],
            ax: r[10],
            cx: r[11],
            dx: r[12],
            si: r[13],
            di: r[14],
            orig_ax: r[15],
            ip: r[16],
            cs: r[17],
            flags: r[18],
            sp: r[19],
            ss: r[20],
            fs_base: r[21],
            gs_base: r[22],
            ds: r[23],
            es: r[24],
            fs: r[25],
            gs: r[26],
            mode,
        })
        .boxed()
}

fn fpregs() -> BoxedStrategy<pb::UserX86FpregsEntry> {
    (
        vec(num32(), 6),
        num64(),
        num64(),
        vec(any::<u32>(), 0..8),
        vec(any::<u32>(), 0..8),
    )
        .prop_map(|(v, rip, rdp, st, xmm)| pb::UserX86FpregsEntry {
            cwd: v[0],
            swd: v[1],
            twd: v[2],
            fop: v[3],
            rip,
            rdp,
            mxcsr: v[4],
            mxcsr_mask: v[5],
            st_space: st,
            xmm_space: xmm,
            ..Default::default()
        })
        .boxed()
}

fn task_core() -> BoxedStrategy<pb::TaskCoreEntry> {
    (
        (num32(), num32(), num32(), num32(), num64(), text(16)),
        (
            opt(num32()),
            opt(num32()),
            opt(any::<i32>()),
            opt(any::<bool>()),
            opt(num64()),
        ),
        vec(
            (
                num64(),
                num64(),
                num64(),
                num64(),
                opt(any::<bool>()),
                opt(num64()),
            ),
            0..4,
        ),
        opt(vec((num64(), num64()), 0..4)),
    )
        .prop_map(|(a, b, sas, rl)| pb::TaskCoreEntry {
            task_state: a.0,
            exit_code: a.1,
            personality: a.2,
            flags: a.3,
            blk_sigset: a.4,
            comm: a.5,
            cg_set: b.0,
            loginuid: b.1,
            oom_score_adj: b.2,
            child_subreaper: b.3,
            blk_sigset_extended: b.4,
            sigactions: sas
                .into_iter()
                .map(|s| pb::SaEntry {
                    sigaction: s.0,
                    flags: s.1,
                    restorer: s.2,
                    mask: s.3,
                    compat_sigaction: s.4,
                    mask_extended: s.5,
                })
                .collect(),
            rlimits: rl.map(|v| pb::TaskRlimitsEntry {
                rlimits: v
                    .into_iter()
                    .map(|(cur, max)| pb::RlimitEntry { cur, max })
                    .collect(),
            }),
            ..Default::default()
        })
        .boxed()
}

fn thread_core() -> BoxedStrategy<pb::ThreadCoreEntry> {
    (
        (
            num64(),
            num32(),
            opt(any::<i32>()),
            opt(num32()),
            opt(num32()),
            opt(num64()),
        ),
        (
            opt(num32()),
            opt(enum_val(0..3)),
            opt(num32()),
            opt(text(16)),
            opt(num32()),
        ),
    )
        .prop_map(|(a, b)| pb::ThreadCoreEntry {
            futex_rla: a.0,
            futex_rla_len: a.1,
            sched_nice: a.2,
            sched_policy: a.3,
            sched_prio: a.4,
            blk_sigset: a.5,
            pdeath_sig: b.0,
            seccomp_mode: b.1,
            seccomp_filter: b.2,
            comm: b.3,
            cg_set: b.4,
            ..Default::default()
        })
        .boxed()
}

fn core() -> BoxedStrategy<pb::CoreEntry> {
    (
        enum_val(0..9),
        opt((num64(), gpregs(), fpregs())),
        opt(task_core()),
        opt(thread_core()),
    )
        .prop_map(|(mtype, ti, tc, thread_core)| pb::CoreEntry {
            mtype,
            thread_info: ti.map(|(clear_tid_addr, gpregs, fpregs)| pb::ThreadInfoX86 {
                clear_tid_addr,
                gpregs,
                fpregs,
                ..Default::default()
            }),
            tc,
            thread_core,
            ..Default::default()
        })
        .boxed()
}

// ------------------------------------------------ hand-made wire messages

/// Enough of the protobuf wire format to write what prost cannot: string
/// fields holding bytes that are not UTF-8, and unknown fields.
mod wire {
    pub fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    pub fn key(out: &mut Vec<u8>, field: u32, wt: u8) {
        varint(out, (u64::from(field) << 3) | u64::from(wt));
    }
    pub fn uint(out: &mut Vec<u8>, field: u32, v: u64) {
        key(out, field, 0);
        varint(out, v);
    }
    pub fn len(out: &mut Vec<u8>, field: u32, data: &[u8]) {
        key(out, field, 2);
        varint(out, data.len() as u64);
        out.extend_from_slice(data);
    }
    pub fn fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
        key(out, field, 1);
        out.extend_from_slice(&v.to_le_bytes());
    }
    pub fn fixed32(out: &mut Vec<u8>, field: u32, v: u32) {
        key(out, field, 5);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn fown_bytes(f: &pb::FownEntry) -> Vec<u8> {
    f.encode_to_vec()
}

/// A `file_entry` of type REG whose `reg.name` is `name` (any bytes).
fn reg_file_raw(
    id: u32,
    flags: u32,
    pos: u64,
    fown: &pb::FownEntry,
    name: &[u8],
    size: Option<u64>,
) -> Vec<u8> {
    let mut reg = Vec::new();
    wire::uint(&mut reg, 1, id.into());
    wire::uint(&mut reg, 2, flags.into());
    wire::uint(&mut reg, 3, pos);
    wire::len(&mut reg, 5, &fown_bytes(fown));
    wire::len(&mut reg, 6, name);
    if let Some(s) = size {
        wire::uint(&mut reg, 8, s);
    }
    let mut fe = Vec::new();
    wire::uint(&mut fe, 1, pb::FdTypes::Reg as u64);
    wire::uint(&mut fe, 2, id.into());
    wire::len(&mut fe, 3, &reg);
    fe
}

/// A `task_core_entry` whose `comm` is `comm` (any bytes).
fn task_core_raw(state: u32, comm: &[u8]) -> Vec<u8> {
    let mut tc = Vec::new();
    wire::uint(&mut tc, 1, state.into());
    wire::uint(&mut tc, 2, 0);
    wire::uint(&mut tc, 3, 0);
    wire::uint(&mut tc, 4, 0x40_0140);
    wire::uint(&mut tc, 5, 0);
    wire::len(&mut tc, 6, comm);
    let mut core = Vec::new();
    wire::uint(&mut core, 1, pb::core_entry::March::X8664 as u64);
    wire::len(&mut core, 3, &tc);
    core
}

/// Fields of numbers the schemas do not use, of every wire type, in
/// ascending field order as a newer CRIU's protobuf-c would write them.
/// (Unknown fields out of order, or repeats of known fields, do not come
/// back byte for byte by design: encode writes fields in number order.)
fn unknown_fields() -> BoxedStrategy<Vec<u8>> {
    vec((1000u32..5000, 0u8..4, any::<u64>(), bytes(12)), 1..4)
        .prop_map(|mut v| {
            v.sort_by_key(|f| f.0);
            let mut out = Vec::new();
            for (field, kind, n, data) in v {
                match kind {
                    0 => wire::uint(&mut out, field, n),
                    1 => wire::fixed64(&mut out, field, n),
                    2 => wire::len(&mut out, field, &data),
                    _ => wire::fixed32(&mut out, field, n as u32),
                }
            }
            out
        })
        .boxed()
}

fn frame(magic: &str, entries: &[Vec<u8>]) -> Vec<u8> {
    let mut b = ImageBuilder::new(magic).unwrap();
    for e in entries {
        b.message(e);
    }
    b.bytes
}

// ----------------------------------------------------------------- tests

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn unix_sockets_round_trip(e in vec(unix_sk(), 1..4)) {
        assert_round_trip(&image("UNIXSK", &e))?;
        // The same sockets as files.img entries.
        let files: Vec<pb::FileEntry> = e
            .into_iter()
            .map(|u| pb::FileEntry { r#type: pb::FdTypes::Unixsk as i32, id: u.id, usk: Some(u), ..Default::default() })
            .collect();
        assert_round_trip(&image("FILES", &files))?;
    }

    #[test]
    fn files_round_trip(e in vec(file_entry(), 1..4)) {
        assert_round_trip(&image("FILES", &e))?;
    }

    #[test]
    fn reg_files_round_trip(e in vec(reg_file(), 1..4)) {
        assert_round_trip(&image("REG_FILES", &e))?;
    }

    #[test]
    fn vmas_round_trip(e in vec(vma(), 1..6)) {
        assert_round_trip(&image("VMAS", &e))?;
    }

    #[test]
    fn mm_round_trip(e in mm()) {
        assert_round_trip(&image("MM", &[e]))?;
    }

    #[test]
    fn core_round_trip(e in core()) {
        assert_round_trip(&image("CORE", &[e]))?;
    }

    #[test]
    fn non_utf8_strings_round_trip(
        name in bytes(40),
        comm in bytes(20),
        id in num32(),
        flags in num32(),
        pos in num64(),
        size in opt(num64()),
        fown in fown(),
    ) {
        let fe = reg_file_raw(id, flags, pos, &fown, &name, size);
        assert_round_trip(&frame("FILES", &[fe]))?;
        assert_round_trip(&frame("CORE", &[task_core_raw(id, &comm)]))?;
    }

    #[test]
    fn unknown_fields_round_trip(
        sk in unix_sk(),
        extra in unknown_fields(),
        fown in fown(),
        fown_extra in unknown_fields(),
    ) {
        // At the end of the entry.
        let mut data = sk.encode_to_vec();
        data.extend_from_slice(&extra);
        assert_round_trip(&frame("UNIXSK", &[data]))?;
        // At the end of a nested message (the socket's fown, field 9).
        let mut f = fown.encode_to_vec();
        f.extend_from_slice(&fown_extra);
        let mut data = Vec::new();
        for (n, v) in [(1, sk.id), (2, sk.ino), (3, sk.r#type), (4, sk.state), (5, sk.flags), (6, sk.uflags), (7, sk.backlog), (8, sk.peer)] {
            wire::uint(&mut data, n, v.into());
        }
        wire::len(&mut data, 9, &f);
        wire::len(&mut data, 10, &sk.opts.encode_to_vec());
        wire::len(&mut data, 11, &sk.name);
        assert_round_trip(&frame("UNIXSK", &[data]))?;
    }
}

/// Hand-picked strings whose escapes are easy to get wrong.
#[test]
fn awkward_names_round_trip() {
    let fown = pb::FownEntry::default();
    let names: &[&[u8]] = &[
        b"",
        b"\0",
        b"\0abc\0",
        b"\xff\xfe",
        b"\xed\xa0\x80",     // a UTF-16 surrogate encoded as UTF-8: not UTF-8
        b"\xc3",             // a truncated two-byte sequence
        b"\xf0\x9f\x98\x80", // an astral character
        b"\xf4\x90\x80\x80", // above U+10FFFF
        b"\xc0\x80",         // overlong NUL
        b"a\\b\"c\n\x7f",
        b"\x1b[0m",
    ];
    for n in names {
        let img = frame("FILES", &[reg_file_raw(1, 2, 3, &fown, n, Some(4))]);
        if let Err(e) = assert_round_trip(&img) {
            panic!("name {n:02x?}: {e}");
        }
        let sk = pb::UnixSkEntry {
            name: n.to_vec(),
            ..Default::default()
        };
        if let Err(e) = assert_round_trip(&image("UNIXSK", &[sk])) {
            panic!("socket name {n:02x?}: {e}");
        }
    }
}
