//! Page server connections over TLS (`--tls`), as CRIU 4.2 makes them:
//! both sides present a certificate signed by the CA and check the
//! other's; the client checks that the server's names `--address`, the
//! server that the client's names the address it listens on (if given);
//! a certificate with the name only in its common name passes (CRIU's
//! GnuTLS falls back to it); `--tls-no-cn-verify` skips the name only; a
//! revoked certificate in `--tls-cacrl` is refused. A dump refused fails
//! with one line and its task runs on, checking its memory intact.
//! The certificates are made here (rcgen).

mod kit;

use kit::gens::{ask, crit, ok, restore_and_ask, start};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber,
};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

/// A CA, and certificates it signs, as PEM files in one directory.
struct Pki {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    serial: u64,
}

impl Pki {
    /// A CA named `name`, its certificate at DIR/NAME.pem.
    fn new(dir: &Path, name: &str) -> Pki {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        Pki {
            dir: dir.to_path_buf(),
            issuer: Issuer::new(p, key),
            serial: 1,
        }
    }

    /// A certificate `name`.pem and key `name`.key with these
    /// subjectAltNames (IP addresses or DNS names) and common name.
    fn issue(&mut self, name: &str, sans: &[&str], cn: &str) -> SerialNumber {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        self.serial += 1;
        let serial = SerialNumber::from(self.serial);
        p.serial_number = Some(serial.clone());
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        std::fs::write(self.dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(self.dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        serial
    }

    /// A revocation list `name`.pem of `revoked`.
    fn crl(&self, name: &str, revoked: &[SerialNumber]) {
        let crl = CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2024, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: s.clone(),
                    revocation_time: rcgen::date_time_ymd(2024, 1, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let pem = crl.signed_by(&self.issuer).unwrap().pem().unwrap();
        std::fs::write(self.dir.join(format!("{name}.pem")), pem).unwrap();
    }

    /// `--tls` with CA `ca`, certificate and key `me`, and `extra`.
    fn args(&self, ca: &str, me: &str, extra: &[&str]) -> Vec<String> {
        let f = |n: String| self.dir.join(n).to_str().unwrap().to_string();
        let mut a = vec![
            "--tls".to_string(),
            "--tls-cacert".into(),
            f(format!("{ca}.pem")),
            "--tls-cert".into(),
            f(format!("{me}.pem")),
            "--tls-key".into(),
            f(format!("{me}.key")),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    }
}

/// A PKI with a CA "ca" and: "server" and "client" for 127.0.0.1 (an IP
/// subjectAltName), "other" for the DNS name other.example only,
/// "cn-only" naming 127.0.0.1 in its common name alone; a second CA
/// "stranger".
fn pki(dir: &Path) -> Pki {
    let mut p = Pki::new(dir, "ca");
    p.issue("server", &["127.0.0.1"], "page server");
    p.issue("client", &["127.0.0.1"], "dump");
    p.issue("other", &["other.example"], "other.example");
    p.issue("cn-only", &[], "127.0.0.1");
    Pki::new(dir, "stranger");
    p
}

/// `crit page-server --tls` into DIR, listening on 127.0.0.1.
fn serve(dir: &Path, tls: &[String], extra: &[&str]) -> (Child, String) {
    let port = kit::dump::free_ports(1).to_string();
    let mut cmd = kit::crit();
    cmd.args(["page-server", "-D", dir.to_str().unwrap(), "--port", &port])
        .args(extra)
        .args(tls)
        .stderr(Stdio::piped());
    (kit::proc::spawn_listening(cmd), port)
}

/// Waits for a server: whether it succeeded, and its stderr.
fn end(c: Child) -> (bool, String) {
    let o = c.wait_with_output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    (o.status.success(), e)
}

/// `crit dump -t PID -D DIR --page-server ... TLS EXTRA`.
fn dump(pid: i32, dir: &Path, port: &str, tls: &[String], extra: &[&str]) -> std::process::Output {
    let pid = pid.to_string();
    let mut a = vec!["dump", "-t", &pid, "-D", dir.to_str().unwrap()];
    a.extend(["--page-server", "--address", "127.0.0.1", "--port", port]);
    a.extend(tls.iter().map(String::as_str));
    a.extend(extra);
    crit(&a)
}

/// A dump that failed with one line containing `want`, exit status 1.
fn refused(o: &std::process::Output, want: &str) -> String {
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(e.contains(want), "{e}");
    e
}

fn copy_images(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn a_dump_over_tls_restores_every_page() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let p = pki(tmp.path());
    let mut g = start(tmp.path(), 32, 4, 20000, false, false);
    let (d, s) = (tmp.path().join("d"), tmp.path().join("s"));
    // The server listens on 127.0.0.1: the dump's certificate must name
    // it (CRIU's server checks that too).
    let (srv, port) = serve(
        &s,
        &p.args("ca", "server", &[]),
        &["--address", "127.0.0.1"],
    );
    let e = ok(&dump(g.pid, &d, &port, &p.args("ca", "client", &[]), &[]));
    assert!(e.contains("sent to the page server"), "{e}");
    let (good, err) = end(srv);
    assert!(good && err.contains("kept 1 pagemap(s)"), "{err}");
    copy_images(&s, &d);
    let a = restore_and_ask(&mut g, &d);
    assert!(a.starts_with("OK 8192 "), "{a}");
}

#[test]
fn a_server_signed_by_another_ca_fails_the_dump_before_it_freezes() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let p = pki(tmp.path());
    let g = start(tmp.path(), 8, 1, 1000, false, false);
    let (d, s) = (tmp.path().join("d"), tmp.path().join("s"));
    let (srv, port) = serve(&s, &p.args("ca", "server", &[]), &[]);
    let o = dump(g.pid, &d, &port, &p.args("stranger", "client", &[]), &[]);
    let e = refused(&o, "not signed by a trusted CA");
    assert!(
        e.contains(&format!("page server 127.0.0.1:{port}: TLS:")),
        "{e}"
    );
    let (good, err) = end(srv);
    assert!(!good && err.contains("TLS"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // Nothing written on either side, and the task runs on intact.
    assert!(!d.exists() && !s.exists());
    assert!(ask(g.pid, &g.result).starts_with("OK"));
    // A dump without --tls to a server with it: named as such.
    let (srv, port) = serve(&s, &p.args("ca", "server", &[]), &[]);
    let o = dump(g.pid, &d, &port, &[], &[]);
    refused(&o, "it answered with a TLS record (does it use --tls?)");
    let (good, _) = end(srv);
    assert!(!good);
    assert!(!d.exists() && !s.exists());
    assert!(ask(g.pid, &g.result).starts_with("OK"));
}

/// The client checks the server's name against --address (with the
/// common name when there is no subjectAltName, as GnuTLS does), and
/// the server the client's against its own --address; the option
/// --tls-no-cn-verify lets a wrong name pass.
#[test]
fn names_are_checked_as_criu_checks_them() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let p = pki(tmp.path());
    let mut g = start(tmp.path(), 8, 1, 1000, false, false);
    let client = p.args("ca", "client", &[]);
    let n = std::cell::Cell::new(0);
    let dirs = || {
        n.set(n.get() + 1);
        let i = n.get();
        (
            tmp.path().join(format!("d{i}")),
            tmp.path().join(format!("s{i}")),
        )
    };

    // A server certificate for other.example at 127.0.0.1.
    let (d, s) = dirs();
    let (srv, port) = serve(&s, &p.args("ca", "other", &[]), &[]);
    let o = dump(g.pid, &d, &port, &client, &["-R"]);
    refused(&o, "certificate not valid for name \"127.0.0.1\"");
    assert!(!end(srv).0);
    assert!(!d.exists());
    assert!(ask(g.pid, &g.result).starts_with("OK"));

    // The same with --tls-no-cn-verify on the dump's side.
    let (d, s) = dirs();
    let (srv, port) = serve(&s, &p.args("ca", "other", &[]), &[]);
    let loose = p.args("ca", "client", &["--tls-no-cn-verify"]);
    ok(&dump(g.pid, &d, &port, &loose, &["-R"]));
    assert!(end(srv).0);

    // The server's --address is checked against the dump's certificate:
    // other.example is refused, unless the server skips names.
    let (d, s) = dirs();
    let server = p.args("ca", "server", &[]);
    let (srv, port) = serve(&s, &server, &["--address", "127.0.0.1"]);
    let o = dump(g.pid, &d, &port, &p.args("ca", "other", &[]), &["-R"]);
    refused(&o, "TLS");
    let (good, err) = end(srv);
    assert!(
        !good && err.contains("certificate not valid for name \"127.0.0.1\""),
        "{err}"
    );
    assert!(ask(g.pid, &g.result).starts_with("OK"));
    let (d, s) = dirs();
    let server = p.args("ca", "server", &["--tls-no-cn-verify"]);
    let (srv, port) = serve(&s, &server, &["--address", "127.0.0.1"]);
    ok(&dump(
        g.pid,
        &d,
        &port,
        &p.args("ca", "other", &[]),
        &["-R"],
    ));
    assert!(end(srv).0);

    // 127.0.0.1 in the common name only, no subjectAltName: accepted.
    let (d, s) = dirs();
    let (srv, port) = serve(&s, &p.args("ca", "cn-only", &[]), &[]);
    ok(&dump(g.pid, &d, &port, &client, &[]));
    let (good, err) = end(srv);
    assert!(good, "{err}");
    copy_images(&s, &d);
    let a = restore_and_ask(&mut g, &d);
    assert!(a.starts_with("OK 2048 "), "{a}");
}

/// CRIU's server checks the dump's certificate against its revocation
/// list: a revoked one fails the dump, whose task runs on.
#[test]
fn a_revoked_client_certificate_is_refused() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let mut p = pki(tmp.path());
    let revoked = p.issue("revoked", &["127.0.0.1"], "dump");
    p.crl("crl", &[revoked]);
    let crl = tmp.path().join("crl.pem");
    let crl = crl.to_str().unwrap();
    let g = start(tmp.path(), 8, 1, 1000, false, false);
    let (d, s) = (tmp.path().join("d"), tmp.path().join("s"));
    let server = p.args("ca", "server", &["--tls-cacrl", crl]);
    let (srv, port) = serve(&s, &server, &[]);
    let o = dump(g.pid, &d, &port, &p.args("ca", "revoked", &[]), &[]);
    refused(&o, "page server 127.0.0.1");
    let (good, err) = end(srv);
    assert!(!good && err.contains("revoked"), "{err}");
    assert!(!d.exists() && !s.exists());
    assert!(ask(g.pid, &g.result).starts_with("OK"));
    // The list revokes that one only.
    let (srv, port) = serve(&s, &server, &[]);
    ok(&dump(
        g.pid,
        &d,
        &port,
        &p.args("ca", "client", &[]),
        &["-R"],
    ));
    assert!(end(srv).0);
}

/// A file that is not there is named with its option, before anything
/// listens or connects; defaults are CRIU's.
#[test]
fn missing_files_are_named_with_their_option() {
    let tmp = tempfile::tempdir().unwrap();
    let p = pki(tmp.path());
    let s = tmp.path().join("s");
    let port = kit::dump::free_ports(1).to_string();
    let mut a = vec!["page-server", "-D", s.to_str().unwrap(), "--port", &port];
    let tls = p.args("ca", "server", &[]);
    let mut tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    tls[6] = "/nonexistent/key.pem";
    a.extend(&tls);
    let o = kit::crit_out(&a);
    let e = refused(&o, "--tls-key /nonexistent/key.pem: no such file");
    assert!(!e.contains("page server"), "{e}");
    assert!(!s.exists());
    // Without --tls-cert, CRIU's default.
    tls.truncate(3);
    let mut a = vec!["page-server", "-D", s.to_str().unwrap(), "--port", &port];
    a.extend(&tls);
    let o = kit::crit_out(&a);
    if !Path::new("/etc/pki/criu/cert.pem").exists() {
        refused(&o, "--tls-cert /etc/pki/criu/cert.pem: no such file");
    }
}

/// Post-copy over TLS: `page-server --lazy-pages --tls` serves the lazy
/// pages to `lazy-pages --page-server --tls`, which feeds a lazy
/// restore whose task finds every page.
#[test]
fn a_lazy_restore_takes_its_pages_over_tls() {
    let kit = kit::dump::Kit::new();
    let p = pki(kit.tmp.path());
    let result = kit.path("result");
    let trigger = kit.path("go");
    let args = ["16", result.to_str().unwrap(), trigger.to_str().unwrap()];
    let prog = kit.start("lazymix", &args);
    let pid = prog.pid;
    let (src, dst) = (kit.path("src"), kit.path("dst"));
    kit::dump::ok(&kit.dump(pid, &src, &[]));
    kit::dump::reap(&[pid], std::time::Duration::from_secs(5));
    // The destination has zeros where the lazy pages were: they can only
    // come over the connection.
    std::fs::create_dir(&dst).unwrap();
    copy_images(&src, &dst);
    let zeroed = kit::restore::zero_lazy_pages(&dst, pid);
    assert!(zeroed >= 16 << 20, "{zeroed}");
    std::fs::write(&trigger, b"").unwrap();

    let port = kit::dump::free_ports(1).to_string();
    let mut cmd = kit::crit();
    cmd.args(["page-server", "--lazy-pages", "-D", src.to_str().unwrap()])
        .args(["--address", "127.0.0.1", "--port", &port])
        .args(p.args("ca", "server", &[]))
        .stderr(Stdio::piped());
    let server = kit::proc::spawn_listening(cmd);
    let mut cmd = kit::crit();
    cmd.args(["lazy-pages", "-D", dst.to_str().unwrap(), "--page-server"])
        .args(["--address", "127.0.0.1", "--port", &port])
        .args(p.args("ca", "client", &[]))
        .stderr(Stdio::piped());
    let lp = kit::proc::spawn_listening(cmd);
    kit::dump::ok(&kit::crit_out(&[
        "restore",
        "-d",
        "--shell-job",
        "--lazy-pages",
        "-D",
        dst.to_str().unwrap(),
    ]));
    assert_eq!(kit::proc::line(&result, 0), "OK 3584");
    let (good, err) = end(lp);
    assert!(good, "{err}");
    let (good, err) = end(server);
    assert!(good && err.contains("sent "), "{err}");
    kit::dump::kill_tree(pid);
}

/// `dump --lazy-pages --tls` serves the pages it leaves in the frozen
/// task to `lazy-pages --page-server --tls`; the restored task (in a
/// pid namespace of its own, so that it can run while the source is
/// still frozen) finds every page, and the source goes.
#[test]
fn a_lazy_dump_serves_its_frozen_task_over_tls() {
    let kit = kit::dump::Kit::new();
    let p = pki(kit.tmp.path());
    let result = kit.path("result");
    let trigger = kit.path("go");
    let (unshare, pid) = kit::proc::start_in_pid_ns(
        &kit,
        "lazymix",
        &["16", result.to_str().unwrap(), trigger.to_str().unwrap()],
    );
    let (src, dst) = (kit.path("src"), kit.path("dst"));
    let port = kit::dump::free_ports(1).to_string();
    let mut cmd = kit::crit();
    cmd.args(["dump", "-t", &pid.to_string(), "-D", src.to_str().unwrap()])
        .args(["--lazy-pages", "--address", "127.0.0.1", "--port", &port])
        .args(p.args("ca", "server", &[]))
        .stderr(Stdio::piped());
    let dump = kit::proc::spawn_listening(cmd);
    std::fs::create_dir(&dst).unwrap();
    copy_images(&src, &dst);
    std::fs::write(&trigger, b"").unwrap();
    let mut cmd = kit::crit();
    cmd.args(["lazy-pages", "-D", dst.to_str().unwrap(), "--page-server"])
        .args(["--address", "127.0.0.1", "--port", &port])
        .args(p.args("ca", "client", &[]))
        .stderr(Stdio::piped());
    let lp = kit::proc::spawn_listening(cmd);
    let pidfile = kit.path("restored.pid");
    kit::dump::ok(&kit::crit_out(&[
        "restore",
        "-d",
        "--shell-job",
        "--lazy-pages",
        "--pidfile",
        pidfile.to_str().unwrap(),
        "-D",
        dst.to_str().unwrap(),
    ]));
    let restored: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(kit::proc::line(&result, 0), "OK 3584");
    let (good, err) = end(lp);
    assert!(good, "{err}");
    let (good, err) = end(dump);
    assert!(good && err.contains("crit: page server: sent "), "{err}");
    assert!(unshare.wait_with_output().is_ok());
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    kit::dump::kill_tree(restored);
}
