//! Organizations registered at this node: signed deltas replicated to the whole
//! federation, so that any node can name any organization.

use crate::catalog::CatalogError;
use crate::node::Node;
use cascade_protocol::catalog::FieldError;
use cascade_protocol::org::Organization;
use cascade_protocol::{DeltaBody, NodeId, Scope};

impl Node {
    /// Registers (or updates) an organization of this node's subtree; returns once
    /// the registration is durable. The division must lie in the node's subtree and
    /// the credit code must not belong to another node.
    pub async fn register_organization(&self, org: Organization) -> Result<Organization, CatalogError> {
        org.validate()?;
        let me = self.identity().id;
        if !cascade_protocol::division::in_subtree(me, org.division) {
            return Err(CatalogError::Invalid(FieldError {
                field: "division".into(),
                reason: format!("{} is outside the subtree of {me}", org.division),
            }));
        }
        let issued_in =
            org.issuing_division().map_err(|reason| FieldError { field: "credit_code".into(), reason })?;
        if !cascade_protocol::division::in_subtree(me, issued_in) {
            return Err(CatalogError::Invalid(FieldError {
                field: "credit_code".into(),
                reason: format!("issued in {issued_in}, outside the subtree of {me}"),
            }));
        }
        // The federation tolerates two nodes registering one code (neither blocks
        // the other's log); operators are stopped from doing it knowingly.
        if let Some((origin, _)) =
            self.store().organization(&org.credit_code)?.into_iter().find(|(o, _)| *o != me)
        {
            return Err(CatalogError::Conflict(format!(
                "organization {} is registered at {origin}",
                org.credit_code
            )));
        }
        self.originate(Scope::Federation, DeltaBody::Organization(org.clone()))
            .await?
            .map_err(CatalogError::Conflict)?;
        Ok(org)
    }

    /// Every organization this node knows, filtered by the node it is registered at.
    pub fn organizations(&self, origin: Option<NodeId>) -> Result<Vec<(NodeId, Organization)>, CatalogError> {
        let mut out = Vec::new();
        for item in self.store().organizations() {
            let (at, org) = item?;
            if origin.is_none_or(|o| o == at) {
                out.push((at, org));
            }
        }
        Ok(out)
    }
}
