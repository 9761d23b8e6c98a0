//! Process docking decided by the core: applications, decisions, grants and their
//! revocation. The provider's node decides every transition (by the sharing rules,
//! or by its approvers); the consumer's node mirrors what it is told. Everything
//! between the two travels as routed messages, so it survives any hop being down.

use crate::command::{CommandError, Reply};
use crate::core::Core;
use crate::store::StateStore;
use cascade_access::{Permission, Principal};
use cascade_protocol::catalog::{EntryStatus, ShareType};
use cascade_protocol::limits::ROUTED_WAIT_S;
use cascade_protocol::routed::{Routed, RoutedBody};
use cascade_protocol::service::{Endpoint, Service, ServiceStatus, MAX_RATE_LIMIT_PER_MINUTE};
use cascade_protocol::workflow::{
    ApplicationRequest, Decision, Grant, Reason, Resource, State, MAX_REASON_CHARS,
};
use cascade_protocol::{LogId, NodeId, Scope};
use serde::{Deserialize, Serialize};

const DAY_S: u64 = 86_400;

/// An application as a node holds it (the consumer's node, the provider's node,
/// or one node that is both).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Application {
    /// `{consumer node}-a{n}`.
    pub id: String,
    /// What is asked for.
    pub resource: Resource,
    /// The consumer organization.
    pub consumer: String,
    /// The consumer's node.
    pub consumer_node: NodeId,
    /// The provider organization (known at the consumer once the provider answered,
    /// or at once for a service).
    pub provider: Option<String>,
    /// The provider's node.
    pub provider_node: NodeId,
    /// The account that applied.
    pub applicant: String,
    /// What the data is for.
    pub purpose: String,
    /// How long access is asked for.
    pub period_days: u32,
    /// Unix seconds.
    pub submitted_at: u64,
    /// Where it stands.
    pub state: State,
    /// Why (machine-readable), once the provider answered.
    pub reason: Option<Reason>,
    /// The legal basis, the condition, or the approver's reason.
    pub detail: Option<String>,
    /// When an approver must have decided (unix s), while pending.
    pub due_at: Option<u64>,
    /// Who decided (an approver's account, or "rule").
    pub decided_by: Option<String>,
    /// Unix seconds.
    pub decided_at: Option<u64>,
    /// The grant, when granted.
    pub grant: Option<String>,
    /// The consumer asked to withdraw it; the provider's node has not answered yet.
    pub withdraw_requested: bool,
    /// Unix seconds of the last change.
    pub updated_at: u64,
}

impl Application {
    /// Whether it waits for an approver past its due time at unix time `now`.
    pub fn is_overdue(&self, now: u64) -> bool {
        self.state == State::Pending && self.due_at.is_some_and(|due| now > due)
    }
}

/// An application's id and due time, when it waits for an approver (at its
/// provider's node, which alone sets a due time).
pub fn awaiting(a: &Application) -> Option<(String, u64)> {
    (a.state == State::Pending).then_some(a.due_at).flatten().map(|due| (a.id.clone(), due))
}

/// A grant as a node holds it, with its revocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    /// The signed grant.
    pub grant: Grant,
    /// When it was revoked (unix s).
    pub revoked_at: Option<u64>,
    /// Why.
    pub revoke_reason: Option<String>,
}

impl GrantRecord {
    /// Whether it can be used at unix time `now`.
    pub fn is_valid(&self, now: u64) -> bool {
        self.revoked_at.is_none() && self.grant.is_current(now)
    }
}

/// What an approver may set when approving; unset fields take the defaults
/// (the service's endpoints and rate limit, the period applied for).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// When the grant lapses (unix s).
    pub expires_at: Option<u64>,
    /// A subset of the service's endpoints.
    pub endpoints: Option<Vec<Endpoint>>,
    /// Calls per minute.
    pub rate_limit_per_minute: Option<u32>,
    /// Conditions of use.
    pub conditions: Option<String>,
}

/// Why a routed message was not applied.
enum Refusal {
    /// What it refers to has not arrived yet (links may reorder): resent later.
    NotYet,
    /// Every node would refuse it.
    Never(String),
}

impl From<String> for Refusal {
    fn from(reason: String) -> Self {
        Refusal::Never(reason)
    }
}

impl From<CommandError> for Refusal {
    fn from(e: CommandError) -> Self {
        match e {
            // This node failed (its store, a full queue): the message comes again.
            CommandError::Unavailable(_) | CommandError::Busy(_) => Refusal::NotYet,
            e => Refusal::Never(e.to_string()),
        }
    }
}

/// What a resource is at its provider's node: who provides it, its entry's share
/// rules, and the service (if the resource is one).
struct Held {
    provider: String,
    share: ShareType,
    condition: Option<String>,
    basis: Option<String>,
    service: Option<Service>,
}

/// The account acting (or the actor, for the bootstrap token and the node).
fn person(by: &Principal) -> String {
    by.username.clone().unwrap_or_else(|| by.actor.clone())
}

fn text(field: &str, value: &str, required: bool) -> Result<(), CommandError> {
    if required && value.trim().is_empty() {
        return Err(CommandError::field(field, "required"));
    }
    if value.chars().count() > MAX_REASON_CHARS || value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(CommandError::field(field, format!("at most {MAX_REASON_CHARS} characters")));
    }
    Ok(())
}

impl<S: StateStore> Core<S> {
    /// How many applications wait for this node's approvers past their due time.
    pub(crate) fn overdue(&self) -> u64 {
        let now = self.now_s();
        self.pending.values().filter(|due| now > **due).count() as u64
    }

    /// An application as this node sees it, this group's changes included.
    pub(crate) fn application(&self, id: &str) -> Result<Option<Application>, CommandError> {
        if let Some(a) = self.unstored(|w| w.applications.get(id).cloned()) {
            return Ok(Some(a));
        }
        Ok(self.store.application(id)?)
    }

    /// A grant as this node sees it, this group's changes included.
    pub(crate) fn grant(&self, id: &str) -> Result<Option<GrantRecord>, CommandError> {
        if let Some(g) = self.unstored(|w| w.grants.get(id).cloned()) {
            return Ok(Some(g));
        }
        Ok(self.store.grant(id)?)
    }

    fn save_application(&mut self, mut application: Application) {
        application.updated_at = self.now_s();
        if application.provider_node == self.me {
            match awaiting(&application) {
                Some((id, due)) => self.pending.insert(id, due),
                None => self.pending.remove(&application.id),
            };
        }
        self.group.written.applications.insert(application.id.clone(), application.clone());
        self.group.batch.applications.push(application);
    }

    fn save_grant(&mut self, record: GrantRecord) {
        self.group.written.grants.insert(record.grant.id.clone(), record.clone());
        self.group.batch.grants.push(record);
    }

    fn audit_application(&mut self, by: Option<&Principal>, kind: &str, a: &Application) {
        let detail = format!(
            "{} {} {} for {} ({}) from {}: {}",
            a.id,
            a.state.as_str(),
            a.reason.map(|r| format!("{r:?}")).unwrap_or_default(),
            a.resource,
            a.provider.as_deref().unwrap_or("provider not yet known"),
            a.consumer,
            a.detail.as_deref().unwrap_or("")
        );
        match by {
            Some(by) => self.audit_by(by, kind, detail),
            None => self.audit("node", None, kind, detail),
        }
    }

    /// A consumer applies for a resource held anywhere in the federation.
    pub(crate) fn apply(
        &mut self,
        by: &Principal,
        resource: Resource,
        consumer: String,
        purpose: String,
        period_days: u32,
    ) -> Result<Reply, CommandError> {
        self.authorize(
            by,
            Permission::Apply { consumer: &consumer },
            &format!("application.submit {resource}"),
        )?;
        if !self.own_orgs.contains_key(&consumer) {
            return Err(CommandError::field("consumer", "must be an organization registered at this node"));
        }
        let (provider, provider_node) = match &resource {
            Resource::Service(id) => {
                let service =
                    self.service(id)?.filter(|s| s.status == ServiceStatus::Active).ok_or_else(|| {
                        CommandError::field("resource.service", "no active service with this id")
                    })?;
                let node = Service::origin_of(id)
                    .ok_or_else(|| CommandError::field("resource.service", "malformed service id"))?;
                (Some(service.draft.provider), node)
            }
            Resource::Entry(e) => {
                if self.engine.member(e.origin).is_none() {
                    return Err(CommandError::field(
                        "resource.entry.origin",
                        "no such node in the federation",
                    ));
                }
                (None, e.origin)
            }
        };
        let request = ApplicationRequest {
            id: format!("{}-a{}", self.me, self.meta.application_seq + 1),
            resource,
            consumer,
            applicant: person(by),
            purpose,
            period_days,
            consumer_log_head: self.engine.head(LogId { origin: self.me, scope: Scope::Federation }),
        };
        request.validate()?;
        self.can_send(provider_node)?;
        self.meta.application_seq += 1;
        self.write_meta();
        let application = Application {
            id: request.id.clone(),
            resource: request.resource.clone(),
            consumer: request.consumer.clone(),
            consumer_node: self.me,
            provider,
            provider_node,
            applicant: request.applicant.clone(),
            purpose: request.purpose.clone(),
            period_days,
            submitted_at: self.now_s(),
            state: State::Submitted,
            reason: None,
            detail: None,
            due_at: None,
            decided_by: None,
            decided_at: None,
            grant: None,
            withdraw_requested: false,
            updated_at: 0,
        };
        self.save_application(application.clone());
        self.audit_application(Some(by), "application.submitted", &application);
        let id = application.id.clone();
        self.send_routed(provider_node, RoutedBody::Apply(request))?;
        // Decided here already if this node is the provider's as well.
        let application = self.application(&id)?.unwrap_or(application);
        Ok(Reply::Application(Box::new(application)))
    }

    /// The consumer withdraws a pending application.
    pub(crate) fn withdraw(&mut self, by: &Principal, id: String) -> Result<Reply, CommandError> {
        let a = self
            .application(&id)?
            .filter(|a| a.consumer_node == self.me)
            .ok_or_else(|| CommandError::NotFound(format!("no application {id} from this node")))?;
        self.authorize(
            by,
            Permission::Apply { consumer: &a.consumer },
            &format!("application.withdraw {id}"),
        )?;
        if a.state.is_terminal() {
            return Err(CommandError::Conflict(format!("{id} is {} already", a.state.as_str())));
        }
        self.can_send(a.provider_node)?;
        let a = Application { withdraw_requested: true, ..a };
        self.save_application(a.clone());
        self.audit_application(Some(by), "application.withdraw_requested", &a);
        self.send_routed(a.provider_node, RoutedBody::Withdraw { application: id.clone() })?;
        Ok(Reply::Application(Box::new(self.application(&id)?.unwrap_or(a))))
    }

    /// One of this node's inbox applications waiting for an approver `by` may be.
    fn pending_inbox(&mut self, by: &Principal, id: &str, what: &str) -> Result<Application, CommandError> {
        let a = self
            .application(id)?
            .filter(|a| a.provider_node == self.me)
            .ok_or_else(|| CommandError::NotFound(format!("no application {id} for this node")))?;
        let provider = a.provider.clone().unwrap_or_default();
        self.authorize(by, Permission::Decide { provider: &provider }, &format!("{what} {id}"))?;
        if a.state != State::Pending {
            return Err(CommandError::Conflict(format!("{id} is {}, not pending", a.state.as_str())));
        }
        self.can_send(a.consumer_node)?;
        Ok(a)
    }

    /// An approver approves: a grant is issued and sent to the consumer's node.
    pub(crate) fn approve(
        &mut self,
        by: &Principal,
        id: String,
        approval: Approval,
    ) -> Result<Reply, CommandError> {
        let a = self.pending_inbox(by, &id, "application.approve")?;
        let held = self.held(&a.resource)?;
        let now = self.now_s();
        let available = held.as_ref().and_then(|h| h.service.as_ref()).map(|s| s.draft.endpoints.clone());
        let endpoints = match (approval.endpoints, available) {
            (None, available) => available.unwrap_or_default(),
            (Some(asked), Some(available)) => {
                if let Some(i) = asked.iter().position(|e| !available.contains(e)) {
                    return Err(CommandError::field(
                        &format!("endpoints[{i}]"),
                        "not an endpoint of the service",
                    ));
                }
                asked
            }
            (Some(_), None) => return Err(CommandError::field("endpoints", "only a service has endpoints")),
        };
        let default_rate =
            held.as_ref().and_then(|h| h.service.as_ref()).map(|s| s.draft.rate_limit_per_minute);
        let rate = approval.rate_limit_per_minute.or(default_rate).unwrap_or(MAX_RATE_LIMIT_PER_MINUTE);
        if !(1..=MAX_RATE_LIMIT_PER_MINUTE).contains(&rate) {
            return Err(CommandError::field(
                "rate_limit_per_minute",
                format!("1 to {MAX_RATE_LIMIT_PER_MINUTE}"),
            ));
        }
        let expires_at = approval.expires_at.unwrap_or(now + u64::from(a.period_days) * DAY_S);
        if expires_at <= now {
            return Err(CommandError::field("expires_at", "must be in the future"));
        }
        if let Some(c) = &approval.conditions {
            text("conditions", c, false)?;
        }
        let grant = self.issue_grant(&a, endpoints, rate, expires_at, approval.conditions)?;
        let a = self.settle(a, State::Granted, Reason::Approved, None, Some(grant), person(by))?;
        self.audit_application(Some(by), "application.approved", &a);
        Ok(Reply::Application(Box::new(a)))
    }

    /// An approver rejects, with a reason.
    pub(crate) fn reject(
        &mut self,
        by: &Principal,
        id: String,
        reason: String,
    ) -> Result<Reply, CommandError> {
        let a = self.pending_inbox(by, &id, "application.reject")?;
        text("reason", &reason, true)?;
        let a =
            self.settle(a, State::Rejected, Reason::RejectedByApprover, Some(reason), None, person(by))?;
        self.audit_application(Some(by), "application.rejected", &a);
        Ok(Reply::Application(Box::new(a)))
    }

    /// The provider revokes a grant it issued: at once here, and the consumer's node is told.
    pub(crate) fn revoke_grant(
        &mut self,
        by: &Principal,
        id: String,
        reason: String,
    ) -> Result<Reply, CommandError> {
        let mut record = self
            .grant(&id)?
            .filter(|g| g.grant.provider_node == self.me)
            .ok_or_else(|| CommandError::NotFound(format!("no grant {id} issued by this node")))?;
        let provider = record.grant.provider.clone();
        self.authorize(by, Permission::Decide { provider: &provider }, &format!("grant.revoke {id}"))?;
        text("reason", &reason, true)?;
        if record.revoked_at.is_some() {
            return Err(CommandError::Conflict(format!("{id} is revoked already")));
        }
        self.can_send(record.grant.grantee_node)?;
        record.revoked_at = Some(self.now_s());
        record.revoke_reason = Some(reason.clone());
        self.save_grant(record.clone());
        let g = &record.grant;
        let detail = format!("{} of {} to {} ({}): {reason}", g.id, g.resource, g.grantee, g.grantee_node);
        self.audit_by(by, "grant.revoked", detail);
        if record.grant.grantee_node != self.me {
            self.send_routed(record.grant.grantee_node, RoutedBody::Revoke { grant: id, reason })?;
        }
        Ok(Reply::Grant(Box::new(record)))
    }

    fn issue_grant(
        &mut self,
        a: &Application,
        endpoints: Vec<Endpoint>,
        rate_limit_per_minute: u32,
        expires_at: u64,
        conditions: Option<String>,
    ) -> Result<Grant, CommandError> {
        self.meta.grant_seq += 1;
        self.write_meta();
        let grant = Grant {
            id: format!("{}-g{}", self.me, self.meta.grant_seq),
            application: a.id.clone(),
            provider: a.provider.clone().unwrap_or_default(),
            provider_node: self.me,
            grantee: a.consumer.clone(),
            grantee_node: a.consumer_node,
            resource: a.resource.clone(),
            endpoints,
            rate_limit_per_minute,
            conditions,
            issued_at: self.now_s(),
            expires_at,
            signature: Vec::new(),
        }
        .sign(&self.key)
        .map_err(|e| CommandError::Unavailable(e.to_string()))?;
        grant.validate()?;
        self.save_grant(GrantRecord { grant: grant.clone(), revoked_at: None, revoke_reason: None });
        Ok(grant)
    }

    /// Moves an application to a new state at the provider's node and tells the consumer's.
    fn settle(
        &mut self,
        mut a: Application,
        state: State,
        reason: Reason,
        detail: Option<String>,
        grant: Option<Grant>,
        decided_by: String,
    ) -> Result<Application, CommandError> {
        a.state = state;
        a.reason = Some(reason);
        if detail.is_some() || state != State::Granted {
            a.detail = detail;
        }
        if state.is_terminal() {
            a.decided_by = Some(decided_by);
            a.decided_at = Some(self.now_s());
            a.withdraw_requested = false;
        }
        a.grant = grant.as_ref().map(|g| g.id.clone());
        self.save_application(a.clone());
        self.tell_consumer(&a, grant)?;
        Ok(a)
    }

    fn tell_consumer(&mut self, a: &Application, grant: Option<Grant>) -> Result<(), CommandError> {
        if a.consumer_node == self.me {
            return Ok(());
        }
        let decision = Decision {
            application: a.id.clone(),
            state: a.state,
            reason: a.reason.unwrap_or(Reason::AwaitingApproval),
            detail: a.detail.clone(),
            due_at: a.due_at,
            grant,
            provider: a.provider.clone().unwrap_or_default(),
        };
        self.send_routed(a.consumer_node, RoutedBody::Decision(decision)).map(|_| ())
    }

    /// The resource at this (the provider's) node, if it is still offered.
    fn held(&mut self, resource: &Resource) -> Result<Option<Held>, CommandError> {
        let (code, service) = match resource {
            Resource::Service(id) => {
                let service = self
                    .service(id)?
                    .filter(|s| s.status == ServiceStatus::Active && Service::origin_of(id) == Some(self.me));
                match service {
                    Some(s) => (s.draft.entry.code.clone(), Some(s)),
                    None => return Ok(None),
                }
            }
            Resource::Entry(e) if e.origin == self.me => (e.code.clone(), None),
            Resource::Entry(_) => return Ok(None),
        };
        let Some((_, entry)) = self.own_entry(&code)? else { return Ok(None) };
        if entry.status != EntryStatus::Published {
            return Ok(None);
        }
        Ok(Some(Held {
            provider: service.as_ref().map_or(entry.provider.clone(), |s| s.draft.provider.clone()),
            share: entry.share_type,
            condition: entry.share_condition.clone(),
            basis: entry.not_shared_basis.clone(),
            service,
        }))
    }

    /// Delivers a routed message for this node; whether it was taken (a message
    /// that arrived before the one it follows is not, and is resent later).
    pub(crate) fn deliver(&mut self, message: &Routed) -> bool {
        let from = message.id.from;
        let outcome = match &message.body {
            RoutedBody::Apply(request) => self.on_apply(from, request),
            RoutedBody::Withdraw { application } => self.on_withdraw(from, application),
            RoutedBody::Decision(decision) => self.on_decision(from, decision),
            RoutedBody::Revoke { grant, reason } => self.on_revoke(from, grant, reason),
        };
        match outcome {
            Ok(()) => true,
            // What it depends on should have come long since: it never will.
            Err(Refusal::NotYet) if self.now_s() > message.sent_at.saturating_add(ROUTED_WAIT_S) => {
                let detail = format!(
                    "{} {} from {from}: what it depends on never came",
                    message.id,
                    message.body.kind()
                );
                self.tally(format!("node:{from}"), "routed.refused", message.body.kind(), detail);
                true
            }
            Err(Refusal::NotYet) => false,
            Err(Refusal::Never(reason)) => {
                // Nothing to retry: every node would refuse it. On record, once a window.
                let detail = format!("{} {} from {from}: {reason}", message.id, message.body.kind());
                self.tally(format!("node:{from}"), "routed.refused", message.body.kind(), detail);
                true
            }
        }
    }

    fn on_apply(&mut self, from: NodeId, request: &ApplicationRequest) -> Result<(), Refusal> {
        if !request.id.starts_with(&format!("{from}-")) {
            return Err(format!("application {} does not name its node", request.id).into());
        }
        let existing = self.application(&request.id)?;
        if existing.as_ref().is_some_and(|a| a.provider_node == self.me && a.state != State::Submitted) {
            return Err(format!("application {} was received before", request.id).into());
        }
        if self.can_send(from).is_err() {
            // The answer could not leave yet: decided when it can.
            return Err(Refusal::NotYet);
        }
        let now = self.now_s();
        let mut a = existing.unwrap_or_else(|| Application {
            id: request.id.clone(),
            resource: request.resource.clone(),
            consumer: request.consumer.clone(),
            consumer_node: from,
            provider: None,
            provider_node: self.me,
            applicant: request.applicant.clone(),
            purpose: request.purpose.clone(),
            period_days: request.period_days,
            submitted_at: now,
            state: State::Submitted,
            reason: None,
            detail: None,
            due_at: None,
            decided_by: None,
            decided_at: None,
            grant: None,
            withdraw_requested: false,
            updated_at: now,
        });
        let consumer_log = LogId { origin: from, scope: Scope::Federation };
        if self.engine.head(consumer_log) < request.consumer_log_head {
            // The consumer's registration is on its way in the log.
            return Err(Refusal::NotYet);
        }
        let held = self.held(&request.resource)?;
        let known = self.engine.is_registered_at(&request.consumer, from);
        let rule = "rule".to_string();
        let decided = match held {
            _ if !known => {
                let detail = format!("{} is not registered at node {from}", request.consumer);
                self.settle(a, State::Refused, Reason::UnknownConsumer, Some(detail), None, rule)
            }
            None => {
                let detail = format!("{} is not offered at node {}", request.resource, self.me);
                self.settle(a, State::Refused, Reason::ResourceUnavailable, Some(detail), None, rule)
            }
            Some(held) => {
                a.provider = Some(held.provider.clone());
                match held.share {
                    ShareType::NotShared => {
                        let basis = held.basis.unwrap_or_default();
                        self.settle(a, State::Refused, Reason::NotShared, Some(basis), None, rule)
                    }
                    ShareType::Unconditional => {
                        let endpoints =
                            held.service.as_ref().map(|s| s.draft.endpoints.clone()).unwrap_or_default();
                        let rate = held
                            .service
                            .as_ref()
                            .map_or(MAX_RATE_LIMIT_PER_MINUTE, |s| s.draft.rate_limit_per_minute);
                        let expires_at = now + u64::from(request.period_days) * DAY_S;
                        let grant = self
                            .issue_grant(&a, endpoints, rate, expires_at, None)
                            .map_err(|e| e.to_string())?;
                        self.settle(a, State::Granted, Reason::Unconditional, None, Some(grant), rule)
                    }
                    ShareType::Conditional => {
                        a.due_at = Some(self.calendar.due_at(now));
                        self.settle(a, State::Pending, Reason::AwaitingApproval, held.condition, None, rule)
                    }
                }
            }
        };
        let a = decided?;
        self.audit_application(None, "application.received", &a);
        Ok(())
    }

    fn on_withdraw(&mut self, from: NodeId, id: &str) -> Result<(), Refusal> {
        let Some(a) = self.application(id)? else {
            // The application itself has not arrived yet.
            return Err(Refusal::NotYet);
        };
        if a.consumer_node != from || a.provider_node != self.me {
            return Err(format!("no application {id} from node {from}").into());
        }
        if self.can_send(from).is_err() {
            return Err(Refusal::NotYet);
        }
        if a.state == State::Pending {
            let decided_by = format!("consumer at {from}");
            let a = self.settle(a, State::Withdrawn, Reason::WithdrawnByConsumer, None, None, decided_by)?;
            self.audit_application(None, "application.withdrawn", &a);
        } else {
            // Decided before the withdrawal arrived: the consumer learns the decision again.
            let grant = match &a.grant {
                Some(g) => self.grant(g)?.map(|r| r.grant),
                None => None,
            };
            self.tell_consumer(&a, grant)?;
        }
        Ok(())
    }

    fn on_decision(&mut self, from: NodeId, d: &Decision) -> Result<(), Refusal> {
        let mut a = self
            .application(&d.application)?
            .filter(|a| a.consumer_node == self.me && a.provider_node == from)
            .ok_or_else(|| format!("no application {} to node {from}", d.application))?;
        if d.state == State::Pending && a.state != State::Submitted {
            // Overtaken by a later decision (links may reorder): nothing new.
            return Ok(());
        }
        if a.state.is_terminal() {
            if a.state == d.state {
                // Told again (after a withdrawal crossed the decision): nothing new.
                return Ok(());
            }
            let (here, there) = (a.state.as_str(), d.state.as_str());
            return Err(format!("{} is {here} here; the provider now says {there}", a.id).into());
        }
        if let Some(grant) = &d.grant {
            let fits = grant.grantee_node == self.me
                && grant.provider_node == from
                && grant.application == a.id
                && grant.grantee == a.consumer;
            if !fits || !grant.verify(self.engine.keys_of(from)) {
                return Err(format!("grant {} is not a valid grant of {} for it", grant.id, a.id).into());
            }
            if self.grant(&grant.id)?.is_none() {
                self.save_grant(GrantRecord { grant: grant.clone(), revoked_at: None, revoke_reason: None });
            }
        }
        a.state = d.state;
        a.reason = Some(d.reason);
        a.detail = d.detail.clone();
        a.due_at = d.due_at;
        a.provider = Some(d.provider.clone());
        a.grant = d.grant.as_ref().map(|g| g.id.clone()).or(a.grant);
        if d.state.is_terminal() {
            a.decided_at = Some(self.now_s());
            a.decided_by = Some(format!("node {from}"));
            a.withdraw_requested = false;
        }
        self.save_application(a.clone());
        let kind = format!("application.{}", d.state.as_str());
        self.audit_application(None, &kind, &a);
        Ok(())
    }

    fn on_revoke(&mut self, from: NodeId, id: &str, reason: &str) -> Result<(), Refusal> {
        let Some(mut record) = self.grant(id)? else {
            // The decision carrying it has not arrived yet.
            return Err(Refusal::NotYet);
        };
        if record.grant.provider_node != from || record.grant.grantee_node != self.me {
            return Err(format!("no grant {id} from node {from}").into());
        }
        if record.revoked_at.is_some() {
            return Ok(());
        }
        record.revoked_at = Some(self.now_s());
        record.revoke_reason = Some(reason.to_string());
        self.save_grant(record.clone());
        let g = &record.grant;
        let detail = format!("{} of {} to {} revoked by node {from}: {reason}", g.id, g.resource, g.grantee);
        self.audit("node", None, "grant.revoked", detail);
        Ok(())
    }
}
