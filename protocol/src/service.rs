//! Service interfaces (服务接口): what a provider organization registers so that
//! others can apply for it and call it through their own node. A registration
//! travels as a signed delta of the provider's node, federation-wide; the
//! upstream it proxies to never leaves that node, so it is not part of it.

use crate::catalog::{validate_credit_code, validate_resource_code, FieldError};
use crate::NodeId;
use serde::{Deserialize, Serialize};

/// Longest service name, in characters.
pub const MAX_SERVICE_NAME_CHARS: usize = 200;
/// Most endpoints one service offers: a service is one interface, not an API
/// gateway of its own.
pub const MAX_ENDPOINTS: usize = 32;
/// Longest endpoint path template, in bytes.
pub const MAX_ENDPOINT_PATH_BYTES: usize = 256;
/// Highest rate limit (calls per minute and grant): ten thousand a second, more
/// than one node's gateway serves.
pub const MAX_RATE_LIMIT_PER_MINUTE: u32 = 600_000;
/// The HTTP methods an endpoint may name.
pub const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// What a service answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    /// Returns the data asked for.
    Query,
    /// A yes/no check of submitted facts (核验): the consumer learns only whether
    /// they match, never the provider's data.
    Verify,
}

/// Whether a service can still be applied for and called.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServiceStatus {
    /// Offered.
    Active,
    /// No longer offered (its grants lapse with it).
    Retired,
}

impl ServiceStatus {
    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceStatus::Active => "active",
            ServiceStatus::Retired => "retired",
        }
    }
}

/// One operation: an HTTP method and a path template (`/persons/{id}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// Starts with `/`; `{name}` stands for one path segment.
    pub path: String,
}

/// The catalog entry a service serves.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryRef {
    /// The node whose catalog holds it.
    pub origin: NodeId,
    /// Its resource code.
    pub code: String,
}

/// What a provider says about a service (registering or updating it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceDraft {
    /// Its name.
    pub name: String,
    /// The catalog entry it serves.
    pub entry: EntryRef,
    /// Credit code of the provider organization.
    pub provider: String,
    /// Query or verify.
    pub kind: ServiceKind,
    /// The operations offered.
    pub endpoints: Vec<Endpoint>,
    /// Sensitivity level, 1 (lowest) to 4.
    pub sensitivity: u8,
    /// Calls per minute each consumer may make, unless its grant says otherwise.
    pub rate_limit_per_minute: u32,
}

/// A registered service, as every node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Service {
    /// `{origin}-{n}`: unique in the federation, names the provider's node.
    pub id: String,
    /// Goes up with every change.
    pub version: u64,
    /// Active or retired.
    pub status: ServiceStatus,
    /// What the provider says about it.
    pub draft: ServiceDraft,
}

fn ferr(field: &str, reason: impl Into<String>) -> FieldError {
    FieldError { field: field.into(), reason: reason.into() }
}

impl ServiceDraft {
    /// The rules every registration satisfies, wherever it is checked.
    pub fn validate(&self) -> Result<(), FieldError> {
        let chars = self.name.chars().count();
        if self.name.trim().is_empty() || chars > MAX_SERVICE_NAME_CHARS {
            return Err(ferr("name", format!("1 to {MAX_SERVICE_NAME_CHARS} characters")));
        }
        validate_resource_code(&self.entry.code).map_err(|reason| ferr("entry.code", reason))?;
        validate_credit_code(&self.provider).map_err(|reason| ferr("provider", reason))?;
        if self.endpoints.is_empty() || self.endpoints.len() > MAX_ENDPOINTS {
            return Err(ferr("endpoints", format!("1 to {MAX_ENDPOINTS} endpoints")));
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            if !METHODS.contains(&e.method.as_str()) {
                return Err(ferr(
                    &format!("endpoints[{i}].method"),
                    format!("one of {}", METHODS.join(", ")),
                ));
            }
            check_path(&e.path).map_err(|reason| ferr(&format!("endpoints[{i}].path"), reason))?;
            if self.endpoints[..i].iter().any(|o| o.method == e.method && o.path == e.path) {
                return Err(ferr(&format!("endpoints[{i}]"), "listed twice"));
            }
        }
        if !(1..=4).contains(&self.sensitivity) {
            return Err(ferr("sensitivity", "a level from 1 to 4"));
        }
        if !(1..=MAX_RATE_LIMIT_PER_MINUTE).contains(&self.rate_limit_per_minute) {
            return Err(ferr("rate_limit_per_minute", format!("1 to {MAX_RATE_LIMIT_PER_MINUTE}")));
        }
        Ok(())
    }
}

/// A path template: `/`-separated segments of URL-safe characters, or `{name}`.
fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') || path.len() > MAX_ENDPOINT_PATH_BYTES {
        return Err(format!("starts with / and has at most {MAX_ENDPOINT_PATH_BYTES} bytes"));
    }
    for segment in path[1..].split('/') {
        let plain = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
        let ok = match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            None => segment.chars().all(plain),
        };
        if !ok {
            return Err(format!("segment {segment:?}: letters, digits, -._~ or a {{name}}"));
        }
    }
    Ok(())
}

impl Service {
    /// The id of the service registered by `origin`'s delta `seq` (of its
    /// federation log): unique, and it says where the service lives.
    pub fn id_for(origin: NodeId, seq: u64) -> String {
        format!("{origin}-{seq}")
    }

    /// The node a service id names, if it is well formed.
    pub fn origin_of(id: &str) -> Option<NodeId> {
        let (origin, n) = id.split_once('-')?;
        (n.parse::<u64>().is_ok_and(|n| n > 0) && n.len() <= 20).then_some(())?;
        origin.parse().ok()
    }

    /// The rules every registration delta satisfies: a valid draft whose id names
    /// the node that signed it.
    pub fn validate(&self, origin: NodeId) -> Result<(), FieldError> {
        if Service::origin_of(&self.id) != Some(origin) {
            return Err(ferr("id", format!("{} is not a service id of {origin}", self.id)));
        }
        if self.version == 0 {
            return Err(ferr("version", "starts at 1"));
        }
        self.draft.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> ServiceDraft {
        ServiceDraft {
            name: "企业信息查询".into(),
            entry: EntryRef { origin: "440100".parse().unwrap(), code: "3/000001".into() },
            provider: crate::org::Organization::government_code("440100".parse().unwrap(), 1),
            kind: ServiceKind::Query,
            endpoints: vec![Endpoint { method: "GET".into(), path: "/persons/{id}".into() }],
            sensitivity: 2,
            rate_limit_per_minute: 600,
        }
    }

    #[test]
    fn a_registration_names_the_field_it_gets_wrong() {
        assert_eq!(draft().validate(), Ok(()));
        let field = |change: fn(&mut ServiceDraft)| {
            let mut d = draft();
            change(&mut d);
            d.validate().unwrap_err().field
        };
        assert_eq!(field(|d| d.name.clear()), "name");
        assert_eq!(field(|d| d.entry.code = "x".into()), "entry.code");
        assert_eq!(field(|d| d.provider = "123".into()), "provider");
        assert_eq!(field(|d| d.endpoints.clear()), "endpoints");
        assert_eq!(field(|d| d.endpoints[0].method = "TRACE".into()), "endpoints[0].method");
        assert_eq!(field(|d| d.endpoints[0].path = "/a/../b c".into()), "endpoints[0].path");
        assert_eq!(field(|d| d.endpoints[0].path = "persons".into()), "endpoints[0].path");
        assert_eq!(field(|d| d.endpoints.push(d.endpoints[0].clone())), "endpoints[1]");
        assert_eq!(field(|d| d.sensitivity = 5), "sensitivity");
        assert_eq!(field(|d| d.rate_limit_per_minute = 0), "rate_limit_per_minute");
    }

    #[test]
    fn a_service_id_names_its_node() {
        let origin: NodeId = "440100".parse().unwrap();
        let id = Service::id_for(origin, 7);
        assert_eq!(id, "440100-7");
        assert_eq!(Service::origin_of(&id), Some(origin));
        for bad in ["440100", "440100-0", "440100-x", "-3", "12345-3", "440100-1-2"] {
            assert_eq!(Service::origin_of(bad), None, "{bad}");
        }
        let service = Service { id: id.clone(), version: 1, status: ServiceStatus::Active, draft: draft() };
        assert!(service.validate(origin).is_ok());
        assert_eq!(service.validate("370100".parse().unwrap()).unwrap_err().field, "id");
    }
}
