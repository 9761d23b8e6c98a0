//! Process docking (流程对接): what travels between a consumer's node and a
//! provider's node — applications, decisions, grants and their revocation. Each
//! travels as the body of a routed message (see `routed`); a grant is also signed
//! on its own by the provider's node, so its holder can present it anywhere.

use crate::catalog::{validate_credit_code, validate_resource_code, FieldError};
use crate::service::{Endpoint, EntryRef, MAX_ENDPOINTS, MAX_RATE_LIMIT_PER_MINUTE};
use crate::signature::{verify, Item};
use crate::{codec, NodeId};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// Longest purpose of an application, in characters.
pub const MAX_PURPOSE_CHARS: usize = 1000;
/// Longest reason or condition text (a rejection's reason, a legal basis quoted
/// back, a revocation's reason), in characters.
pub const MAX_REASON_CHARS: usize = 2000;
/// Longest period an application may ask for: five years.
pub const MAX_PERIOD_DAYS: u32 = 5 * 366;
/// Longest id of an application or a grant, in bytes (`{node}-a{n}` is 20 at most).
pub const MAX_WORKFLOW_ID_BYTES: usize = 40;
/// Longest account name carried (the applicant, the approver), in bytes.
pub const MAX_PERSON_BYTES: usize = 64;

const GRANT_DOMAIN: &[u8] = b"cascade/grant-signature/v1\0";

/// What an application asks for: a service, or a catalog entry as a whole.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    /// A registered service, by id.
    Service(String),
    /// A catalog entry.
    Entry(EntryRef),
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resource::Service(id) => write!(f, "service {id}"),
            Resource::Entry(e) => write!(f, "entry {}:{}", e.origin, e.code),
        }
    }
}

/// Where an application stands. Both ends hold it; the provider's node decides
/// every transition but `Submitted`, and the consumer's node mirrors it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Sent by the consumer's node; the provider's node has not answered yet.
    Submitted,
    /// Waiting for an approver of the provider organization.
    Pending,
    /// Granted (at once for unconditional resources, or approved).
    Granted,
    /// Refused by rule: not shared, or nothing to grant.
    Refused,
    /// Rejected by an approver, with a reason.
    Rejected,
    /// Withdrawn by the consumer while pending.
    Withdrawn,
}

impl State {
    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Submitted => "submitted",
            State::Pending => "pending",
            State::Granted => "granted",
            State::Refused => "refused",
            State::Rejected => "rejected",
            State::Withdrawn => "withdrawn",
        }
    }

    /// Whether no further transition can happen.
    pub fn is_terminal(self) -> bool {
        matches!(self, State::Granted | State::Refused | State::Rejected | State::Withdrawn)
    }
}

/// Why an application is where it is: machine-readable, stable names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Conditional: waits for an approver.
    AwaitingApproval,
    /// Unconditional share: granted by rule.
    Unconditional,
    /// Approved by an approver.
    Approved,
    /// The entry is not shared (the detail quotes its legal basis).
    NotShared,
    /// Rejected by an approver (the detail is their reason).
    RejectedByApprover,
    /// Withdrawn by the consumer.
    WithdrawnByConsumer,
    /// The resource is unknown, retired or withdrawn at the provider's node.
    ResourceUnavailable,
    /// The consumer organization is not registered at the node that applied for it.
    UnknownConsumer,
}

/// An application as sent by the consumer's node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationRequest {
    /// `{consumer node}-a{n}`: names the consumer's node.
    pub id: String,
    /// What is asked for.
    pub resource: Resource,
    /// The consumer organization (credit code).
    pub consumer: String,
    /// The account that applied, at the consumer's node.
    pub applicant: String,
    /// What the data is for (the consumer may use it for nothing else).
    pub purpose: String,
    /// How long access is asked for.
    pub period_days: u32,
    /// The consumer node's federation log head when it applied: the provider's
    /// node decides once it holds that much of the log, which registers the
    /// consumer (a routed message may overtake the log it depends on).
    pub consumer_log_head: u64,
}

/// The provider node's answer, or a change of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The application.
    pub application: String,
    /// Its state now.
    pub state: State,
    /// Why.
    pub reason: Reason,
    /// Text for people: the legal basis, the approver's reason.
    pub detail: Option<String>,
    /// When an approver must have decided (unix s), while pending.
    pub due_at: Option<u64>,
    /// The grant, when granted.
    pub grant: Option<Grant>,
    /// The provider organization (credit code; empty when the resource is unknown).
    pub provider: String,
}

/// Permission to use a resource, signed by the provider's node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Grant {
    /// `{provider node}-g{n}`.
    pub id: String,
    /// The application it answers.
    pub application: String,
    /// The provider organization.
    pub provider: String,
    /// The provider's node (the signer).
    pub provider_node: NodeId,
    /// The consumer organization.
    pub grantee: String,
    /// The consumer's node: the only node that may present it.
    pub grantee_node: NodeId,
    /// What it grants.
    pub resource: Resource,
    /// The endpoints it covers (all of the service's, unless the approver narrowed them).
    pub endpoints: Vec<Endpoint>,
    /// Calls per minute.
    pub rate_limit_per_minute: u32,
    /// Conditions the approver attached.
    pub conditions: Option<String>,
    /// Unix seconds.
    pub issued_at: u64,
    /// Unix seconds: it lapses then, with no message.
    pub expires_at: u64,
    /// Ed25519 over everything above, by the provider's node.
    pub signature: Vec<u8>,
}

impl Grant {
    fn signing_bytes(&self) -> Result<Vec<u8>, codec::CodecError> {
        let mut unsigned = self.clone();
        unsigned.signature.clear();
        let mut out = GRANT_DOMAIN.to_vec();
        out.extend(codec::encode(&unsigned)?);
        Ok(out)
    }

    /// Signs it with the provider node's key.
    pub fn sign(mut self, key: &SigningKey) -> Result<Grant, codec::CodecError> {
        self.signature = key.sign(&self.signing_bytes()?).to_bytes().to_vec();
        Ok(self)
    }

    /// Whether one of `keys` (the provider node's, current or held before a key
    /// rotation) signed it as it is.
    pub fn verify<'k>(&self, keys: impl IntoIterator<Item = &'k VerifyingKey>) -> bool {
        let Ok(bytes) = self.signing_bytes() else { return false };
        keys.into_iter().any(|key| verify(&Item { key, message: &bytes, signature: &self.signature }).is_ok())
    }

    /// Whether it is in force at unix time `now` (signature and revocation aside).
    pub fn is_current(&self, now: u64) -> bool {
        self.issued_at <= now.saturating_add(crate::limits::MAX_CLOCK_SKEW_S) && now < self.expires_at
    }

    /// The rules of a well-formed grant.
    pub fn validate(&self) -> Result<(), FieldError> {
        check_id("grant.id", &self.id)?;
        check_id("grant.application", &self.application)?;
        validate_credit_code(&self.provider).map_err(|r| ferr("grant.provider", r))?;
        validate_credit_code(&self.grantee).map_err(|r| ferr("grant.grantee", r))?;
        check_resource(&self.resource)?;
        if self.endpoints.len() > MAX_ENDPOINTS {
            return Err(ferr("grant.endpoints", format!("at most {MAX_ENDPOINTS}")));
        }
        if !(1..=MAX_RATE_LIMIT_PER_MINUTE).contains(&self.rate_limit_per_minute) {
            return Err(ferr("grant.rate_limit_per_minute", format!("1 to {MAX_RATE_LIMIT_PER_MINUTE}")));
        }
        check_text("grant.conditions", self.conditions.as_deref().unwrap_or(""), MAX_REASON_CHARS)?;
        if self.expires_at <= self.issued_at {
            return Err(ferr("grant.expires_at", "after issued_at"));
        }
        Ok(())
    }
}

fn ferr(field: &str, reason: impl Into<String>) -> FieldError {
    FieldError { field: field.into(), reason: reason.into() }
}

fn check_id(field: &str, id: &str) -> Result<(), FieldError> {
    let fine = !id.is_empty()
        && id.len() <= MAX_WORKFLOW_ID_BYTES
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    fine.then_some(()).ok_or_else(|| ferr(field, "an id of letters, digits and '-'"))
}

fn check_text(field: &str, text: &str, max: usize) -> Result<(), FieldError> {
    if text.chars().count() > max || text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ferr(field, format!("at most {max} characters, no control characters")));
    }
    Ok(())
}

/// Checks the form of a resource reference (whether it exists is the provider's call).
pub fn check_resource(resource: &Resource) -> Result<(), FieldError> {
    match resource {
        Resource::Service(id) => check_id("resource.service", id),
        Resource::Entry(e) => validate_resource_code(&e.code).map_err(|r| ferr("resource.entry.code", r)),
    }
}

impl ApplicationRequest {
    /// The rules of a well-formed application, wherever it is checked.
    pub fn validate(&self) -> Result<(), FieldError> {
        check_id("id", &self.id)?;
        check_resource(&self.resource)?;
        validate_credit_code(&self.consumer).map_err(|r| ferr("consumer", r))?;
        if self.applicant.is_empty() || self.applicant.len() > MAX_PERSON_BYTES {
            return Err(ferr("applicant", format!("1 to {MAX_PERSON_BYTES} bytes")));
        }
        if self.purpose.trim().is_empty() {
            return Err(ferr("purpose", "required"));
        }
        check_text("purpose", &self.purpose, MAX_PURPOSE_CHARS)?;
        if !(1..=MAX_PERIOD_DAYS).contains(&self.period_days) {
            return Err(ferr("period_days", format!("1 to {MAX_PERIOD_DAYS}")));
        }
        Ok(())
    }
}

impl Decision {
    /// The rules of a well-formed decision.
    pub fn validate(&self) -> Result<(), FieldError> {
        check_id("application", &self.application)?;
        check_text("detail", self.detail.as_deref().unwrap_or(""), MAX_REASON_CHARS)?;
        if !self.provider.is_empty() {
            validate_credit_code(&self.provider).map_err(|r| ferr("provider", r))?;
        }
        if self.state == State::Submitted {
            return Err(ferr("state", "a decision never says submitted"));
        }
        match (&self.grant, self.state) {
            (Some(g), State::Granted) => g.validate(),
            (None, State::Granted) => Err(ferr("grant", "required when granted")),
            (Some(_), _) => Err(ferr("grant", "only when granted")),
            (None, _) => Ok(()),
        }
    }
}

/// Checks a revocation's fields.
pub fn check_revocation(grant: &str, reason: &str) -> Result<(), FieldError> {
    check_id("grant", grant)?;
    if reason.trim().is_empty() {
        return Err(ferr("reason", "required"));
    }
    check_text("reason", reason, MAX_REASON_CHARS)
}

/// Checks a withdrawal's fields.
pub fn check_withdrawal(application: &str) -> Result<(), FieldError> {
    check_id("application", application)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::org::Organization;

    fn grant() -> Grant {
        Grant {
            id: "440100-g1".into(),
            application: "370100-a1".into(),
            provider: Organization::government_code(NodeId::new(440100).unwrap(), 1),
            provider_node: NodeId::new(440100).unwrap(),
            grantee: Organization::government_code(NodeId::new(370100).unwrap(), 2),
            grantee_node: NodeId::new(370100).unwrap(),
            resource: Resource::Service("440100-7".into()),
            endpoints: vec![],
            rate_limit_per_minute: 60,
            conditions: None,
            issued_at: 1_000,
            expires_at: 2_000,
            signature: vec![],
        }
    }

    #[test]
    fn a_grant_verifies_only_as_signed_and_only_with_its_key() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let signed = grant().sign(&key).unwrap();
        let mine = key.verifying_key();
        assert!(signed.verify([&mine]));
        let other = SigningKey::from_bytes(&[4; 32]).verifying_key();
        assert!(!signed.verify([&other]), "another node's key");
        let mut widened = signed.clone();
        widened.rate_limit_per_minute = 60_000;
        assert!(!widened.verify([&mine]), "a changed field");
        let mut regranted = signed.clone();
        regranted.grantee_node = NodeId::new(440100).unwrap();
        assert!(!regranted.verify([&mine]), "another grantee node");
        let mut cut = signed;
        cut.signature.truncate(10);
        assert!(!cut.verify([&mine]), "a short signature");
    }

    #[test]
    fn a_grant_is_current_only_within_its_period() {
        let g = grant();
        assert!(g.is_current(1_500));
        assert!(!g.is_current(2_000), "expired at expires_at");
        assert!(!g.is_current(10), "not yet issued");
    }

    #[test]
    fn a_decision_carries_a_grant_exactly_when_granted() {
        let d = Decision {
            application: "370100-a1".into(),
            state: State::Granted,
            reason: Reason::Approved,
            detail: None,
            due_at: None,
            grant: None,
            provider: String::new(),
        };
        assert_eq!(d.validate().unwrap_err().field, "grant");
        let d = Decision { grant: Some(grant()), ..d };
        assert!(d.validate().is_ok());
        let d = Decision { state: State::Rejected, ..d };
        assert_eq!(d.validate().unwrap_err().field, "grant");
    }

    #[test]
    fn resources_read_as_the_api_writes_them() {
        let r: Resource = serde_json::from_str(r#"{"service": "440100-7"}"#).unwrap();
        assert_eq!(r, Resource::Service("440100-7".into()));
        let r: Resource =
            serde_json::from_str(r#"{"entry": {"origin": 440100, "code": "3/000001"}}"#).unwrap();
        assert!(matches!(r, Resource::Entry(e) if e.code == "3/000001"));
    }
}
