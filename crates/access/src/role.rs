//! Roles, principals and the permission rules of the admin interface.

use serde::{Deserialize, Serialize};

/// What an account may do.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything on this node.
    Admin,
    /// Edits the catalog of its own organization and its sub-organizations.
    Cataloger,
    /// Decides applications for its organization's resources, and revokes grants.
    Approver,
    /// Applies for and uses resources for its organization.
    Consumer,
    /// Reads audit and usage; changes nothing.
    Auditor,
}

/// Who is calling: an account, or the node's bootstrap token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Principal {
    /// For the audit log: "account:NAME" or "token:bootstrap".
    pub actor: String,
    /// The account, if any.
    pub username: Option<String>,
    /// The account's organization (credit code), if any.
    pub organization: Option<String>,
    /// Its roles.
    pub roles: Vec<Role>,
}

/// An action to authorize.
#[derive(Clone, Copy, Debug)]
pub enum Permission<'a> {
    /// Read node, sync, catalog, organization and division views.
    Read,
    /// Create, update, publish or withdraw catalog entries of this provider.
    EditCatalog {
        /// The entry's provider (credit code).
        provider: &'a str,
    },
    /// Register organizations.
    RegisterOrganization,
    /// Create accounts and manage other accounts' tokens.
    ManageAccounts,
    /// Revoke a member of the federation.
    Revoke,
    /// Read the audit log and metrics.
    Audit,
    /// Apply for resources, and withdraw applications, for this consumer organization.
    Apply {
        /// The consumer (credit code).
        consumer: &'a str,
    },
    /// Approve or reject applications, and revoke grants, for this provider organization.
    Decide {
        /// The provider (credit code).
        provider: &'a str,
    },
}

impl Principal {
    /// The node itself acting through its own tools (simulator workloads, benches):
    /// an administrator, audited as "node".
    pub fn node() -> Principal {
        Principal { actor: "node".into(), username: None, organization: None, roles: vec![Role::Admin] }
    }

    /// The bootstrap administrator (the token written at first start).
    pub fn bootstrap() -> Principal {
        Principal {
            actor: "token:bootstrap".into(),
            username: None,
            organization: None,
            roles: vec![Role::Admin],
        }
    }

    /// Whether this principal holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Allows or refuses `permission`, with the reason. `parent_of` names an
    /// organization's parent (for a cataloger's sub-organizations).
    pub fn check(
        &self,
        permission: Permission<'_>,
        parent_of: impl Fn(&str) -> Option<String>,
    ) -> Result<(), String> {
        if self.has(Role::Admin) {
            return Ok(());
        }
        match permission {
            Permission::Read => Ok(()),
            Permission::Audit if self.has(Role::Auditor) => Ok(()),
            Permission::Audit => Err("reading the audit log needs the auditor or admin role".into()),
            Permission::EditCatalog { provider } => {
                if !self.has(Role::Cataloger) {
                    return Err("editing the catalog needs the cataloger role".into());
                }
                self.acts_for(provider, parent_of)
            }
            Permission::Apply { consumer } => {
                if !self.has(Role::Consumer) {
                    return Err("applying for resources needs the consumer role".into());
                }
                self.acts_for(consumer, parent_of)
            }
            Permission::Decide { provider } => {
                if !self.has(Role::Approver) {
                    return Err("deciding applications needs the approver role".into());
                }
                self.acts_for(provider, parent_of)
            }
            Permission::RegisterOrganization => Err("registering organizations needs the admin role".into()),
            Permission::ManageAccounts => Err("managing accounts needs the admin role".into()),
            Permission::Revoke => Err("revoking members needs the admin role".into()),
        }
    }

    /// Whether the account's organization is `org` or one of its ancestors.
    fn acts_for(&self, org: &str, parent_of: impl Fn(&str) -> Option<String>) -> Result<(), String> {
        let Some(own) = &self.organization else {
            return Err("the account has no organization".into());
        };
        let mut current = Some(org.to_string());
        for _ in 0..cascade_protocol::limits::MAX_ORG_DEPTH {
            match current {
                Some(o) if &o == own => return Ok(()),
                Some(o) => current = parent_of(&o),
                None => break,
            }
        }
        Err(format!("{org} is not {own} or one of its sub-organizations"))
    }
}
