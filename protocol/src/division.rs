//! Administrative divisions (GB/T 2260): the built-in table of the national node,
//! the provincial-level and the prefecture-level divisions.

use crate::ids::{NodeId, Tier, NATIONAL};
use serde::Serialize;

/// The division table shipped with the project, as CSV (`code,name,tier,parent`) (`protocol/data/divisions.csv`, from the national
/// standard's public dataset; see `../shared/DOMAIN.md`).
pub const TABLE_CSV: &str = include_str!("../data/divisions.csv");

/// One division of the table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Division {
    /// Its 6-digit code.
    pub code: NodeId,
    /// Its name.
    pub name: String,
    /// The tier of the node serving it.
    pub tier: Tier,
    /// The division above it.
    pub parent: Option<NodeId>,
}

/// The built-in division table, parsed once.
pub fn table() -> &'static [Division] {
    static PARSED: std::sync::OnceLock<Vec<Division>> = std::sync::OnceLock::new();
    PARSED.get_or_init(|| {
        TABLE_CSV
            .lines()
            .skip(1)
            .filter_map(|line| {
                let mut f = line.trim().split(',');
                let code = f.next()?.parse().ok()?;
                let name = f.next()?.to_string();
                let tier = f.next()?.parse().ok()?;
                let parent = f.next().filter(|p| !p.is_empty()).and_then(|p| p.parse().ok());
                Some(Division { code, name, tier, parent })
            })
            .collect()
    })
}

/// The division with this code, if the table has it.
pub fn find(code: NodeId) -> Option<&'static Division> {
    table().iter().find(|d| d.code == code)
}

/// Whether `division` lies in the subtree a node serves: the national node serves
/// everything, a province its `PP....` codes, a city its `PPCC..` codes.
pub fn in_subtree(node: NodeId, division: NodeId) -> bool {
    let (n, d) = (node.code(), division.code());
    if node == NATIONAL {
        true
    } else if n % 10_000 == 0 {
        d / 10_000 == n / 10_000
    } else {
        d / 100 == n / 100
    }
}

/// Checks a GB/T 2260 code: six digits, a province known to the table, and for a
/// prefecture or county code, a prefecture known to the table (districts and
/// counties below prefectures are not in the table and are accepted by structure).
pub fn validate(code: NodeId) -> Result<(), String> {
    if code == NATIONAL {
        return Ok(());
    }
    let table = table();
    let known = |c: u32| table.iter().any(|d| d.code.code() == c);
    let c = code.code();
    let province = c / 10_000 * 10_000;
    if !known(province) {
        return Err(format!("{code}: no province {province:06}"));
    }
    let prefecture = c / 100 * 100;
    // Direct-administered municipalities list no prefectures: accept their districts.
    let has_prefectures = table.iter().any(|d| d.parent.map(|p| p.code()) == Some(province));
    if prefecture != province && has_prefectures && !known(prefecture) {
        return Err(format!("{code}: no prefecture {prefecture:06}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        s.parse().unwrap()
    }

    #[test]
    fn the_table_and_the_rules() {
        assert_eq!(table().len(), 365);
        assert!(validate(id("370100")).is_ok());
        assert!(validate(id("370102")).is_ok()); // a district of Jinan
        assert!(validate(id("371200")).is_err()); // Laiwu, merged into Jinan in 2019
        assert!(validate(id("990000")).is_err());
        assert!(validate(id("110105")).is_ok()); // a district of Beijing
        assert!(in_subtree(id("370100"), id("370102")));
        assert!(!in_subtree(id("370100"), id("370202")));
        assert!(in_subtree(id("370000"), id("370202")));
        assert!(in_subtree(NATIONAL, id("110105")));
    }
}
