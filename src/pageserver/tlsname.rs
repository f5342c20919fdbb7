//! Whether a peer's certificate is valid for a name, the way CRIU's
//! GnuTLS decides it (gnutls_x509_crt_check_hostname), so that
//! certificates made for CRIU work with crit too:
//!
//! - an IP address matches an IP address in the subjectAltName, and
//!   also, as text, a DNS name there (certificates that put their
//!   address among the DNS names are common);
//! - a name matches a DNS name in the subjectAltName, case aside, with
//!   `*` standing for the whole leftmost label;
//! - only when the subjectAltName has neither DNS names nor IP
//!   addresses, and the certificate may serve TLS servers (no extended
//!   key usage, or one with serverAuth or any), the subject's common
//!   name is compared instead, if there is exactly one.
//!
//! webpki (rustls) never looks at the common name: that last rule is
//! why crit checks names itself once webpki has checked the chain.

use std::net::IpAddr;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// What a certificate says it is valid for, for errors.
pub struct Names {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    /// The subject's common names.
    pub cns: Vec<String>,
    /// Whether the extended key usage allows a TLS server (or is absent).
    pub server_usage: bool,
}

impl Names {
    /// The names of DER certificate `der`.
    pub fn of(der: &[u8]) -> Result<Names, String> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| format!("cannot parse the certificate: {e}"))?;
        let mut names = Names {
            dns: Vec::new(),
            ips: Vec::new(),
            cns: Vec::new(),
            server_usage: true,
        };
        let san = cert
            .subject_alternative_name()
            .map_err(|e| format!("bad subjectAltName: {e}"))?;
        for g in san.iter().flat_map(|s| &s.value.general_names) {
            match g {
                GeneralName::DNSName(d) => names.dns.push((*d).to_string()),
                GeneralName::IPAddress(b) => {
                    if let Some(ip) = ip_of(b) {
                        names.ips.push(ip);
                    }
                }
                _ => {}
            }
        }
        for cn in cert.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.cns.push(s.to_string());
            }
        }
        let eku = cert
            .extended_key_usage()
            .map_err(|e| format!("bad extended key usage: {e}"))?;
        if let Some(e) = eku {
            names.server_usage = e.value.any || e.value.server_auth;
        }
        Ok(names)
    }

    /// Whether `name` (a host name or an IP address) is one of these.
    pub fn matches(&self, name: &str) -> bool {
        if let Ok(ip) = name.parse::<IpAddr>() {
            if self.ips.contains(&ip) {
                return true;
            }
        }
        if self.dns.iter().any(|d| host_matches(d, name)) {
            return true;
        }
        let fallback = self.dns.is_empty() && self.ips.is_empty() && self.server_usage;
        fallback && self.cns.len() == 1 && host_matches(&self.cns[0], name)
    }

    /// The names, as one would list them in an error.
    pub fn describe(&self) -> String {
        let mut all: Vec<String> = self.dns.iter().map(|d| format!("DNS:{d}")).collect();
        all.extend(self.ips.iter().map(|i| format!("IP:{i}")));
        all.extend(self.cns.iter().map(|c| format!("CN={c}")));
        match all.is_empty() {
            true => "no name".into(),
            false => all.join(", "),
        }
    }
}

fn ip_of(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

/// `pattern` (from a certificate) against `name`, case aside; a `*`
/// leftmost label matches one label, and only below a name with a dot.
fn host_matches(pattern: &str, name: &str) -> bool {
    let (p, n) = (
        pattern.trim_end_matches('.').to_ascii_lowercase(),
        name.trim_end_matches('.').to_ascii_lowercase(),
    );
    if p == n {
        return true;
    }
    match (p.strip_prefix("*."), n.split_once('.')) {
        (Some(rest), Some((label, n_rest))) => {
            !label.is_empty()
                && rest.contains('.')
                && rest == n_rest
                && n.parse::<IpAddr>().is_err()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(f: impl FnOnce(&mut rcgen::CertificateParams)) -> Names {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        f(&mut p);
        let key = rcgen::KeyPair::generate().unwrap();
        Names::of(p.self_signed(&key).unwrap().der()).unwrap()
    }

    fn cn(p: &mut rcgen::CertificateParams, v: &str) {
        p.distinguished_name.push(rcgen::DnType::CommonName, v);
    }

    #[test]
    fn the_common_name_counts_only_without_dns_or_ip_names() {
        let only_cn = cert(|p| cn(p, "10.0.0.1"));
        assert!(only_cn.matches("10.0.0.1"));
        assert!(!only_cn.matches("10.0.0.2"));
        let host = cert(|p| cn(p, "Node1.example.com"));
        assert!(host.matches("node1.example.com"));
        let both = cert(|p| {
            cn(p, "10.0.0.1");
            p.subject_alt_names = vec![rcgen::SanType::DnsName("a.example".try_into().unwrap())];
        });
        assert!(!both.matches("10.0.0.1"));
        assert!(both.matches("a.example"));
    }

    #[test]
    fn an_address_matches_an_ip_name_or_the_same_text_as_a_dns_name() {
        let ip = cert(|p| {
            p.subject_alt_names = vec![rcgen::SanType::IpAddress("::1".parse().unwrap())];
        });
        assert!(ip.matches("::1"));
        assert!(!ip.matches("127.0.0.1"));
        let text = cert(|p| {
            p.subject_alt_names = vec![rcgen::SanType::DnsName("127.0.0.1".try_into().unwrap())];
        });
        assert!(text.matches("127.0.0.1"));
    }

    #[test]
    fn a_client_only_certificate_has_no_common_name_fallback() {
        let client = cert(|p| {
            cn(p, "10.0.0.1");
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        });
        assert!(!client.matches("10.0.0.1"));
    }

    #[test]
    fn wildcards_stand_for_one_leftmost_label() {
        assert!(host_matches("*.example.com", "a.example.com"));
        assert!(!host_matches("*.example.com", "a.b.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.com", "example.com"));
        assert!(!host_matches("a*.example.com", "ab.example.com"));
    }
}
