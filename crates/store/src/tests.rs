use super::*;
use cascade_core::audit::{AuditEvent, AuditFilter, Chain};
use cascade_core::OwnWrite;
use cascade_protocol::catalog::{EntryDraft, EntryStatus};
use cascade_protocol::limits::MAX_AUDIT_EXAMINED;
use cascade_protocol::{Delta, DeltaBody, NodeId, GENESIS_HASH};
use ed25519_dalek::SigningKey;
use std::sync::Arc;

fn jinan() -> NodeId {
    "370100".parse().unwrap()
}

fn entry(version: u64) -> CatalogEntry {
    let draft = EntryDraft {
        code: None,
        name: format!("v{version}"),
        classification: "3".into(),
        provider: "91350100M000100Y43".into(),
        summary: "s".into(),
        format: cascade_protocol::catalog::ResourceFormat::ElectronicFile,
        data_items: vec![],
        share_type: cascade_protocol::catalog::ShareType::Unconditional,
        share_condition: None,
        not_shared_basis: None,
        share_mode: cascade_protocol::catalog::ShareMode::Platform,
        open_type: cascade_protocol::catalog::OpenType::Closed,
        open_condition: None,
        update_cycle: cascade_protocol::catalog::UpdateCycle::Daily,
        publish_date: None,
        related_codes: vec![],
    };
    CatalogEntry::from_draft(draft, "3/000001".into(), version, EntryStatus::Published)
}

fn log() -> LogId {
    LogId { origin: jinan(), scope: Scope::Federation }
}

/// A chain of catalog deltas publishing versions 1..=n of one entry.
fn chain(n: u64) -> Vec<Arc<Delta>> {
    let key = SigningKey::from_bytes(&[3; 32]);
    let mut prev = GENESIS_HASH;
    (1..=n)
        .map(|seq| {
            let d = Delta::sign(&key, log(), seq, prev, &DeltaBody::Catalog(entry(seq))).unwrap();
            prev = d.hash();
            Arc::new(d)
        })
        .collect()
}

/// The batch a core would write for these admitted deltas.
fn batch(deltas: &[Arc<Delta>]) -> WriteBatch {
    let materialize = deltas
        .iter()
        .map(|d| {
            let Ok(DeltaBody::Catalog(entry)) = d.decode_body() else { panic!("a catalog delta") };
            Materialize::Catalog { log: d.log, entry: Arc::new(entry), delta: d.clone(), stored_ms: 1_000 }
        })
        .collect();
    WriteBatch { deltas: deltas.to_vec(), materialize, ..WriteBatch::default() }
}

#[test]
fn logs_survive_reopen_and_a_batch_with_a_hole_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let deltas = chain(5);
    {
        let store = Store::open(dir.path(), jinan()).unwrap();
        store.apply(&batch(&deltas[..3])).unwrap();
        let err = store.apply(&batch(&deltas[4..])).unwrap_err();
        assert!(matches!(err, StoreError::OutOfOrder { expected: 4, got: 5, .. }), "{err}");
        store.flush().unwrap();
    }
    let store = Store::open(dir.path(), jinan()).unwrap();
    assert_eq!(store.head(log()).unwrap(), 3);
    let back: Vec<Delta> = store.range(log(), 2, 3).map(Result::unwrap).collect();
    assert_eq!(back, deltas[1..3].iter().map(|d| Delta::clone(d)).collect::<Vec<_>>());
    let rows = store.catalog_entry(jinan(), "3/000001").unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].entry.version, 3, "the last delta in log order is materialized");
    assert_eq!(store.deltas().count(), 3);
}

#[test]
fn an_own_entry_is_its_draft_until_published_then_its_latest_delta() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), jinan()).unwrap();
    let mut draft = entry(0);
    draft.status = EntryStatus::Draft;
    let own = |w: OwnWrite| vec![("3/000001".to_string(), w)];
    let first = WriteBatch {
        own: own(OwnWrite::Draft { scope: Scope::Federation, entry: draft.clone() }),
        ..WriteBatch::default()
    };
    store.apply(&first).unwrap();
    assert_eq!(store.own_entry("3/000001").unwrap(), Some((Scope::Federation, draft)));
    let drafts = CatalogFilter { statuses: vec![EntryStatus::Draft], ..Default::default() };
    assert_eq!(store.catalog_page(&drafts, None, 10).unwrap().items.len(), 1);
    // Published: the draft gives way to the delta, stored once.
    let deltas = chain(2);
    let published = OwnWrite::Signed { scope: Scope::Federation, entry: entry(1), replaces_draft: true };
    store.apply(&WriteBatch { own: own(published), ..batch(&deltas[..1]) }).unwrap();
    assert_eq!(store.own_entry("3/000001").unwrap(), Some((Scope::Federation, entry(1))));
    assert_eq!(store.catalog_page(&drafts, None, 10).unwrap().items.len(), 0);
    let published = CatalogFilter { statuses: vec![EntryStatus::Published], ..Default::default() };
    assert_eq!(store.catalog_page(&published, None, 10).unwrap().items[0].entry.version, 1);
    store.apply(&batch(&deltas[1..])).unwrap();
    assert_eq!(store.own_entry("3/000001").unwrap(), Some((Scope::Federation, entry(2))));
    assert_eq!(store.catalog_by_code("3/000001").unwrap()[0].entry.version, 2);
    // Another node's entry with the same code is not this node's own.
    let other = tempfile::tempdir().unwrap();
    let elsewhere = Store::open(other.path(), "370200".parse().unwrap()).unwrap();
    elsewhere.apply(&batch(&deltas)).unwrap();
    assert_eq!(elsewhere.own_entry("3/000001").unwrap(), None);
}

#[test]
fn a_damaged_record_is_reported_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), jinan()).unwrap();
    store.apply(&batch(&chain(1))).unwrap();
    store.db.insert(keys::log_key(log(), 1), &b"garbage"[..]).unwrap();
    let err = store.all_deltas().next().unwrap().unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
}

#[test]
fn a_store_of_the_earlier_format_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        db.insert(b"L\x00\x05\xa5\x64\x00", &b"old"[..]).unwrap();
        db.flush().unwrap();
    }
    let err = Store::open(dir.path(), jinan()).err().expect("refused");
    assert!(matches!(err, StoreError::Format { found: 1, expected: FORMAT, .. }), "{err}");
    assert!(err.to_string().contains("move this data folder aside"), "{err}");
}

fn event(actor: &str, org: Option<&str>, kind: &str) -> AuditEvent {
    AuditEvent { actor: actor.into(), org: org.map(Into::into), kind: kind.into(), detail: String::new() }
}

#[test]
fn audit_queries_filter_and_page_and_verification_finds_a_flipped_byte() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), jinan()).unwrap();
    let mut chain = Chain::after(store.boot().unwrap().audit_head);
    let events = [
        (1000, event("account:alice", None, "login.success")),
        (1000, event("account:bob", None, "login.failure")),
        (1000, event("account:alice", Some("org-a"), "catalog.publish")),
        (2000, event("peer:370100", Some("org-a"), "delta.rejected")),
        (2000, event("peer:370200", Some("org-b"), "peer.refused")),
    ];
    let audit = events.into_iter().map(|(at, e)| chain.seal(at, e)).collect();
    store.apply(&WriteBatch { audit, ..WriteBatch::default() }).unwrap();
    assert_eq!(store.boot().unwrap().audit_head.map(|h| h.0), Some(5));

    let query = |f: AuditFilter| {
        store.audit_query(&f, f.walk().unwrap()).unwrap().records.iter().map(|r| r.seq).collect::<Vec<_>>()
    };
    assert_eq!(query(AuditFilter::default()), vec![1, 2, 3, 4, 5]);
    assert_eq!(query(AuditFilter { actor: Some("account:alice".into()), ..Default::default() }), vec![1, 3]);
    assert_eq!(query(AuditFilter { org: Some("org-a".into()), ..Default::default() }), vec![3, 4]);
    assert_eq!(query(AuditFilter { kind: Some("login.".into()), ..Default::default() }), vec![1, 2]);
    assert_eq!(query(AuditFilter { since_ms: Some(1500), ..Default::default() }), vec![4, 5]);
    assert_eq!(query(AuditFilter { limit: 2, ..Default::default() }), vec![4, 5], "newest by default");
    assert_eq!(query(AuditFilter { after_seq: Some(1), limit: 2, ..Default::default() }), vec![2, 3]);
    assert_eq!(query(AuditFilter { after_seq: Some(u64::MAX), ..Default::default() }), Vec::<u64>::new());
    assert_eq!(query(AuditFilter { until_ms: Some(1999), ..Default::default() }), vec![1, 2, 3]);
    let alice_logins = AuditFilter {
        actor: Some("account:alice".into()),
        kind: Some("login.".into()),
        ..Default::default()
    };
    assert_eq!(query(alice_logins), vec![1]);
    assert_eq!(query(AuditFilter { kind: Some("nothing".into()), ..Default::default() }), Vec::<u64>::new());
    assert!(store.audit_verify(None).unwrap().ok);

    let key = audit_key(3);
    let mut value = store.db.get(key).unwrap().unwrap().to_vec();
    let middle = value.len() / 2;
    value[middle] ^= 1;
    store.db.insert(key, value).unwrap();
    let verdict = store.audit_verify(None).unwrap();
    assert_eq!((verdict.ok, verdict.first_break, verdict.records), (false, Some(3), 5), "{verdict:?}");
}

#[test]
fn accounts_and_tokens_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), jinan()).unwrap();
    let account = AccountRecord {
        username: "li".into(),
        organization: "11370100MB00000016".into(),
        roles: vec![cascade_access::Role::Cataloger],
        password_hash: "$argon2id$...".into(),
        created_at: 5,
        disabled: false,
        generation: 2,
    };
    let token = TokenRecord {
        id: "0123456789abcdef".into(),
        kind: cascade_access::TokenKind::Api,
        username: "li".into(),
        label: "ci".into(),
        secret_hash: "h".into(),
        created_at: 5,
        expires_at: None,
        revoked: false,
        generation: 2,
    };
    let batch =
        WriteBatch { accounts: vec![account.clone()], tokens: vec![token.clone()], ..WriteBatch::default() };
    store.apply(&batch).unwrap();
    assert_eq!(store.account("li").unwrap(), Some(account.clone()));
    assert_eq!(store.token(&token.id).unwrap(), Some(token));
    assert_eq!(store.accounts_page(None, 10).unwrap().items, vec![account]);
    assert_eq!(store.boot().unwrap().accounts, 1);
}

/// Seals `n` records into the store, alternating two kinds, a second apart.
fn fill_audit(store: &Store, n: u64) {
    let mut chain = Chain::after(store.boot().unwrap().audit_head);
    let mut audit = Vec::new();
    for i in 0..n {
        let kind = if i % 2 == 0 { "x.even" } else { "x.odd" };
        audit.push(chain.seal(1_000 * i, event(&format!("peer:{}", i % 7), None, kind)));
        if audit.len() == 4096 {
            store.apply(&WriteBatch { audit: std::mem::take(&mut audit), ..WriteBatch::default() }).unwrap();
        }
    }
    store.apply(&WriteBatch { audit, ..WriteBatch::default() }).unwrap();
}

#[test]
fn audit_pages_return_each_match_exactly_once_and_a_query_reads_a_bounded_number_of_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), jinan()).unwrap();
    fill_audit(&store, 12_345);
    // Newest first, page by page, through an index (kind and actor).
    let mut filter = AuditFilter {
        kind: Some("x.odd".into()),
        actor: Some("peer:3".into()),
        limit: 100,
        ..Default::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = store.audit_query(&filter, filter.walk().unwrap()).unwrap();
        assert!(page.records.windows(2).all(|w| w[0].seq < w[1].seq), "each page oldest first");
        seen.extend(page.records.iter().rev().map(|r| r.seq));
        match page.next {
            Some(next) => filter.cursor = Some(next),
            None => break,
        }
    }
    let expected: Vec<u64> = (1..=12_345).rev().filter(|s| (s - 1) % 2 == 1 && (s - 1) % 7 == 3).collect();
    assert_eq!(seen, expected);

    // A filter no index narrows (a kind prefix that matches nothing in its group)
    // stops after `MAX_AUDIT_EXAMINED` records, with a cursor to go on.
    let none = AuditFilter { kind: Some("x.none.".into()), ..Default::default() };
    let page = store.audit_query(&none, none.walk().unwrap()).unwrap();
    assert!(page.records.is_empty());
    let resume = 12_345 - MAX_AUDIT_EXAMINED as u64;
    assert_eq!(page.next, Some(format!("b{}", resume + 1)));
    let rest = AuditFilter { cursor: page.next, ..none };
    let page = store.audit_query(&rest, rest.walk().unwrap()).unwrap();
    assert_eq!((page.records.len(), page.next), (0, None), "the rest fits the budget");

    // Forward from a time: bisection finds the first record at or after it.
    let forward =
        AuditFilter { since_ms: Some(12_000_000), after_seq: Some(0), limit: 3, ..Default::default() };
    let page = store.audit_query(&forward, forward.walk().unwrap()).unwrap();
    assert_eq!(page.records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![12_001, 12_002, 12_003]);
    assert_eq!(page.next, Some("a12003".into()));
}

/// An account as format 2 wrote it.
#[derive(serde::Serialize)]
struct AccountV2 {
    username: String,
    organization: String,
    roles: Vec<cascade_access::Role>,
    password_hash: String,
    created_at: u64,
}

#[test]
fn a_format_2_store_is_upgraded_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), jinan()).unwrap();
        fill_audit(&store, 100);
        let old = AccountV2 {
            username: "li".into(),
            organization: "11370100MB00000016".into(),
            roles: vec![cascade_access::Role::Admin],
            password_hash: "$argon2id$...".into(),
            created_at: 5,
        };
        store.db.insert(keys::account_key("li"), codec::encode(&old).unwrap()).unwrap();
        // As version 2 left it: no index rows.
        for kv in store.db.scan_prefix([keys::AUDIT_INDEX]) {
            store.db.remove(kv.unwrap().0).unwrap();
        }
        store.db.insert(keys::FORMAT_KEY, &2u32.to_be_bytes()).unwrap();
        store.flush().unwrap();
    }
    let store = Store::open(dir.path(), jinan()).unwrap();
    let odd = AuditFilter { kind: Some("x.odd".into()), limit: 1000, ..Default::default() };
    assert_eq!(store.audit_query(&odd, odd.walk().unwrap()).unwrap().records.len(), 50);
    assert_eq!(store.db.get(keys::FORMAT_KEY).unwrap().unwrap().as_ref(), FORMAT.to_be_bytes());
    let li = store.account("li").unwrap().expect("the account survives");
    assert_eq!((li.roles, li.disabled, li.generation), (vec![cascade_access::Role::Admin], false, 0));
}

#[test]
fn a_format_3_store_opens_as_format_4_and_reads_its_catalog_rows_without_a_time() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), jinan()).unwrap();
        fill_catalog(&store, 3);
        // As format 3 left them: the delta's seq only.
        for kv in store.db.scan_prefix([keys::CATALOG]) {
            let (key, value) = kv.unwrap();
            store.db.insert(key, &value[..8]).unwrap();
        }
        store.db.insert(keys::FORMAT_KEY, &3u32.to_be_bytes()).unwrap();
        store.flush().unwrap();
    }
    let store = Store::open(dir.path(), jinan()).unwrap();
    assert_eq!(store.db.get(keys::FORMAT_KEY).unwrap().unwrap().as_ref(), FORMAT.to_be_bytes());
    let filter = CatalogFilter { statuses: vec![EntryStatus::Published], ..CatalogFilter::default() };
    let window = store.catalog_window(&filter, 0, 100).unwrap();
    assert_eq!((window.count, window.counted_all, window.rows.len()), (9, true, 9));
    assert!(window.rows.iter().all(|r| r.stored_ms.is_none()));
    let since = CatalogFilter { stored_since_ms: Some(1), ..filter };
    assert_eq!(store.catalog_window(&since, 0, 100).unwrap().count, 0, "an unknown time is not recent");
}

/// Stores `per_origin` published entries for each of three origins, every tenth
/// with "人口" in its summary.
fn fill_catalog(store: &Store, per_origin: u64) {
    for origin in ["370100", "370200", "110000"] {
        let log = LogId { origin: origin.parse().unwrap(), scope: Scope::Federation };
        let mut batch = WriteBatch::default();
        for seq in 1..=per_origin {
            let mut e = entry(1);
            e.code = format!("3/{seq:06}");
            e.name = format!("Dataset {seq}");
            e.summary = if seq % 10 == 0 { "年度人口统计".into() } else { "other".into() };
            let d =
                Arc::new(Delta::unsigned(log, seq, GENESIS_HASH, &DeltaBody::Catalog(e.clone())).unwrap());
            batch.deltas.push(d.clone());
            batch.materialize.push(Materialize::Catalog {
                log,
                entry: Arc::new(e),
                delta: d,
                stored_ms: 1_000,
            });
        }
        store.apply(&batch).unwrap();
    }
}

#[test]
fn the_catalog_pages_through_twelve_thousand_entries_each_once_and_searches_without_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), jinan()).unwrap();
    fill_catalog(&store, 4000);
    let all = |store: &Store, filter: &CatalogFilter| {
        let mut seen = Vec::new();
        let mut after: Option<Cursor> = None;
        loop {
            let page = store.catalog_page(filter, after.as_ref(), 700).unwrap();
            seen.extend(page.items.into_iter().map(|r| (r.origin, r.entry.code)));
            match page.next {
                // A cursor survives being shown to a caller and read back.
                Some(next) => after = Some(next.to_string().parse().unwrap()),
                None => return seen,
            }
        }
    };
    let published = CatalogFilter { statuses: vec![EntryStatus::Published], ..Default::default() };
    let seen = all(&store, &published);
    assert_eq!(seen.len(), 12_000);
    assert_eq!(seen.iter().collect::<std::collections::BTreeSet<_>>().len(), 12_000, "each exactly once");
    let people = CatalogFilter { q: Some("人口".into()), ..published.clone() };
    assert_eq!(all(&store, &people).len(), 1_200);
    let one =
        CatalogFilter { origin: Some("370200".parse().unwrap()), q: Some("DATASET 39".into()), ..published };
    let codes: Vec<String> = all(&store, &one).into_iter().map(|(_, c)| c).collect();
    assert_eq!(codes.len(), 111, "39, 390..=399 and 3900..=3999, case-insensitive: {codes:?}");
    assert_eq!(store.catalog_by_code("3/000007").unwrap().len(), 3, "one per origin");
    // Reopened, the index is rebuilt from the rows.
    drop(store);
    let store = Store::open(dir.path(), jinan()).unwrap();
    assert_eq!(store.catalog_len(), 12_000);
    assert_eq!(all(&store, &people).len(), 1_200);
    assert!("zz".parse::<Cursor>().is_err() && "abc".parse::<Cursor>().is_err());
}

#[test]
fn a_sweep_forgets_only_the_routed_ids_whose_time_to_live_is_over() {
    use cascade_core::StateStore;
    use cascade_protocol::routed::MessageId;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), jinan()).unwrap();
    let id = |seq| MessageId { from: jinan(), seq };
    let seen = vec![(id(1), 100), (id(2), 200), (id(3), 300)];
    store.apply(&WriteBatch { seen, ..WriteBatch::default() }).unwrap();
    store.apply(&WriteBatch { sweep_seen: Some(201), ..WriteBatch::default() }).unwrap();
    let kept: Vec<bool> = (1..=3).map(|seq| store.seen(id(seq)).unwrap()).collect();
    assert_eq!(kept, [false, false, true]);
}

fn usage(call: &str, role: &str, at_ms: u64) -> UsageRecord {
    UsageRecord {
        call: call.into(),
        service: "440100-s1".into(),
        caller: "wang".into(),
        consumer: "11370100MB0000002D".into(),
        role: role.into(),
        endpoint: "GET /taxes/42".into(),
        status: 200,
        error: None,
        bytes_in: 0,
        bytes_out: 2,
        request_in_ms: at_ms,
        request_out_ms: Some(at_ms),
        response_in_ms: Some(at_ms + 1),
        response_out_ms: Some(at_ms + 1),
    }
}

#[test]
fn usage_records_page_newest_first_each_once_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), jinan()).unwrap();
        // Five calls in the same millisecond, three later ones, one of another role.
        let mut records: Vec<_> = (0..5).map(|i| usage(&format!("c{i}"), "relay", 1_000)).collect();
        records.extend((5..8).map(|i| usage(&format!("c{i}"), "relay", 2_000 + i)));
        records.push(usage("p", "provider", 3_000));
        store.record_usage(&records, 5_000).unwrap();
        // A second write, in a chunk of its own.
        store.record_usage(&[usage("c8", "relay", 4_000)], 6_000).unwrap();
    }
    let store = Store::open(dir.path(), jinan()).unwrap();
    let relay = UsageFilter { role: Some("relay".into()), ..UsageFilter::default() };
    let mut seen = Vec::new();
    let mut filter = relay.clone();
    loop {
        let (page, next) = store.usage(&filter, 2).unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.into_iter().map(|r| r.call));
        match next {
            Some(cursor) => filter.before = Some(cursor.to_string().parse().unwrap()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 9, "{seen:?}");
    assert_eq!(&seen[..4], ["c8", "c7", "c6", "c5"], "newest first");
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 9, "each once");
    let since = UsageFilter { since_ms: Some(2_000), ..UsageFilter::default() };
    assert_eq!(store.usage(&since, 100).unwrap().0.len(), 5);
    let later = UsageFilter { since_ms: Some(5_500), ..UsageFilter::default() };
    assert_eq!(store.usage(&later, 100).unwrap().0.len(), 0, "chunks written before are skipped");
    assert!("yesterday".parse::<UsageCursor>().is_err());
}

#[test]
fn the_oldest_usage_chunks_go_beyond_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), jinan()).unwrap();
    for i in 0..5u64 {
        let chunk: Vec<_> = (0..4).map(|j| usage(&format!("c{i}-{j}"), "relay", i * 10)).collect();
        store.record_usage_keeping(&chunk, i * 10 + 1, 10).unwrap();
    }
    // 20 written, at most 10 kept: the three oldest chunks of four are gone.
    let (kept, _) = store.usage(&UsageFilter::default(), 100).unwrap();
    let calls: Vec<_> = kept.iter().map(|r| r.call.as_str()).collect();
    assert_eq!(calls.len(), 8, "{calls:?}");
    assert!(calls.iter().all(|c| c.starts_with("c3") || c.starts_with("c4")), "{calls:?}");
    drop(store);
    assert_eq!(Store::open(dir.path(), jinan()).unwrap().count_usage().unwrap(), 8);
}
