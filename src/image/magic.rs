//! CRIU's magic table: which 32-bit magic starts which image, what its
//! entries are, and what raw bytes follow an entry.

use super::schema::msg;

/// Written first in every image but `inventory.img`.
pub const IMG_COMMON: u32 = 0x5456_4319;
/// Written first in the service files (`stats-*`, `irmap-cache`).
pub const IMG_SERVICE: u32 = 0x5510_5940;

/// What comes after each entry's message, and how long it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    None,
    /// `bytes` field of `pipe_data_entry` (pipes-data, fifo-data).
    PipeData,
    /// `length` field of `sk_packet_entry` (sk-queues).
    SkQueue,
    /// `inq_len` then `outq_len` bytes (tcp-stream).
    TcpStream,
    /// `keys_bytes + values_bytes` (bpfmap-data).
    BpfMap,
    /// `size` bytes padded to 4 (ipcns-shm).
    IpcShm,
    /// `nsems` u16 values padded to 8 (ipcns-sem).
    IpcSem,
    /// `qnum` framed `ipc_msg` entries, each followed by `msize` bytes padded to 8 (ipcns-msg).
    IpcMsg,
}

/// How an image's entries are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Every entry is the same message, maybe followed by a payload.
    Entries(usize, Payload),
    /// A `pagemap_head`, then `pagemap_entry`s.
    Pagemap,
    /// A `ghost_file_entry`, then either the file's bytes or
    /// `ghost_chunk_entry`s each followed by its bytes.
    GhostFile,
}

/// Which first magic an image carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    /// Only the image's own magic (inventory.img).
    Bare,
    Common,
    Service,
}

#[derive(Debug)]
pub struct Magic {
    /// crit's name, used as `"magic"` in the JSON.
    pub name: &'static str,
    pub value: u32,
    pub header: Header,
    pub layout: Layout,
}

const fn m(name: &'static str, value: u32, layout: Layout) -> Magic {
    Magic {
        name,
        value,
        header: Header::Common,
        layout,
    }
}

const fn e(message: usize) -> Layout {
    Layout::Entries(message, Payload::None)
}

/// Every protobuf image CRIU 4.2 writes. Magics shared by several files
/// (pagemap and pagemap-shmem) appear once, under crit's name.
pub static MAGICS: &[Magic] = &[
    Magic {
        name: "INVENTORY",
        value: 0x5831_3116,
        header: Header::Bare,
        layout: e(msg::INVENTORY_ENTRY),
    },
    m("PSTREE", 0x5027_3030, e(msg::PSTREE_ENTRY)),
    m("FDINFO", 0x5621_3732, e(msg::FDINFO_ENTRY)),
    m("PAGEMAP", 0x5608_4025, Layout::Pagemap),
    m("CORE", 0x5505_3847, e(msg::CORE_ENTRY)),
    m("IDS", 0x5443_2030, e(msg::TASK_KOBJ_IDS_ENTRY)),
    m("VMAS", 0x5412_3737, e(msg::VMA_ENTRY)),
    m("PIPES", 0x5651_3555, e(msg::PIPE_ENTRY)),
    m(
        "PIPES_DATA",
        0x5645_3709,
        Layout::Entries(msg::PIPE_DATA_ENTRY, Payload::PipeData),
    ),
    m("FIFO", 0x5836_4939, e(msg::FIFO_ENTRY)),
    m(
        "FIFO_DATA",
        0x5933_3054,
        Layout::Entries(msg::PIPE_DATA_ENTRY, Payload::PipeData),
    ),
    m("SIGACT", 0x5534_4201, e(msg::SA_ENTRY)),
    m("UNIXSK", 0x5437_3943, e(msg::UNIX_SK_ENTRY)),
    m("INETSK", 0x5644_3851, e(msg::INET_SK_ENTRY)),
    m("PACKETSK", 0x6045_4618, e(msg::PACKET_SOCK_ENTRY)),
    m("ITIMERS", 0x5746_4056, e(msg::ITIMER_ENTRY)),
    m("POSIX_TIMERS", 0x5260_3957, e(msg::POSIX_TIMER_ENTRY)),
    m(
        "SK_QUEUES",
        0x5626_4026,
        Layout::Entries(msg::SK_PACKET_ENTRY, Payload::SkQueue),
    ),
    m("UTSNS", 0x5447_3203, e(msg::UTSNS_ENTRY)),
    m("CREDS", 0x5402_3547, e(msg::CREDS_ENTRY)),
    m("IPC_VAR", 0x5311_5007, e(msg::IPC_VAR_ENTRY)),
    m(
        "IPCNS_SHM",
        0x4628_3044,
        Layout::Entries(msg::IPC_SHM_ENTRY, Payload::IpcShm),
    ),
    m(
        "IPCNS_MSG",
        0x5545_3737,
        Layout::Entries(msg::IPC_MSG_ENTRY, Payload::IpcMsg),
    ),
    m(
        "IPCNS_SEM",
        0x5957_3019,
        Layout::Entries(msg::IPC_SEM_ENTRY, Payload::IpcSem),
    ),
    m("REG_FILES", 0x5036_3636, e(msg::REG_FILE_ENTRY)),
    m("EXT_FILES", 0x5925_5641, e(msg::EXT_FILE_ENTRY)),
    m("FS", 0x5140_3912, e(msg::FS_ENTRY)),
    m("MM", 0x5749_2820, e(msg::MM_ENTRY)),
    m("REMAP_FPATH", 0x5913_3954, e(msg::REMAP_FILE_PATH_ENTRY)),
    m("GHOST_FILE", 0x5258_3605, Layout::GhostFile),
    m(
        "TCP_STREAM",
        0x5146_5506,
        Layout::Entries(msg::TCP_STREAM_ENTRY, Payload::TcpStream),
    ),
    m("EVENTFD_FILE", 0x4452_3722, e(msg::EVENTFD_FILE_ENTRY)),
    m("EVENTPOLL_FILE", 0x4502_3858, e(msg::EVENTPOLL_FILE_ENTRY)),
    m("EVENTPOLL_TFD", 0x4443_3746, e(msg::EVENTPOLL_TFD_ENTRY)),
    m("SIGNALFD", 0x5732_3820, e(msg::SIGNALFD_ENTRY)),
    m("INOTIFY_FILE", 0x4842_4431, e(msg::INOTIFY_FILE_ENTRY)),
    m("INOTIFY_WD", 0x5456_2009, e(msg::INOTIFY_WD_ENTRY)),
    m("MNTS", 0x5556_3928, e(msg::MNT_ENTRY)),
    m("NETDEV", 0x5737_3951, e(msg::NET_DEVICE_ENTRY)),
    m("NETNS", 0x5593_3752, e(msg::NETNS_ENTRY)),
    m("TTY_FILES", 0x5943_3025, e(msg::TTY_FILE_ENTRY)),
    m("TTY_INFO", 0x5945_3036, e(msg::TTY_INFO_ENTRY)),
    m("TTY_DATA", 0x5941_3026, e(msg::TTY_DATA_ENTRY)),
    m("FILE_LOCKS", 0x5432_3616, e(msg::FILE_LOCK_ENTRY)),
    m("RLIMIT", 0x5711_3925, e(msg::RLIMIT_ENTRY)),
    m("FANOTIFY_FILE", 0x5509_6122, e(msg::FANOTIFY_FILE_ENTRY)),
    m("FANOTIFY_MARK", 0x5650_6035, e(msg::FANOTIFY_MARK_ENTRY)),
    m("SIGNAL", 0x5925_5647, e(msg::SIGINFO_ENTRY)),
    m("NETLINK_SK", 0x5800_5614, e(msg::NETLINK_SK_ENTRY)),
    m("NS_FILES", 0x6139_4011, e(msg::NS_FILE_ENTRY)),
    m("TUNFILE", 0x5714_3751, e(msg::TUNFILE_ENTRY)),
    m("CGROUP", 0x5938_3330, e(msg::CGROUP_ENTRY)),
    m("TIMERFD", 0x5049_3712, e(msg::TIMERFD_ENTRY)),
    m("CPUINFO", 0x6140_4013, e(msg::CPUINFO_ENTRY)),
    m("USERNS", 0x5547_4906, e(msg::USERNS_ENTRY)),
    m("SECCOMP", 0x6441_3049, e(msg::SECCOMP_ENTRY)),
    m("BINFMT_MISC", 0x6734_3323, e(msg::BINFMT_MISC_ENTRY)),
    m("AUTOFS", 0x4935_3943, e(msg::AUTOFS_ENTRY)),
    m("FILES", 0x5630_3138, e(msg::FILE_ENTRY)),
    m("MEMFD_INODE", 0x4845_3499, e(msg::MEMFD_INODE_ENTRY)),
    m("TIMENS", 0x4311_4433, e(msg::TIMENS_ENTRY)),
    m("PIDNS", 0x6115_7326, e(msg::PIDNS_ENTRY)),
    m("BPFMAP_FILE", 0x5750_6142, e(msg::BPFMAP_FILE_ENTRY)),
    m(
        "BPFMAP_DATA",
        0x6432_4033,
        Layout::Entries(msg::BPFMAP_DATA_ENTRY, Payload::BpfMap),
    ),
    m("APPARMOR", 0x5942_3047, e(msg::APPARMOR_ENTRY)),
    m("PIDFD", 0x5443_5556, e(msg::PIDFD_ENTRY)),
    Magic {
        name: "STATS",
        value: 0x5709_3306,
        header: Header::Service,
        layout: e(msg::STATS_ENTRY),
    },
    Magic {
        name: "IRMAP_CACHE",
        value: 0x5700_4059,
        header: Header::Service,
        layout: e(msg::IRMAP_CACHE_ENTRY),
    },
];

pub fn by_value(value: u32) -> Option<&'static Magic> {
    MAGICS.iter().find(|m| m.value == value)
}

pub fn by_name(name: &[u8]) -> Option<&'static Magic> {
    MAGICS.iter().find(|m| m.name.as_bytes() == name)
}

/// Files CRIU writes without any magic, recognised by their names.
/// Returns a description of what the file holds.
pub fn raw_kind(file_name: &str) -> Option<&'static str> {
    let stem = file_name.strip_suffix(".img").unwrap_or(file_name);
    let numbered = |prefix: &str| {
        stem.strip_prefix(prefix)
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
    };
    if numbered("pages-") {
        Some("raw memory pages, described by a pagemap image")
    } else if stem.starts_with("pages-shmem-") {
        Some("raw shared memory pages (old format)")
    } else if numbered("ifaddr-") || numbered("route-") || numbered("route6-") || numbered("rule-")
    {
        Some("raw netlink dump of a network namespace (ip tool format)")
    } else if numbered("iptables-") || numbered("ip6tables-") || numbered("nftables-") {
        Some("raw firewall rules dump")
    } else if numbered("netns-ct-") || numbered("netns-exp-") {
        Some("raw conntrack dump")
    } else if file_name.starts_with("tmpfs-") && file_name.ends_with(".tar.gz") {
        Some("tar archive of a tmpfs mount")
    } else {
        None
    }
}
