//! Organizations (departments and bureaus), registered at a node and replicated.

use crate::catalog::{validate_credit_code, FieldError};
use crate::ids::{IdError, NodeId};
use serde::{Deserialize, Serialize};

/// Longest organization name accepted.
const MAX_NAME_CHARS: usize = 200;

/// An organization: a department or bureau with a unified social credit code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Organization {
    /// 18-character unified social credit code (GB 32100).
    pub credit_code: String,
    /// Its name.
    pub name: String,
    /// The division (GB/T 2260) it belongs to.
    pub division: NodeId,
    /// The credit code of its parent organization, if any.
    pub parent: Option<String>,
}

impl Organization {
    /// A valid credit code of a government body (`11`) in `division`, whose
    /// organization code is built from `serial`: for tools, tests and simulations.
    pub fn government_code(division: NodeId, serial: u32) -> String {
        let first17 = format!("11{division}MB{:07}", serial % 10_000_000);
        let check = crate::catalog::credit_code_check_char(&first17).unwrap_or('0');
        format!("{first17}{check}")
    }

    /// The division the credit code was issued in (its positions 3 to 8).
    pub fn issuing_division(&self) -> Result<NodeId, IdError> {
        self.credit_code.get(2..8).ok_or_else(|| IdError::NotSixDigits(self.credit_code.clone()))?.parse()
    }

    /// Checks that `node` may register this organization: its division and the
    /// division its credit code was issued in must both lie in the node's subtree.
    pub fn check_registrar(&self, node: NodeId) -> Result<(), FieldError> {
        let field = |f: &str, reason: String| FieldError { field: f.into(), reason };
        if !crate::division::in_subtree(node, self.division) {
            return Err(field("division", format!("{} is outside the subtree of {node}", self.division)));
        }
        let issued_in = self.issuing_division().map_err(|e| field("credit_code", e.to_string()))?;
        if !crate::division::in_subtree(node, issued_in) {
            return Err(field(
                "credit_code",
                format!("issued in {issued_in}, outside the subtree of {node}"),
            ));
        }
        Ok(())
    }

    /// Checks the record, naming the first offending field.
    pub fn validate(&self) -> Result<(), FieldError> {
        let field = |f: &str, reason: String| FieldError { field: f.into(), reason };
        validate_credit_code(&self.credit_code).map_err(|r| field("credit_code", r))?;
        let chars = self.name.trim().chars().count();
        if chars == 0 || chars > MAX_NAME_CHARS {
            return Err(field("name", format!("must be 1..={MAX_NAME_CHARS} characters")));
        }
        crate::division::validate(self.division).map_err(|r| field("division", r))?;
        if let Some(parent) = &self.parent {
            validate_credit_code(parent).map_err(|r| field("parent", r))?;
            if parent == &self.credit_code {
                return Err(field("parent", "an organization cannot be its own parent".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_are_valid_and_bad_records_name_the_field() {
        let division: NodeId = "370100".parse().unwrap();
        let code = Organization::government_code(division, 1);
        assert!(validate_credit_code(&code).is_ok(), "{code}");
        let org =
            Organization {
                credit_code: code.clone(), name: "济南市大数据局".into(), division, parent: None
            };
        assert!(org.validate().is_ok());
        let mut bad = org.clone();
        bad.credit_code.replace_range(17.., "X");
        assert_eq!(bad.validate().unwrap_err().field, "credit_code");
        let mut bad = org.clone();
        bad.parent = Some(code);
        assert_eq!(bad.validate().unwrap_err().field, "parent");
        let mut bad = org;
        bad.division = "371200".parse().unwrap();
        assert_eq!(bad.validate().unwrap_err().field, "division");
    }
}
