//! Catalog entry metadata (2017 catalog compilation guide) and GB 32100 credit codes.

use serde::{Deserialize, Serialize};

/// GB 32100 alphabet; a character's value is its index (0..=30).
const CREDIT_ALPHABET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";
/// GB 32100 weights `3^(i-1) mod 31` for positions 1..=17.
const CREDIT_WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];
/// Upper bound for every free-text field, in characters.
const MAX_TEXT: usize = 4000;
const MAX_NAME: usize = 200;
const MAX_ITEM_NAME: usize = 100;
const MAX_ITEMS: usize = 1000;
const MAX_RELATED: usize = 100;

fn credit_value(c: char) -> Option<u32> {
    // ASCII alphabet: a character's byte index is its value.
    u8::try_from(c).ok().and_then(|b| CREDIT_ALPHABET.bytes().position(|a| a == b)).map(|p| p as u32)
}

/// The check character of 17 valid values.
fn check_char_of(values: impl Iterator<Item = u32>) -> char {
    let sum: u32 = values.zip(CREDIT_WEIGHTS).map(|(v, w)| v * w).sum();
    char::from(CREDIT_ALPHABET.as_bytes()[((31 - sum % 31) % 31) as usize])
}

/// Computes the GB 32100 check character for the first 17 characters, or `None` if they are invalid.
pub fn credit_code_check_char(first17: &str) -> Option<char> {
    if first17.chars().count() != 17 {
        return None;
    }
    let values: Option<Vec<u32>> = first17.chars().map(credit_value).collect();
    Some(check_char_of(values?.into_iter()))
}

/// Validates an 18-character unified social credit code (GB 32100-2015), explaining any
/// failure. (Called for every entry every node admits: it allocates nothing on success.)
pub fn validate_credit_code(code: &str) -> Result<(), String> {
    let n = code.chars().count();
    if n != 18 {
        return Err(format!("credit code must be 18 characters, got {n}"));
    }
    for (i, c) in code.chars().enumerate() {
        let pos = i + 1;
        if credit_value(c).is_none() {
            return Err(format!("character {c:?} not allowed at position {pos}"));
        }
        if (3..=8).contains(&pos) && !c.is_ascii_digit() {
            let e = format!("character {c:?} not allowed at position {pos} (division code)");
            return Err(e);
        }
    }
    // Every character is in the ASCII alphabet now: bytes are characters.
    let expected = check_char_of(code.bytes().take(17).filter_map(|b| credit_value(char::from(b))));
    let got = char::from(code.as_bytes()[17]);
    if expected != got {
        let e = format!("check character mismatch: expected {expected} got {got}");
        return Err(e);
    }
    Ok(())
}

macro_rules! str_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident => $s:literal, $doc:literal;)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $(#[doc = $doc] $(#[$vm])* $var),+
        }

        impl $name {
            /// Returns the serde (wire) name of this value.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $(Self::$var => $s),+
                }
            }
        }
    };
}

str_enum! {
    /// Format of an information resource (信息资源格式).
    ResourceFormat {
        ElectronicFile => "electronic_file", "Electronic file.";
        Spreadsheet => "spreadsheet", "Spreadsheet.";
        Database => "database", "Database.";
        Image => "image", "Image.";
        StreamingMedia => "streaming_media", "Streaming media.";
        SelfDescribing => "self_describing", "Self-describing format.";
        ServiceInterface => "service_interface", "Service interface (API).";
    }
}

str_enum! {
    /// Data type of a data item (信息项数据类型), serialized as a single letter.
    DataType {
        #[serde(rename = "C")] Char => "C", "C: character.";
        #[serde(rename = "N")] Numeric => "N", "N: numeric.";
        #[serde(rename = "Y")] Currency => "Y", "Y: currency.";
        #[serde(rename = "D")] Date => "D", "D: date.";
        #[serde(rename = "T")] DateTime => "T", "T: date-time.";
        #[serde(rename = "L")] Logical => "L", "L: logical.";
        #[serde(rename = "M")] Memo => "M", "M: memo.";
        #[serde(rename = "G")] General => "G", "G: general.";
        #[serde(rename = "B")] Double => "B", "B: double.";
        #[serde(rename = "I")] Integer => "I", "I: integer.";
        #[serde(rename = "F")] Float => "F", "F: float.";
    }
}

str_enum! {
    /// Share type (共享类型).
    ShareType {
        Unconditional => "unconditional", "Unconditional sharing (无条件共享).";
        Conditional => "conditional", "Conditional sharing (有条件共享).";
        NotShared => "not_shared", "Not shared (不予共享).";
    }
}

str_enum! {
    /// Share mode (共享方式).
    ShareMode {
        Platform => "platform", "Via the sharing platform (table / interface / file).";
        Mail => "mail", "By mail.";
        Media => "media", "On physical media.";
    }
}

str_enum! {
    /// Openness to the public (开放属性).
    OpenType {
        Open => "open", "Open to the public.";
        Conditional => "conditional", "Open under a condition.";
        Closed => "closed", "Not open.";
    }
}

str_enum! {
    /// Update cycle (更新周期).
    UpdateCycle {
        Realtime => "realtime", "Real time.";
        Daily => "daily", "Daily.";
        Weekly => "weekly", "Weekly.";
        Monthly => "monthly", "Monthly.";
        Quarterly => "quarterly", "Quarterly.";
        HalfYearly => "half_yearly", "Every half year.";
        Yearly => "yearly", "Yearly.";
        Irregular => "irregular", "Irregular.";
    }
}

str_enum! {
    /// Lifecycle status of a stored catalog entry.
    EntryStatus {
        Draft => "draft", "Not yet published.";
        Published => "published", "Published in the catalog.";
        Withdrawn => "withdrawn", "Withdrawn from the catalog.";
    }
}

/// One data item (信息项) of a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DataItem {
    /// Item name.
    pub name: String,
    /// Item data type.
    pub data_type: DataType,
    /// Item length, required for Char and Numeric types.
    pub length: Option<u32>,
}

/// A catalog entry as submitted by an administrator (JSON only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryDraft {
    /// Resource code, if already assigned.
    #[serde(default)]
    pub code: Option<String>,
    /// Resource name.
    pub name: String,
    /// Classification prefix, e.g. "3" or "1.01".
    pub classification: String,
    /// Provider's unified social credit code.
    pub provider: String,
    /// Summary.
    pub summary: String,
    /// Resource format.
    pub format: ResourceFormat,
    /// Data items.
    #[serde(default)]
    pub data_items: Vec<DataItem>,
    /// Share type.
    pub share_type: ShareType,
    /// Share condition, required when conditional.
    #[serde(default)]
    pub share_condition: Option<String>,
    /// Legal or policy basis, required when not shared.
    #[serde(default)]
    pub not_shared_basis: Option<String>,
    /// Share mode.
    pub share_mode: ShareMode,
    /// Openness to the public.
    pub open_type: OpenType,
    /// Open condition, required when conditionally open.
    #[serde(default)]
    pub open_condition: Option<String>,
    /// Update cycle.
    pub update_cycle: UpdateCycle,
    /// Publish date, YYYY-MM-DD.
    #[serde(default)]
    pub publish_date: Option<String>,
    /// Codes of related resources.
    #[serde(default)]
    pub related_codes: Vec<String>,
}

/// A validation failure naming the offending JSON field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// JSON field name, e.g. "data_items[0].name".
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

fn ferr(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
    FieldError { field: field.into(), reason: reason.into() }
}

fn check_text(field: &str, value: &str, max: usize, required: bool) -> Result<(), FieldError> {
    if required && value.trim().is_empty() {
        return Err(ferr(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(ferr(field, format!("must be at most {max} characters")));
    }
    Ok(())
}

fn check_opt_text(field: &str, value: &Option<String>, required: bool) -> Result<(), FieldError> {
    match value {
        Some(v) => check_text(field, v, MAX_TEXT, required),
        None if required => Err(ferr(field, "is required")),
        None => Ok(()),
    }
}

/// Validates a classification prefix: '1', '2' or '3', then optional groups of "." and 1-4 digits.
pub fn validate_classification(s: &str) -> Result<(), String> {
    if s.len() > MAX_TEXT {
        return Err(format!("must be at most {MAX_TEXT} characters"));
    }
    let mut parts = s.split('.');
    if !matches!(parts.next(), Some("1" | "2" | "3")) {
        return Err(format!("{s:?}: must start with 1, 2 or 3"));
    }
    for p in parts {
        if p.is_empty() || p.len() > 4 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{s:?}: each group after '.' must be 1-4 digits"));
        }
    }
    Ok(())
}

/// Validates a resource code: classification, "/", then exactly 6 digits.
pub fn validate_resource_code(code: &str) -> Result<(), String> {
    let (class, seq) =
        code.split_once('/').ok_or_else(|| format!("{code:?}: expected <classification>/<6 digits>"))?;
    validate_classification(class).map_err(|e| format!("classification part: {e}"))?;
    if seq.len() != 6 || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("sequence part {seq:?} must be exactly 6 digits"));
    }
    Ok(())
}

/// Builds a resource code from a classification and a sequence number (zero-padded to 6 digits).
pub fn resource_code(classification: &str, seq: u64) -> String {
    format!("{classification}/{seq:06}")
}

/// Validates a calendar date in YYYY-MM-DD form (year 0001-9999, leap years honoured).
pub fn validate_date(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let ok_at =
        |(i, c): (usize, &u8)| matches!((i, c), (4 | 7, b'-')) || (i != 4 && i != 7 && c.is_ascii_digit());
    if b.len() != 10 || !b.iter().enumerate().all(ok_at) {
        return Err(format!("{s:?}: expected YYYY-MM-DD"));
    }
    let num = |r: std::ops::Range<usize>| b[r].iter().fold(0u32, |a, &d| a * 10 + u32::from(d - b'0'));
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    if !(1..=12).contains(&m) {
        return Err(format!("{s:?}: month must be 01-12"));
    }
    let days = crate::civil::month_days(u64::from(y), u64::from(m)) as u32;
    if y == 0 || d == 0 || d > days {
        return Err(format!("{s:?}: year must be 0001-9999 and day 01-{days:02}"));
    }
    Ok(())
}

/// The descriptive fields of a draft or an entry, borrowed: what the catalog rules
/// check (an entry is checked without copying it into a draft).
struct Fields<'a> {
    code: Option<&'a str>,
    name: &'a str,
    classification: &'a str,
    provider: &'a str,
    summary: &'a str,
    format: ResourceFormat,
    data_items: &'a [DataItem],
    share_type: ShareType,
    share_condition: &'a Option<String>,
    not_shared_basis: &'a Option<String>,
    open_type: OpenType,
    open_condition: &'a Option<String>,
    publish_date: &'a Option<String>,
    related_codes: &'a [String],
}

impl Fields<'_> {
    /// Checks all catalog rules, returning the first offending field.
    fn validate(&self) -> Result<(), FieldError> {
        if let Some(code) = self.code {
            validate_resource_code(code).map_err(|e| ferr("code", e))?;
        }
        check_text("name", self.name, MAX_NAME, true)?;
        validate_classification(self.classification).map_err(|e| ferr("classification", e))?;
        validate_credit_code(self.provider).map_err(|e| ferr("provider", e))?;
        check_text("summary", self.summary, MAX_TEXT, true)?;
        self.validate_data_items()?;
        let cond = self.share_type == ShareType::Conditional;
        check_opt_text("share_condition", self.share_condition, cond)?;
        let not_shared = self.share_type == ShareType::NotShared;
        check_opt_text("not_shared_basis", self.not_shared_basis, not_shared)?;
        let open_cond = self.open_type == OpenType::Conditional;
        check_opt_text("open_condition", self.open_condition, open_cond)?;
        if let Some(date) = self.publish_date {
            validate_date(date).map_err(|e| ferr("publish_date", e))?;
        }
        if self.related_codes.len() > MAX_RELATED {
            return Err(ferr("related_codes", format!("at most {MAX_RELATED}")));
        }
        for (i, c) in self.related_codes.iter().enumerate() {
            validate_resource_code(c).map_err(|e| ferr(format!("related_codes[{i}]"), e))?;
        }
        Ok(())
    }

    fn validate_data_items(&self) -> Result<(), FieldError> {
        use ResourceFormat::{Database, Spreadsheet};
        let tabular = matches!(self.format, Database | Spreadsheet);
        if tabular && self.data_items.is_empty() {
            return Err(ferr("data_items", "required for database/spreadsheet"));
        }
        if self.data_items.len() > MAX_ITEMS {
            return Err(ferr("data_items", format!("at most {MAX_ITEMS} items")));
        }
        for (i, item) in self.data_items.iter().enumerate() {
            let name_field = format!("data_items[{i}].name");
            check_text(&name_field, &item.name, MAX_ITEM_NAME, true)?;
            let sized = matches!(item.data_type, DataType::Char | DataType::Numeric);
            if sized && !matches!(item.length, Some(1..=65535)) {
                let reason = "required (1-65535) for types C and N";
                return Err(ferr(format!("data_items[{i}].length"), reason));
            }
        }
        Ok(())
    }
}

/// Borrows the descriptive fields of a draft or an entry.
macro_rules! fields {
    ($s:expr, $code:expr) => {
        Fields {
            code: $code,
            name: &$s.name,
            classification: &$s.classification,
            provider: &$s.provider,
            summary: &$s.summary,
            format: $s.format,
            data_items: &$s.data_items,
            share_type: $s.share_type,
            share_condition: &$s.share_condition,
            not_shared_basis: &$s.not_shared_basis,
            open_type: $s.open_type,
            open_condition: &$s.open_condition,
            publish_date: &$s.publish_date,
            related_codes: &$s.related_codes,
        }
    };
}

impl EntryDraft {
    /// Checks all catalog rules, returning the first offending field.
    pub fn validate(&self) -> Result<(), FieldError> {
        fields!(self, self.code.as_deref()).validate()
    }
}

/// A published or stored catalog entry (also bincode-encoded; keep serde attributes plain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CatalogEntry {
    /// Resource code.
    pub code: String,
    /// Version, incremented on each change.
    pub version: u64,
    /// Lifecycle status.
    pub status: EntryStatus,
    /// Resource name.
    pub name: String,
    /// Classification prefix.
    pub classification: String,
    /// Provider's unified social credit code.
    pub provider: String,
    /// Summary.
    pub summary: String,
    /// Resource format.
    pub format: ResourceFormat,
    /// Data items.
    pub data_items: Vec<DataItem>,
    /// Share type.
    pub share_type: ShareType,
    /// Share condition.
    pub share_condition: Option<String>,
    /// Legal or policy basis for not sharing.
    pub not_shared_basis: Option<String>,
    /// Share mode.
    pub share_mode: ShareMode,
    /// Openness to the public.
    pub open_type: OpenType,
    /// Open condition.
    pub open_condition: Option<String>,
    /// Update cycle.
    pub update_cycle: UpdateCycle,
    /// Publish date, YYYY-MM-DD.
    pub publish_date: Option<String>,
    /// Codes of related resources.
    pub related_codes: Vec<String>,
}

/// Generates `from_draft` / `to_draft`, listing Copy fields then cloned fields.
macro_rules! entry_conversions {
    (copy: $($c:ident),*; clone: $($k:ident),*) => {
        /// Builds an entry from a draft; the draft's own `code` is replaced by `code`.
        pub fn from_draft(draft: EntryDraft, code: String, version: u64, status: EntryStatus) -> Self {
            Self { code, version, status, $($c: draft.$c,)* $($k: draft.$k,)* }
        }

        /// Returns the descriptive fields as a draft carrying this entry's code.
        pub fn to_draft(&self) -> EntryDraft {
            EntryDraft { code: Some(self.code.clone()), $($c: self.$c,)* $($k: self.$k.clone(),)* }
        }
    };
}

impl CatalogEntry {
    entry_conversions! {
        copy: format, share_type, share_mode, open_type, update_cycle;
        clone: name, classification, provider, summary, data_items, share_condition,
            not_shared_basis, open_condition, publish_date, related_codes
    }

    /// Validates the code (always present here) and all draft rules; never panics.
    pub fn validate(&self) -> Result<(), FieldError> {
        fields!(self, Some(self.code.as_str())).validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{"name": "企业登记基本信息", "classification": "3", "provider": "91350100M000100Y43", "summary": "Basic registration data of enterprises", "format": "database", "data_items": [{"name": "统一社会信用代码", "data_type": "C", "length": 18}], "share_type": "unconditional", "share_mode": "platform", "open_type": "closed", "update_cycle": "daily"}"#;

    fn example() -> EntryDraft {
        serde_json::from_str(EXAMPLE).expect("example parses")
    }

    fn field_of(d: &EntryDraft) -> String {
        d.validate().expect_err("should fail").field
    }

    #[test]
    fn example_body_accepted_and_unknown_field_rejected() {
        let d = example();
        assert_eq!(d.data_items[0].data_type, DataType::Char);
        assert_eq!(d.validate(), Ok(()));
        let body = EXAMPLE.replacen('{', r#"{"bogus": 1, "#, 1);
        assert!(serde_json::from_str::<EntryDraft>(&body).is_err());
    }

    #[test]
    fn credit_codes() {
        assert_eq!(credit_code_check_char("91350100M000100Y4"), Some('3'));
        assert_eq!(credit_code_check_char("91350100M000100Y"), None);
        assert_eq!(validate_credit_code("91350100M000100Y43"), Ok(()));
        for (bad, msg) in [
            ("91350100M000100Y4", "18"),
            ("91350100M000100Y433", "18"),
            ("91350100I000100Y43", "position 9"),
            ("913501A0M000100Y43", "position 7"),
            ("91350100M000100Y44", "expected 3 got 4"),
            ("91350100M000100Y4é", "position 18"),
        ] {
            let e = validate_credit_code(bad).expect_err(bad);
            assert!(e.contains(msg), "{bad}: {e}");
        }
        let mut d = example();
        d.provider = "91350100M000100Y44".into();
        assert_eq!(field_of(&d), "provider");
    }

    #[test]
    fn data_items_rules() {
        let mut d = example();
        d.data_items[0].length = None;
        assert_eq!(field_of(&d), "data_items[0].length");
        d.data_items.clear();
        assert_eq!(field_of(&d), "data_items");
        d.format = ResourceFormat::ServiceInterface;
        assert_eq!(d.validate(), Ok(()));
        d.data_items.push(DataItem { name: " ".into(), data_type: DataType::Date, length: None });
        assert_eq!(field_of(&d), "data_items[0].name");
    }

    #[test]
    fn share_and_open_conditions() {
        let mut d = example();
        d.share_type = ShareType::Conditional;
        assert_eq!(field_of(&d), "share_condition");
        d.share_condition = Some("apply via platform".into());
        assert_eq!(d.validate(), Ok(()));
        d.share_type = ShareType::NotShared;
        assert_eq!(field_of(&d), "not_shared_basis");
        d.not_shared_basis = Some(" ".into());
        assert_eq!(field_of(&d), "not_shared_basis");
        d.share_type = ShareType::Unconditional;
        d.open_type = OpenType::Conditional;
        assert_eq!(field_of(&d), "open_condition");
    }

    #[test]
    fn publish_dates() {
        let mut d = example();
        d.publish_date = Some("2023-02-29".into());
        assert_eq!(field_of(&d), "publish_date");
        d.publish_date = Some("2024-02-29".into());
        assert_eq!(d.validate(), Ok(()));
        for bad in ["1900-02-29", "2024-13-01", "2024-04-31", "2024-1-01", "2024/01/01", "é"] {
            assert!(validate_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resource_codes() {
        assert_eq!(resource_code("3.2", 7), "3.2/000007");
        for ok in ["3/000001", "1.01/123456", "3.2.15/000000", "2.1234/999999"] {
            assert_eq!(validate_resource_code(ok), Ok(()), "{ok}");
        }
        for bad in ["3", "4/000001", "3/00001", "3/0000001", "3./000001", "3.12345/1", "/000001"] {
            assert!(validate_resource_code(bad).is_err(), "{bad}");
        }
        let mut d = example();
        d.code = Some("3/12".into());
        assert_eq!(field_of(&d), "code");
        d.code = Some("3/000012".into());
        d.related_codes = vec!["1/000001".into(), "x".into()];
        assert_eq!(field_of(&d), "related_codes[1]");
    }

    #[test]
    fn enums_and_catalog_entry() {
        assert_eq!(serde_json::to_string(&ShareType::NotShared).unwrap(), r#""not_shared""#);
        assert_eq!(UpdateCycle::HalfYearly.as_str(), "half_yearly");
        assert_eq!(serde_json::to_string(&DataType::DateTime).unwrap(), r#""T""#);
        let e = CatalogEntry::from_draft(example(), resource_code("3", 1), 1, EntryStatus::Published);
        assert_eq!(e.validate(), Ok(()));
        assert_eq!(CatalogEntry::from_draft(e.to_draft(), e.code.clone(), 1, e.status), e);
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<CatalogEntry>(&json).unwrap(), e);
        let bad = CatalogEntry { code: "garbage/é".into(), ..e };
        assert_eq!(bad.validate().unwrap_err().field, "code");
    }
}
