//! Where crit writes its output: a regular file is replaced atomically
//! (a killed writer leaves nothing behind); a device node, FIFO or
//! /dev/stdout is written into and stays what it is; a symlink is
//! followed and stays a link.

mod kit;

use kit::cli::crit;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

fn image(dir: &Path, mb: usize) -> PathBuf {
    kit::cli::pipes_data_image(dir, mb)
}

fn decode_to(img: &Path, out: &str) -> std::process::Output {
    crit()
        .args(["decode", "-i", img.to_str().unwrap(), "-o", out])
        .output()
        .unwrap()
}

/// What `-o PATH` writes: the JSON crit prints on stdout, without the
/// final newline (as crit 4.2 writes a file).
fn expected(img: &Path) -> Vec<u8> {
    let o = crit()
        .args(["decode", "-i", img.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success());
    let mut v = o.stdout;
    assert_eq!(v.pop(), Some(b'\n'));
    v
}

fn same(got: &[u8], want: &[u8], what: &str) {
    assert!(
        got == want,
        "{what}: {} bytes, expected {}",
        got.len(),
        want.len()
    );
}

#[test]
fn devices_stay_devices() {
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path(), 1);
    let null = d.path().join("null");
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    if mknod(
        &null,
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        makedev(1, 3),
    )
    .is_err()
    {
        eprintln!("skipped: mknod needs CAP_MKNOD (CI runs as root)");
        return;
    }
    let o = decode_to(&img, null.to_str().unwrap());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = std::fs::symlink_metadata(&null).unwrap();
    assert!(m.file_type().is_char_device(), "still a device");
    assert_eq!(m.rdev(), makedev(1, 3));
}

#[test]
fn a_fifo_is_written_into() {
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path(), 1);
    let fifo = d.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let f2 = fifo.clone();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::fs::File::open(&f2)
            .unwrap()
            .read_to_end(&mut v)
            .unwrap();
        v
    });
    let o = decode_to(&img, fifo.to_str().unwrap());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = reader.join().unwrap();
    same(&got, &expected(&img), "read from the fifo");
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
}

#[test]
fn dev_stdout_is_stdout() {
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path(), 1);
    let o = decode_to(&img, "/dev/stdout");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    same(&o.stdout, &expected(&img), "stdout");
}

#[test]
fn a_symlink_is_followed_and_kept() {
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path(), 1);
    let target = d.path().join("target.json");
    std::fs::write(&target, b"old").unwrap();
    let link = d.path().join("link.json");
    std::os::unix::fs::symlink("target.json", &link).unwrap();
    let o = decode_to(&img, link.to_str().unwrap());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    same(
        &std::fs::read(&target).unwrap(),
        &expected(&img),
        "the link's target",
    );
}

/// SIGKILL at any moment of a decode into a file leaves no temporary
/// file, and the target either as it was or complete.
#[test]
fn killed_writers_leave_nothing() {
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path(), 16);
    let out_dir = d.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("x.json");
    for k in 0..30u64 {
        let mut c = crit()
            .args([
                "decode",
                "-i",
                img.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(k * 13 % 200));
        let _ = c.kill();
        let _ = c.wait();
        let names: Vec<String> = std::fs::read_dir(&out_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| n == "x.json"),
            "left behind after kill {k}: {names:?}"
        );
    }
}
