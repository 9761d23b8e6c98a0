//! Identifiers: node ids (division codes), tiers, delta scopes and log ids.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A malformed identifier.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Not a six-digit division code.
    #[error("division code {0} is not six digits")]
    NotSixDigits(String),
    /// Not one of the tiers.
    #[error("unknown tier {0:?} (national, provincial, municipal)")]
    UnknownTier(String),
}

/// A node's id: its 6-digit GB/T 2260 division code (the national node is 100000).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeId(u32);

/// The id of the national node.
pub const NATIONAL: NodeId = NodeId(100_000);

impl NodeId {
    /// Parses and checks a division code: six digits, not starting with 0.
    pub fn new(code: u32) -> Result<Self, IdError> {
        if (100_000..=999_999).contains(&code) {
            Ok(NodeId(code))
        } else {
            Err(IdError::NotSixDigits(code.to_string()))
        }
    }

    /// The raw division code.
    pub fn code(self) -> u32 {
        self.0
    }

    /// The tier of the node serving this division, read from its code (the PKI
    /// enforces the same rule).
    pub fn tier(self) -> Tier {
        match self.province() {
            None => Tier::National,
            Some(p) if p == self => Tier::Provincial,
            Some(_) => Tier::Municipal,
        }
    }

    /// The province this division belongs to (`PP0000`), or `None` for the national node.
    pub fn province(self) -> Option<NodeId> {
        if self == NATIONAL {
            None
        } else {
            Some(NodeId(self.0 / 10_000 * 10_000))
        }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06}", self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06}", self.0)
    }
}

impl FromStr for NodeId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdError::NotSixDigits(format!("{s:?}")));
        }
        let code: u32 = s.parse().map_err(|_| IdError::NotSixDigits(format!("{s:?}")))?;
        NodeId::new(code)
    }
}

/// The administrative tier a node serves at. Configuration, never code.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// The national node, root of the tree.
    National,
    /// A provincial-level hub.
    Provincial,
    /// A prefecture-level city bureau.
    Municipal,
}

impl Tier {
    /// The lowercase name used in certificates, config and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::National => "national",
            Tier::Provincial => "provincial",
            Tier::Municipal => "municipal",
        }
    }

    /// The tier a parent of this tier must have, if any.
    pub fn parent_tier(self) -> Option<Tier> {
        match self {
            Tier::National => None,
            Tier::Provincial => Some(Tier::National),
            Tier::Municipal => Some(Tier::Provincial),
        }
    }
}

impl FromStr for Tier {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        match s {
            "national" => Ok(Tier::National),
            "provincial" => Ok(Tier::Provincial),
            "municipal" => Ok(Tier::Municipal),
            other => Err(IdError::UnknownTier(other.to_string())),
        }
    }
}

/// How far a delta may travel.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every node of the federation.
    Federation,
    /// Only nodes inside the origin's province (never above the provincial node).
    Province,
}

impl Scope {
    /// The lowercase name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Federation => "federation",
            Scope::Province => "province",
        }
    }
}

/// One append-only log: every origin keeps one log per scope, each with its own hash chain,
/// so that a province-scoped log can be withheld from nodes outside the province without
/// leaving holes in the federation-wide one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LogId {
    /// The node that writes this log.
    pub origin: NodeId,
    /// The scope of every delta in this log.
    pub scope: Scope,
}

impl LogId {
    /// Whether deltas of this log may be held by node `holder`.
    pub fn visible_at(self, holder: NodeId) -> bool {
        match self.scope {
            Scope::Federation => true,
            Scope::Province => {
                self.origin.province().is_some() && self.origin.province() == holder.province()
            }
        }
    }
}

impl fmt::Display for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.origin, self.scope.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn province_of_divisions() {
        let jinan: NodeId = "370100".parse().unwrap();
        assert_eq!(jinan.province(), Some("370000".parse().unwrap()));
        assert_eq!(NATIONAL.province(), None);
        assert!("037010".parse::<NodeId>().is_err());
        assert!("37010".parse::<NodeId>().is_err());
    }

    #[test]
    fn province_scope_stays_in_province() {
        let log = LogId { origin: "370100".parse().unwrap(), scope: Scope::Province };
        assert!(log.visible_at("370000".parse().unwrap()));
        assert!(log.visible_at("370200".parse().unwrap()));
        assert!(!log.visible_at(NATIONAL));
        assert!(!log.visible_at("110000".parse().unwrap()));
        let national_log = LogId { origin: NATIONAL, scope: Scope::Province };
        assert!(!national_log.visible_at(NATIONAL));
    }
}
