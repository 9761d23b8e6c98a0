//! The open catalog in DCAT-AP 3: `dcat:Catalog`, a `dcat:Dataset` per open
//! entry, a `dcat:Distribution` per dataset version and a `dcat:DataService` per
//! active service, in pages of `MAX_LIST` datasets linked with Hydra's paging
//! terms (as ckanext-dcat's harvester follows them).

use super::rdf::{Graph, Object};
use super::{division_name, essence, Base};
use crate::error::ApiError;
use crate::routes::{query, AppState};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use cascade_protocol::catalog::UpdateCycle;
use cascade_protocol::civil::utc_iso;
use cascade_protocol::limits::MAX_LIST;
use cascade_runtime::{OpenEntry, OpenPage, OpenSearch};
use serde::Deserialize;

/// Which page of the catalog.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageParam {
    /// From 1.
    page: Option<usize>,
}

/// The EU frequency vocabulary DCAT-AP names for `dct:accrualPeriodicity`.
const FREQUENCY: &str = "http://publications.europa.eu/resource/authority/frequency/";

/// Public access, from the EU access-right vocabulary.
const PUBLIC: &str = "http://publications.europa.eu/resource/authority/access-right/PUBLIC";

/// Chinese, from the EU language vocabulary.
const CHINESE: &str = "http://publications.europa.eu/resource/authority/language/ZHO";

/// IANA's media types, whose IRIs DCAT-AP uses for `dcat:mediaType`.
const MEDIA_TYPES: &str = "http://www.iana.org/assignments/media-types/";

fn frequency(cycle: UpdateCycle) -> &'static str {
    match cycle {
        UpdateCycle::Realtime => "CONT",
        UpdateCycle::Daily => "DAILY",
        UpdateCycle::Weekly => "WEEKLY",
        UpdateCycle::Monthly => "MONTHLY",
        UpdateCycle::Quarterly => "QUARTERLY",
        UpdateCycle::HalfYearly => "ANNUAL_2",
        UpdateCycle::Yearly => "ANNUAL",
        UpdateCycle::Irregular => "IRREG",
    }
}

fn date_time(unix_ms: u64) -> Object {
    Object::Typed(format!("{}Z", utc_iso(unix_ms)), "xsd:dateTime")
}

pub(crate) async fn turtle(
    State(state): State<AppState>,
    base: Base,
    q: Result<Query<PageParam>, QueryRejection>,
) -> Result<Response, ApiError> {
    let graph = catalog(&state, &base, query(q)?, "catalog.ttl").await?;
    Ok(([(header::CONTENT_TYPE, "text/turtle; charset=utf-8")], graph.turtle()).into_response())
}

pub(crate) async fn json_ld(
    State(state): State<AppState>,
    base: Base,
    q: Result<Query<PageParam>, QueryRejection>,
) -> Result<Response, ApiError> {
    let graph = catalog(&state, &base, query(q)?, "catalog.jsonld").await?;
    let body = graph.json_ld().to_string();
    Ok(([(header::CONTENT_TYPE, "application/ld+json")], body).into_response())
}

/// One page of the catalog as a graph; `file` names the document for paging links.
async fn catalog(state: &AppState, base: &Base, param: PageParam, file: &str) -> Result<Graph, ApiError> {
    let page = param.page.unwrap_or(1);
    if page == 0 {
        return Err(ApiError::field("page", "pages count from 1"));
    }
    let skip = (page - 1).checked_mul(MAX_LIST).ok_or_else(|| ApiError::field("page", "no such page"))?;
    let found =
        state.node.open_catalog(OpenSearch { skip, limit: MAX_LIST, ..OpenSearch::default() }).await?;
    let name = &state.node.config().name;
    let mut graph = Graph::default();
    let catalog = base.catalog();
    let publisher = format!("{catalog}#publisher");
    {
        let c = graph.subject(&catalog, "dcat:Catalog");
        c.add("dct:title", Object::Text(format!("{name} 开放数据目录"), "zh"))
            .add(
                "dct:description",
                Object::Text(format!("{name}节点可见的、向社会开放的政务数据资源目录"), "zh"),
            )
            .link("dct:publisher", &publisher)
            .link("dct:language", CHINESE)
            .link("foaf:homepage", &format!("{}/", base.0));
        for entry in &found.entries {
            c.link("dcat:dataset", &base.dataset(entry.row.origin, &entry.row.entry.code));
        }
        for entry in &found.entries {
            for service in &entry.services {
                c.link("dcat:service", &base.service(&service.id));
            }
        }
    }
    graph.subject(&publisher, "foaf:Agent").add("foaf:name", Object::Text(name.clone(), "zh"));
    paging(&mut graph, base, file, page, &found);
    let mut agents = std::collections::BTreeSet::new();
    for entry in &found.entries {
        dataset(&mut graph, base, entry, &mut agents);
    }
    Ok(graph)
}

/// Hydra's paging terms for this page of the catalog.
fn paging(graph: &mut Graph, base: &Base, file: &str, page: usize, found: &OpenPage) {
    let pages = found.count.div_ceil(MAX_LIST).max(1);
    let url = |n: usize| Object::Plain(format!("{}/open/{file}?page={n}", base.0));
    let view = graph.subject(format!("{}/open/{file}?page={page}", base.0), "hydra:PagedCollection");
    view.add("hydra:totalItems", Object::Typed(found.count.to_string(), "xsd:nonNegativeInteger"))
        .add("hydra:itemsPerPage", Object::Typed(MAX_LIST.to_string(), "xsd:nonNegativeInteger"))
        .add("hydra:firstPage", url(1))
        .add("hydra:lastPage", url(pages));
    if page < pages {
        view.add("hydra:nextPage", url(page + 1));
    }
    if page > 1 {
        view.add("hydra:previousPage", url(page - 1));
    }
}

/// An open entry, its distributions, services and publisher.
fn dataset(
    graph: &mut Graph,
    base: &Base,
    open: &OpenEntry,
    agents: &mut std::collections::BTreeSet<String>,
) {
    let (origin, entry) = (open.row.origin, &open.row.entry);
    let iri = base.dataset(origin, &entry.code);
    let publisher = base.organization(&entry.provider);
    {
        let d = graph.subject(&iri, "dcat:Dataset");
        d.add("dct:identifier", Object::Plain(entry.code.clone()))
            .add("dct:title", Object::Text(entry.name.clone(), "zh"))
            .add("dct:description", Object::Text(entry.summary.clone(), "zh"))
            .link("dct:publisher", &publisher)
            .link("dct:accessRights", PUBLIC)
            .link("dct:language", CHINESE)
            .link("dct:accrualPeriodicity", &format!("{FREQUENCY}{}", frequency(entry.update_cycle)))
            .add("dcat:version", Object::Plain(entry.version.to_string()))
            .add("dcat:keyword", Object::Text(division_name(origin), "zh"));
        if let Some(date) = &entry.publish_date {
            d.add("dct:issued", Object::Typed(date.clone(), "xsd:date"));
        }
        if let Some(ms) = open.row.stored_ms {
            d.add("dct:modified", date_time(ms));
        }
        for manifest in &open.versions {
            d.link("dcat:distribution", &format!("{iri}/versions/{}", manifest.version));
        }
    }
    for manifest in &open.versions {
        graph
            .subject(format!("{iri}/versions/{}", manifest.version), "dcat:Distribution")
            .add("dct:title", Object::Text(format!("{} 第 {} 版", entry.name, manifest.version), "zh"))
            .link("dcat:accessURL", &base.content(origin, &entry.code, manifest.version))
            .link("dcat:mediaType", &format!("{MEDIA_TYPES}{}", essence(&manifest.media_type)))
            .add("dcat:byteSize", Object::Typed(manifest.size.to_string(), "xsd:nonNegativeInteger"))
            .add("dct:issued", date_time(manifest.published_ms));
    }
    for service in &open.services {
        graph
            .subject(base.service(&service.id), "dcat:DataService")
            .add("dct:identifier", Object::Plain(service.id.clone()))
            .add("dct:title", Object::Text(service.draft.name.clone(), "zh"))
            .link("dcat:endpointURL", &base.gateway(&service.id))
            .link("dcat:servesDataset", &iri)
            .link("dct:publisher", &publisher)
            .link("dct:accessRights", PUBLIC);
    }
    if agents.insert(entry.provider.clone()) {
        let name = open.provider.as_ref().map_or_else(|| entry.provider.clone(), |o| o.name.clone());
        graph
            .subject(&publisher, "foaf:Agent")
            .add("foaf:name", Object::Text(name, "zh"))
            .add("dct:identifier", Object::Plain(entry.provider.clone()));
    }
}
