//! The node identity carried in every node certificate.

use cascade_protocol::ids::NATIONAL;
use cascade_protocol::{NodeId, Tier};
use serde::{Deserialize, Serialize};

/// OID of the identity extension. Arc 1.3.6.1.4.1.32473 is the IANA enterprise
/// number reserved for documentation (RFC 5612); a production federation would
/// register its own and change this one constant.
pub const IDENTITY_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 32473, 1];

/// Dotted form of `IDENTITY_OID`, as x509-parser prints it.
const IDENTITY_OID_STR: &str = "1.3.6.1.4.1.32473.1";

/// Longest node name accepted in a certificate.
const MAX_NAME_LEN: usize = 200;

/// Who a certificate says its holder is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// The node id (division code).
    pub id: NodeId,
    /// The node's tier.
    pub tier: Tier,
    /// The node's parent; `None` only for the national node.
    pub parent: Option<NodeId>,
    /// Human name, e.g. "济南市".
    pub name: String,
}

/// The TLS server name of a node: what a child dials and what the certificate names.
pub fn server_name(id: NodeId) -> String {
    format!("n{id}.cascade.internal")
}

impl NodeIdentity {
    /// The TLS server name of this node.
    pub fn server_name(&self) -> String {
        server_name(self.id)
    }

    /// The TLS server name of node `id`.
    pub fn server_name_of(id: NodeId) -> String {
        server_name(id)
    }

    /// The tree rules: the national node is 100000 with no parent; a province is
    /// `PP0000` under the national node; a city is under its own province.
    pub fn check_rules(&self) -> Result<(), String> {
        if self.name.trim().is_empty() || self.name.len() > MAX_NAME_LEN {
            return Err("name must be 1..200 bytes".into());
        }
        let ok = match self.tier {
            Tier::National => self.id == NATIONAL && self.parent.is_none(),
            Tier::Provincial => {
                self.id != NATIONAL && self.id.province() == Some(self.id) && self.parent == Some(NATIONAL)
            }
            Tier::Municipal => {
                self.id.province() != Some(self.id)
                    && self.id != NATIONAL
                    && self.parent == self.id.province()
            }
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{} cannot be a {} node under {}",
                self.id,
                self.tier.as_str(),
                self.parent.map_or("nobody".to_string(), |p| p.to_string())
            ))
        }
    }

    /// The DER value of the identity extension: a UTF8String `id=..;tier=..;parent=..`.
    pub(crate) fn to_extension_value(&self) -> Vec<u8> {
        let text = format!(
            "id={};tier={};parent={}",
            self.id,
            self.tier.as_str(),
            self.parent.map_or(String::new(), |p| p.to_string())
        );
        let bytes = text.as_bytes();
        let mut out = vec![0x0c];
        let len = bytes.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            out.push(0x81);
            out.push(len as u8);
        }
        out.extend_from_slice(bytes);
        out
    }

    /// Reads the identity (and checks its rules) from a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<NodeIdentity, String> {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|e| format!("unparseable certificate: {e}"))?;
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == IDENTITY_OID_STR)
            .ok_or("certificate has no Cascade identity extension")?;
        let text = parse_utf8_string(ext.value).ok_or("malformed identity extension")?;
        let mut id = None;
        let mut tier = None;
        let mut parent = None;
        for part in text.split(';') {
            match part.split_once('=') {
                Some(("id", v)) => id = Some(v.parse::<NodeId>().map_err(|e| e.to_string())?),
                Some(("tier", v)) => tier = Some(v.parse::<Tier>().map_err(|e| e.to_string())?),
                Some(("parent", "")) => parent = None,
                Some(("parent", v)) => parent = Some(v.parse::<NodeId>().map_err(|e| e.to_string())?),
                _ => return Err(format!("unknown identity field {part:?}")),
            }
        }
        let name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_string();
        let identity = NodeIdentity {
            id: id.ok_or("identity has no id")?,
            tier: tier.ok_or("identity has no tier")?,
            parent,
            name,
        };
        identity.check_rules()?;
        Ok(identity)
    }
}

/// Parses a DER UTF8String with a short or one-byte long length.
fn parse_utf8_string(der: &[u8]) -> Option<&str> {
    let (&tag, rest) = der.split_first()?;
    if tag != 0x0c {
        return None;
    }
    let (&len0, rest) = rest.split_first()?;
    let (len, rest) = match len0 {
        l if l < 0x80 => (usize::from(l), rest),
        0x81 => {
            let (&l, rest) = rest.split_first()?;
            (usize::from(l), rest)
        }
        _ => return None,
    };
    if rest.len() != len {
        return None;
    }
    std::str::from_utf8(rest).ok()
}
