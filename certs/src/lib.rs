//! The Cascade federation PKI.
//!
//! The federation root (held by the national operators) certifies the national and
//! provincial nodes, and each province's issuing CA; a provincial CA certifies the
//! province's cities. Every node certificate carries an identity extension naming the node id
//! (its division code), its tier and its parent, and its Ed25519 public key is the
//! node's delta-signing key. Nothing else makes a node a member.

mod files;
mod identity;
mod verify;

pub use files::{read_chain_pem, read_key_pem, write_private, FileError};
pub use identity::{NodeIdentity, IDENTITY_OID};
pub use verify::FederationVerifier;

use cascade_protocol::{NodeId, Tier};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ED25519,
};
use std::fmt;

/// How long a node certificate is valid. Operators re-issue before expiry; five years
/// matches the life of a provincial platform deployment.
pub const NODE_CERT_DAYS: i64 = 5 * 365;

/// Validity of an HTTPS certificate for a node's admin interface: browsers
/// refuse server certificates valid for more than 398 days.
pub const HTTPS_CERT_DAYS: i64 = 397;
/// How long the federation root is valid.
pub const ROOT_CERT_DAYS: i64 = 20 * 365;

/// Where a new certificate's key and validity come from: fresh (a random key, valid
/// from a day ago) or given (a seeded simulation, where every certificate must be
/// byte-identical from run to run).
#[derive(Clone, Default)]
pub enum KeySource {
    /// A fresh random key; valid from a day before now.
    #[default]
    Fresh,
    /// This Ed25519 key; valid from `not_before` (unix seconds).
    Given {
        /// The key.
        key: Box<ed25519_dalek::SigningKey>,
        /// Start of validity, unix seconds.
        not_before: u64,
    },
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Fresh => f.write_str("Fresh"),
            KeySource::Given { not_before, .. } => {
                write!(f, "Given {{ not_before: {not_before}, key: <secret> }}")
            }
        }
    }
}

impl KeySource {
    fn key_pair(&self) -> Result<KeyPair, CertError> {
        match self {
            KeySource::Fresh => Ok(KeyPair::generate_for(&PKCS_ED25519)?),
            KeySource::Given { key, .. } => {
                use ed25519_dalek::pkcs8::EncodePrivateKey;
                let der = key.to_pkcs8_der().map_err(|e| CertError::Identity(format!("key: {e}")))?;
                Ok(KeyPair::try_from(der.as_bytes())?)
            }
        }
    }

    fn set_validity(&self, params: &mut CertificateParams, days: i64) {
        let not_before = match self {
            KeySource::Fresh => time::OffsetDateTime::now_utc() - time::Duration::days(1),
            KeySource::Given { not_before, .. } => {
                time::OffsetDateTime::from_unix_timestamp(i64::try_from(*not_before).unwrap_or(i64::MAX))
                    .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
            }
        };
        params.not_before = not_before;
        params.not_after = not_before + time::Duration::days(days);
    }
}

/// Errors while issuing certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused the parameters or key.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// The requested identity breaks the federation's rules.
    #[error("identity: {0}")]
    Identity(String),
    /// The issuer cannot issue this certificate.
    #[error("issuer: {0}")]
    Issuer(String),
}

/// A certificate authority able to issue: the federation root, or a provincial node.
pub struct Authority {
    cert: rcgen::Certificate,
    key: KeyPair,
    /// The issuer's own chain (DER, leaf first, root excluded); empty for the root.
    chain: Vec<Vec<u8>>,
    /// The issuer's identity; `None` for the root.
    identity: Option<NodeIdentity>,
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authority").field("identity", &self.identity).finish_non_exhaustive()
    }
}

/// A node's certificate chain and private key.
#[derive(Clone)]
pub struct NodeCredentials {
    /// DER certificates, leaf first, root excluded.
    pub chain: Vec<Vec<u8>>,
    /// The PKCS#8 private key (secret: never log it).
    pub key_pkcs8: Vec<u8>,
}

impl fmt::Debug for NodeCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCredentials")
            .field("chain_len", &self.chain.len())
            .field("key", &"<secret>")
            .finish()
    }
}

impl NodeCredentials {
    /// The chain as PEM text.
    pub fn chain_pem(&self) -> String {
        self.chain.iter().map(|der| pem_encode("CERTIFICATE", der)).collect()
    }

    /// The private key as PEM text (secret).
    pub fn key_pem(&self) -> String {
        pem_encode("PRIVATE KEY", &self.key_pkcs8)
    }

    /// The node's Ed25519 signing key.
    pub fn signing_key(&self) -> Result<ed25519_dalek::SigningKey, CertError> {
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        ed25519_dalek::SigningKey::from_pkcs8_der(&self.key_pkcs8)
            .map_err(|e| CertError::Identity(format!("private key is not Ed25519 PKCS#8: {e}")))
    }

    /// Turns a provincial CA's credentials into an authority able to issue its cities.
    pub fn into_authority(self) -> Result<Authority, CertError> {
        let leaf = self.chain.first().ok_or_else(|| CertError::Issuer("empty chain".into()))?;
        let identity = NodeIdentity::from_der(leaf).map_err(CertError::Issuer)?;
        let key = KeyPair::try_from(self.key_pkcs8.as_slice())?;
        let params = CertificateParams::from_ca_cert_der(&leaf.clone().into())?;
        // Rebuilding the certificate object only serves as the issuer handle: what
        // matters for signing is the subject name and the key, both unchanged.
        let cert = params.self_signed(&key)?;
        Ok(Authority { cert, key, chain: self.chain, identity: Some(identity) })
    }
}

impl Authority {
    /// Creates a new federation root with a fresh key.
    pub fn new_root(name: &str) -> Result<Authority, CertError> {
        Authority::new_root_from(name, &KeySource::Fresh)
    }

    /// Creates a new federation root from `source`.
    pub fn new_root_from(name: &str, source: &KeySource) -> Result<Authority, CertError> {
        let key = source.key_pair()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.distinguished_name.push(DnType::OrganizationName, "Cascade federation root");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        source.set_validity(&mut params, ROOT_CERT_DAYS);
        let cert = params.self_signed(&key)?;
        Ok(Authority { cert, key, chain: Vec::new(), identity: None })
    }

    /// Loads the federation root from its certificate and key (PEM).
    pub fn load_root(cert_pem: &str, key_pem: &str) -> Result<Authority, CertError> {
        let key = KeyPair::from_pem(key_pem)?;
        let params = CertificateParams::from_ca_cert_pem(cert_pem)?;
        let cert = params.self_signed(&key)?;
        Ok(Authority { cert, key, chain: Vec::new(), identity: None })
    }

    /// The root certificate (DER), for trust stores. Only meaningful for the root.
    pub fn cert_der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }

    /// The certificate as PEM.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// The private key as PEM (secret).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Issues a node certificate (a TLS and delta-signing leaf). The root issues
    /// national and provincial nodes; a provincial CA issues its own cities.
    pub fn issue(&self, identity: &NodeIdentity) -> Result<NodeCredentials, CertError> {
        self.issue_from(identity, &KeySource::Fresh)
    }

    /// `issue` with the key and validity of `source`.
    pub fn issue_from(
        &self,
        identity: &NodeIdentity,
        source: &KeySource,
    ) -> Result<NodeCredentials, CertError> {
        self.check_may_issue(identity)?;
        self.sign(identity, false, source)
    }

    /// Issues a provincial node's issuing CA (separate from its leaf: a CA cannot
    /// serve as an end entity). Only the root issues these.
    pub fn issue_provincial_ca(&self, identity: &NodeIdentity) -> Result<NodeCredentials, CertError> {
        self.issue_provincial_ca_from(identity, &KeySource::Fresh)
    }

    /// `issue_provincial_ca` with the key and validity of `source`.
    pub fn issue_provincial_ca_from(
        &self,
        identity: &NodeIdentity,
        source: &KeySource,
    ) -> Result<NodeCredentials, CertError> {
        identity.check_rules().map_err(CertError::Identity)?;
        if self.identity.is_some() || identity.tier != Tier::Provincial {
            return Err(CertError::Issuer("only the root issues provincial CAs".into()));
        }
        self.sign(identity, true, source)
    }

    /// Issues a certificate for a node's admin HTTPS (console, API, open data)
    /// under `hosts` (DNS names or IP addresses): an ECDSA P-256 key, server
    /// authentication only and no node identity, so it can never be presented to
    /// join the federation. (Browsers do not verify the federation's Ed25519
    /// signatures: for people's browsers, use a certificate from a CA they trust.)
    pub fn issue_https(&self, hosts: &[String]) -> Result<NodeCredentials, CertError> {
        if hosts.is_empty() {
            return Err(CertError::Identity("an HTTPS certificate names at least one host".into()));
        }
        for host in hosts {
            let dns = |h: &str| {
                !h.is_empty()
                    && h.len() <= 253
                    && h.split('.').all(|l| {
                        !l.is_empty()
                            && l.len() <= 63
                            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    })
            };
            if host.parse::<std::net::IpAddr>().is_err() && !dns(host) {
                return Err(CertError::Identity(format!(
                    "{host:?} is neither a host name nor an IP address (no port, no brackets)"
                )));
            }
        }
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(hosts.to_vec())?;
        params.distinguished_name.push(DnType::CommonName, hosts[0].as_str());
        params.distinguished_name.push(DnType::OrganizationalUnitName, "admin HTTPS");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        KeySource::Fresh.set_validity(&mut params, HTTPS_CERT_DAYS);
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        let mut chain = vec![cert.der().to_vec()];
        chain.extend(self.chain.iter().cloned());
        Ok(NodeCredentials { chain, key_pkcs8: key.serialize_der() })
    }

    fn check_may_issue(&self, identity: &NodeIdentity) -> Result<(), CertError> {
        identity.check_rules().map_err(CertError::Identity)?;
        match (&self.identity, identity.tier) {
            (None, Tier::National | Tier::Provincial) => Ok(()),
            (Some(issuer), Tier::Municipal)
                if issuer.tier == Tier::Provincial && Some(issuer.id) == identity.parent =>
            {
                Ok(())
            }
            (None, Tier::Municipal) => {
                Err(CertError::Issuer("cities are certified by their provincial CA, not the root".into()))
            }
            (Some(issuer), _) => Err(CertError::Issuer(format!(
                "{} ({}) may not certify {} ({})",
                issuer.id,
                issuer.tier.as_str(),
                identity.id,
                identity.tier.as_str()
            ))),
        }
    }

    fn sign(
        &self,
        identity: &NodeIdentity,
        ca: bool,
        source: &KeySource,
    ) -> Result<NodeCredentials, CertError> {
        let key = source.key_pair()?;
        let sans = if ca { Vec::new() } else { vec![identity::server_name(identity.id)] };
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name.push(DnType::CommonName, identity.name.as_str());
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, if ca { "provincial CA" } else { identity.tier.as_str() });
        if ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        } else {
            params.is_ca = IsCa::ExplicitNoCa;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        }
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(IDENTITY_OID, identity.to_extension_value()));
        source.set_validity(&mut params, NODE_CERT_DAYS);
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        let mut chain = vec![cert.der().to_vec()];
        chain.extend(self.chain.iter().cloned());
        Ok(NodeCredentials { chain, key_pkcs8: key.serialize_der() })
    }
}

/// Encodes DER as PEM with the given label.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(label, der.to_vec()))
}

/// Builds the identity of a node certificate, checking its rules.
pub fn node_identity(
    id: NodeId,
    tier: Tier,
    parent: Option<NodeId>,
    name: &str,
) -> Result<NodeIdentity, CertError> {
    let identity = NodeIdentity { id, tier, parent, name: name.to_string() };
    identity.check_rules().map_err(CertError::Identity)?;
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cascade_protocol::MembershipVerifier;

    fn id(s: &str) -> NodeId {
        s.parse().unwrap()
    }

    const NOW: u64 = 1_800_000_000;

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(NOW, |d| d.as_secs())
    }

    #[test]
    fn an_https_certificate_names_its_hosts_serves_only_and_never_joins() {
        let root = Authority::new_root("test root").unwrap();
        assert!(root.issue_https(&[]).is_err());
        for bad in ["[::1]", "host:8080", "a..b", "sp ace", ""] {
            assert!(root.issue_https(&[bad.to_string()]).is_err(), "{bad}");
        }
        assert!(root.issue_https(&["::1".to_string()]).is_ok());
        let hosts = vec!["admin.jinan.example".to_string(), "127.0.0.1".to_string()];
        let https = root.issue_https(&hosts).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&https.chain[0]).unwrap();
        let names = cert.subject_alternative_name().unwrap().expect("SANs").value.general_names.clone();
        assert_eq!(names.len(), 2);
        assert!(format!("{names:?}").contains("admin.jinan.example"));
        let eku = cert.extended_key_usage().unwrap().expect("EKU").value;
        assert!(eku.server_auth && !eku.client_auth);
        assert!(!cert.is_ca());
        let days = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()) / 86_400;
        assert!(days <= 398, "{days} days");
        let verifier = FederationVerifier::new(root.cert_der()).unwrap();
        assert!(
            verifier.verify_chain(&https.chain, Some(now())).is_err(),
            "no node identity: never a member"
        );
    }

    #[test]
    fn hierarchy_issues_and_verifies() {
        let root = Authority::new_root("test root").unwrap();
        let verifier = FederationVerifier::new(root.cert_der()).unwrap();
        let province = root
            .issue(&node_identity(id("370000"), Tier::Provincial, Some(id("100000")), "山东省").unwrap())
            .unwrap();
        let member = verifier.verify_chain(&province.chain, Some(now())).unwrap();
        assert_eq!(member.id, id("370000"));
        assert_eq!(member.key, province.signing_key().unwrap().verifying_key());
        assert_eq!(member.name, "山东省");

        let ca = root
            .issue_provincial_ca(
                &node_identity(id("370000"), Tier::Provincial, Some(id("100000")), "山东省").unwrap(),
            )
            .unwrap();
        let hub = ca.into_authority().unwrap();
        let city = hub
            .issue(&node_identity(id("370100"), Tier::Municipal, Some(id("370000")), "济南市").unwrap())
            .unwrap();
        assert_eq!(city.chain.len(), 2);
        let member = verifier.verify_chain(&city.chain, Some(now())).unwrap();
        assert_eq!(
            (member.id, member.tier, member.parent),
            (id("370100"), Tier::Municipal, Some(id("370000")))
        );

        // A province cannot certify another province's city, nor the root a city.
        let beijing_city =
            node_identity(id("130100"), Tier::Municipal, Some(id("130000")), "石家庄市").unwrap();
        assert!(hub.issue(&beijing_city).is_err());
        let jinan = node_identity(id("370100"), Tier::Municipal, Some(id("370000")), "济南市").unwrap();
        assert!(root.issue(&jinan).is_err());
    }

    #[test]
    fn another_root_is_refused() {
        let root = Authority::new_root("real").unwrap();
        let rogue = Authority::new_root("rogue").unwrap();
        let verifier = FederationVerifier::new(root.cert_der()).unwrap();
        let creds = rogue
            .issue(&node_identity(id("370000"), Tier::Provincial, Some(id("100000")), "山东省").unwrap())
            .unwrap();
        let err = verifier.verify_chain(&creds.chain, Some(now())).unwrap_err();
        assert!(matches!(err, cascade_protocol::CertificateError::NotChained(_)), "{err}");
    }

    #[test]
    fn tree_rules() {
        assert!(node_identity(id("370100"), Tier::Municipal, Some(id("110000")), "x").is_err());
        assert!(node_identity(id("370000"), Tier::Municipal, Some(id("370000")), "x").is_err());
        assert!(node_identity(id("100000"), Tier::National, None, "中华人民共和国").is_ok());
        assert!(node_identity(id("370000"), Tier::Provincial, None, "x").is_err());
    }

    #[test]
    fn root_reloads_from_pem_and_keeps_issuing() {
        let root = Authority::new_root("root").unwrap();
        let again = Authority::load_root(&root.cert_pem(), &root.key_pem()).unwrap();
        let verifier = FederationVerifier::new(root.cert_der()).unwrap();
        let creds = again
            .issue(&node_identity(id("100000"), Tier::National, None, "中华人民共和国").unwrap())
            .unwrap();
        verifier.verify_chain(&creds.chain, Some(now())).unwrap();
    }

    #[test]
    fn certificates_from_given_keys_are_byte_identical() {
        let source = |seed: u8| KeySource::Given {
            key: Box::new(ed25519_dalek::SigningKey::from_bytes(&[seed; 32])),
            not_before: NOW,
        };
        let make = || {
            let root = Authority::new_root_from("root", &source(1)).unwrap();
            let node = node_identity(id("370000"), Tier::Provincial, Some(id("100000")), "山东省").unwrap();
            (root.cert_der(), root.issue_from(&node, &source(2)).unwrap())
        };
        let (root_a, a) = make();
        let (root_b, b) = make();
        assert_eq!((root_a.clone(), a.chain.clone(), a.key_pkcs8.clone()), (root_b, b.chain, b.key_pkcs8));
        let verifier = FederationVerifier::new(root_a).unwrap();
        let member = verifier.verify_chain(&a.chain, Some(NOW + 10)).unwrap();
        assert_eq!(member.key, ed25519_dalek::SigningKey::from_bytes(&[2; 32]).verifying_key());
        assert!(verifier.verify_chain(&a.chain, Some(NOW - 10)).is_err(), "not yet valid");
    }

    #[test]
    fn key_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let root = Authority::new_root("root").unwrap();
        let creds = root.issue(&node_identity(id("100000"), Tier::National, None, "国家").unwrap()).unwrap();
        write_private(&path, creds.key_pem().as_bytes()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(read_key_pem(&path).unwrap(), creds.key_pkcs8);
        assert!(!format!("{creds:?}").contains(&format!("{:?}", &creds.key_pkcs8[..8])));
    }
}
