//! End to end on 127.0.0.1: the open-data face. A city publishes entries of
//! every open type and scope, a dataset version and a service; its province and
//! the national node then serve exactly the open, federation-wide, published
//! ones, without authentication, as DCAT-AP (Turtle, JSON-LD) and through CKAN's
//! Action API, paged completely and stably; bad parameters get CKAN's errors,
//! and a crowd of readers costs bounded work and no audit records.

use cascade_tests::*;
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// Saves and publishes an entry of Jinan's with this open type (and condition).
async fn publish(fed: &Fed, name: &str, open_type: &str, scope: &str) -> String {
    let mut body = fed.entry_at("370100", name).await;
    body["open_type"] = json!(open_type);
    if open_type == "conditional" {
        body["open_condition"] = json!("申请后开放");
    }
    let (status, saved) = fed.post("370100", "/api/v1/catalog", body).await;
    assert_eq!(status, 201, "{saved}");
    let code = saved["code"].as_str().expect("code").to_string();
    let path = format!("/api/v1/catalog/{}/publish", encode(&code));
    let (status, body) = fed.post("370100", &path, json!({ "scope": scope })).await;
    assert_eq!(status, 200, "{body}");
    code
}

/// Publishes `CSV` as a version of Jinan's entry `code`.
async fn push_csv(fed: &Fed, code: &str) {
    let (url, token) = fed.url_token("370100");
    let resp = reqwest::Client::new()
        .put(format!("{url}/api/v1/datasets/370100/{}/versions", encode(code)))
        .bearer_auth(&token)
        .header("content-type", "text/csv")
        .body(CSV)
        .send()
        .await
        .expect("PUT");
    assert_eq!(resp.status().as_u16(), 201, "{:?}", resp.text().await);
}

/// Registers a service of Jinan's for its entry `code`; returns its id.
async fn register_service(fed: &Fed, code: &str) -> String {
    let provider = cascade_protocol::org::Organization::government_code(nid("370100"), 1);
    let service = json!({"name": "开放数据查询", "entry": {"origin": 370100, "code": code}, "provider": provider,
        "kind": "query", "endpoints": [{"method": "GET", "path": "/items/{id}"}], "sensitivity": 1,
        "rate_limit_per_minute": 600, "upstream": "http://127.0.0.1:9/api"});
    let (status, body) = fed.post("370100", "/api/v1/services", service).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().expect("id").to_string()
}

/// A public GET (no token): status, content type, body.
async fn public(fed: &Fed, at: &str, path: &str) -> (u16, String, String) {
    let (url, _) = fed.url_token(at);
    let resp = reqwest::get(format!("{url}{path}")).await.expect("GET");
    let status = resp.status().as_u16();
    let kind = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    (status, kind, resp.text().await.expect("body"))
}

/// A CKAN action by GET with query parameters: status and envelope.
async fn ckan(fed: &Fed, at: &str, action: &str, query: &[(&str, &str)]) -> (u16, Value) {
    let (url, _) = fed.url_token(at);
    let resp = reqwest::Client::new()
        .get(format!("{url}/api/3/action/{action}"))
        .query(query)
        .send()
        .await
        .expect("GET");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Every package id `package_search` pages out with `rows`, `sort=id asc`.
async fn harvest(fed: &Fed, at: &str, rows: usize, fq: Option<&str>) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let start = ids.len().to_string();
        let rows = rows.to_string();
        let mut query = vec![("rows", rows.as_str()), ("start", start.as_str()), ("sort", "id asc")];
        if let Some(fq) = fq {
            query.push(("fq", fq));
        }
        let (status, body) = ckan(fed, at, "package_search", &query).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["success"], true);
        let results = body["result"]["results"].as_array().expect("results").clone();
        if results.is_empty() {
            assert_eq!(
                body["result"]["count"].as_u64(),
                Some(ids.len() as u64),
                "count agrees with the pages"
            );
            return ids;
        }
        ids.extend(results.iter().map(|p| p["id"].as_str().expect("id").to_string()));
    }
}

/// The dataset version published with an open entry.
const CSV: &str = "统一社会信用代码,名称\n91350100M000100Y43,示例\n";

fn now_iso() -> String {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as u64;
    format!("{}Z", cascade_protocol::civil::utc_iso(ms))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_face_serves_exactly_the_open_federation_wide_entries_as_dcat_and_ckan() {
    let fed = Fed::launch(FOUR_PROVINCES).await;
    let mut open = Vec::new();
    for n in 1..=3 {
        open.push(publish(&fed, &format!("开放数据集{n}"), "open", "federation").await);
    }
    let closed = publish(&fed, "内部数据集", "closed", "federation").await;
    let conditional = publish(&fed, "有条件开放数据集", "conditional", "federation").await;
    let provincial = publish(&fed, "省内开放数据集", "open", "province").await;
    let withdrawn = publish(&fed, "已撤回开放数据集", "open", "federation").await;
    let (status, body) =
        fed.post("370100", &format!("/api/v1/catalog/{}/withdraw", encode(&withdrawn)), json!({})).await;
    assert_eq!(status, 200, "{body}");
    fed.wait_seen("370000", "370100", &withdrawn, "withdrawn", 2).await;

    // Entries stored at the province from now on are "modified since" this time.
    let since = now_iso();
    for n in 4..=5 {
        open.push(publish(&fed, &format!("开放数据集{n}"), "open", "federation").await);
    }
    // The last open entry gets a dataset version and a service.
    push_csv(&fed, &open[4]).await;
    let service_id = register_service(&fed, &open[4]).await;
    let provider = cascade_protocol::org::Organization::government_code(nid("370100"), 1);
    let last = publish(&fed, "开放数据集6", "open", "federation").await;
    open.push(last.clone());
    for at in ["370000", "100000"] {
        fed.wait_seen(at, "370100", &last, "published", 1).await;
    }
    let mut expected: Vec<String> = open.iter().map(|code| format!("370100/{code}")).collect();
    expected.sort();

    // DCAT-AP in Turtle, without a token, at the province.
    let (status, kind, ttl) = public(&fed, "370000", "/open/catalog.ttl").await;
    assert_eq!((status, kind.as_str()), (200, "text/turtle; charset=utf-8"), "{ttl}");
    for n in 1..=6 {
        assert!(ttl.contains(&format!("\"开放数据集{n}\"@zh")), "open entry {n} is missing:\n{ttl}");
    }
    for hidden in ["内部数据集", "有条件开放数据集", "省内开放数据集", "已撤回开放数据集"]
    {
        assert!(!ttl.contains(hidden), "{hidden} must not be open:\n{ttl}");
    }
    for code in [&closed, &conditional, &provincial, &withdrawn] {
        assert!(!ttl.contains(&format!("\"{code}\"")), "{code} must not be open");
    }
    assert_eq!(ttl.matches(" a dcat:Dataset ;").count(), 6, "{ttl}");
    assert_eq!(ttl.matches(" a dcat:Distribution ;").count(), 1, "{ttl}");
    assert!(ttl.contains("dcat:mediaType <http://www.iana.org/assignments/media-types/text/csv>"), "{ttl}");
    assert_eq!(ttl.matches(" a dcat:DataService ;").count(), 1, "{ttl}");
    assert!(ttl.contains("hydra:totalItems \"6\"^^xsd:nonNegativeInteger"), "{ttl}");
    assert!(!ttl.contains("hydra:nextPage"), "one page holds six");

    // The same graph in JSON-LD.
    let (status, kind, ld) = public(&fed, "370000", "/open/catalog.jsonld").await;
    assert_eq!((status, kind.as_str()), (200, "application/ld+json"));
    let ld: Value = serde_json::from_str(&ld).expect("JSON-LD is JSON");
    let graph = ld["@graph"].as_array().expect("@graph");
    let of_type = |t: &str| {
        graph.iter().filter(|n| n["@type"].as_array().is_some_and(|ts| ts.contains(&json!(t)))).count()
    };
    assert_eq!((of_type("dcat:Catalog"), of_type("dcat:Dataset"), of_type("dcat:DataService")), (1, 6, 1));

    // CKAN: paging with sort=id asc finds every open entry once, in id order,
    // at the province and at the national node, whatever the page size.
    for at in ["370000", "100000"] {
        for rows in [1, 2, 4, 1000] {
            assert_eq!(harvest(&fed, at, rows, None).await, expected, "{at}, {rows} rows a page");
        }
    }
    // Incremental harvest: only what the province stored since `since`.
    let fq = format!("metadata_modified:[{since} TO *]");
    let mut later: Vec<String> = open[3..].iter().map(|code| format!("370100/{code}")).collect();
    later.sort();
    assert_eq!(harvest(&fed, "370000", 2, Some(&fq)).await, later);

    // A package: by id and by name, with its version and service as resources.
    let (status, by_id) =
        ckan(&fed, "370000", "package_show", &[("id", &format!("370100/{}", open[4]))]).await;
    assert_eq!(status, 200, "{by_id}");
    let package = &by_id["result"];
    let name = package["name"].as_str().expect("name").to_string();
    let (status, by_name) = ckan(&fed, "370000", "package_show", &[("id", &name)]).await;
    assert_eq!((status, &by_name["result"]), (200, package));
    assert_eq!(package["title"], "开放数据集5");
    assert_eq!(package["organization"]["name"], provider.to_lowercase());
    assert_eq!(package["organization"]["title"], "370100 大数据局");
    let resources = package["resources"].as_array().expect("resources");
    assert_eq!(resources.len(), 2, "{package}");
    let csv_len = CSV.len() as u64;
    assert_eq!(
        (resources[0]["format"].as_str(), resources[0]["size"].as_u64()),
        (Some("CSV"), Some(csv_len))
    );
    assert_eq!(resources[1]["format"], "API");
    assert!(resources[1]["url"].as_str().is_some_and(|u| u.ends_with(&format!("/gateway/{service_id}/"))));
    for code in [&closed, &provincial, &withdrawn] {
        let (status, body) = ckan(&fed, "370000", "package_show", &[("id", &format!("370100/{code}"))]).await;
        assert_eq!(
            (status, &body["success"], &body["error"]["__type"]),
            (404, &json!(false), &json!("Not Found Error"))
        );
    }

    // Organizations: names are lower-cased credit codes.
    let (status, body) = ckan(&fed, "370000", "organization_list", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["result"].as_array().expect("names").contains(&json!(provider.to_lowercase())), "{body}");
    let (_, body) = ckan(&fed, "370000", "organization_list", &[("all_fields", "true")]).await;
    assert!(
        body["result"].as_array().expect("orgs").iter().any(|o| o["title"] == "370100 大数据局"),
        "{body}"
    );

    // ckanapi's way: POST with a JSON body.
    let (url, _) = fed.url_token("370000");
    let resp = reqwest::Client::new()
        .post(format!("{url}/api/3/action/package_search"))
        .json(&json!({"q": "开放数据集", "rows": 3, "start": 3}))
        .send()
        .await
        .expect("POST");
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(
        (body["result"]["count"].as_u64(), body["result"]["results"].as_array().map(Vec::len)),
        (Some(6), Some(3))
    );

    // Bad parameters: CKAN's errors, with the parameter named.
    for (query, status, kind) in [
        (vec![("fq", "organization:abc")], 409, "Search Query Error"),
        (
            vec![("fq", "metadata_modified:[2025-01-01T00:00:00Z TO 2025-02-01T00:00:00Z]")],
            409,
            "Search Query Error",
        ),
        (vec![("sort", "metadata_modified desc")], 409, "Search Query Error"),
        (vec![("rows", "-1")], 409, "Validation Error"),
        (vec![("start", "many")], 409, "Validation Error"),
    ] {
        let (got, body) = ckan(&fed, "370000", "package_search", &query).await;
        assert_eq!(
            (got, &body["success"], &body["error"]["__type"]),
            (status, &json!(false), &json!(kind)),
            "{query:?}: {body}"
        );
    }
    let (status, body) = ckan(&fed, "370000", "package_search", &[("rows", "x")]).await;
    assert_eq!(
        body["error"]["rows"][0].as_str().map(|m| m.contains("integer")),
        Some(true),
        "{status} {body}"
    );
    let (status, body) = ckan(&fed, "370000", "package_delete", &[("id", &expected[0])]).await;
    assert_eq!((status, &body["success"]), (400, &json!(false)), "no writing action exists");
    let resp = reqwest::Client::new()
        .post(format!("{url}/api/3/action/package_search"))
        .header("content-type", "application/json")
        .body("[1, 2]")
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 400);
    let (status, _, _) = public(&fed, "370000", "/open/catalog.ttl?page=0").await;
    assert_eq!(status, 422);
    let (status, _, body) = public(&fed, "370000", "/open/catalog.ttl?page=2").await;
    assert_eq!(status, 200);
    assert_eq!(body.matches(" a dcat:Dataset ;").count(), 0, "past the last page: no datasets");

    // The admin API itself still wants a token.
    let (status, _, _) = public(&fed, "370000", "/api/v1/catalog").await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_of_open_data_readers_costs_bounded_work_and_no_audit_records() {
    let fed = Fed::launch(TWO_NODES).await;
    for n in 0..20 {
        let mut body = fed.entry_at("370000", &format!("开放数据{n}")).await;
        body["open_type"] = json!("open");
        let (status, saved) = fed.post("370000", "/api/v1/catalog", body).await;
        assert_eq!(status, 201, "{saved}");
        let path = format!("/api/v1/catalog/{}/publish", encode(saved["code"].as_str().expect("code")));
        assert_eq!(fed.post("370000", &path, json!({})).await.0, 200);
    }
    let audit_len = |body: Value| body["records"].as_array().map_or(0, Vec::len);
    let before = audit_len(fed.get("370000", "/api/v1/audit?limit=1000").await.1);

    // 300 readers at once, asking for whole pages in both faces.
    let (url, _) = fed.url_token("370000");
    let client = reqwest::Client::new();
    let mut readers = tokio::task::JoinSet::new();
    for n in 0..300 {
        let (client, url) = (client.clone(), url.clone());
        readers.spawn(async move {
            let request = match n % 3 {
                0 => client.get(format!("{url}/api/3/action/package_search?rows=1000&q=%E5%BC%80%E6%94%BE")),
                1 => client.get(format!("{url}/open/catalog.ttl")),
                _ => client.post(format!("{url}/api/3/action/package_search")).json(&json!({"rows": 1000})),
            };
            let resp = request.send().await.expect("an answer");
            let status = resp.status().as_u16();
            let retry = resp.headers().contains_key("retry-after");
            (status, retry)
        });
    }
    // Meanwhile the node's own work goes on: a cataloger publishes.
    let code = fed.publish("370000", "人群中发布", "federation").await;
    let (mut served, mut busy) = (0, 0);
    while let Some(answer) = readers.join_next().await {
        match answer.expect("reader") {
            (200, _) => served += 1,
            (503, true) => busy += 1,
            other => panic!("a reader got {other:?}"),
        }
    }
    assert!(served > 0, "{served} served, {busy} told to retry");
    fed.wait_seen("100000", "370000", &code, "published", 1).await;

    // Public reads are not audited: the log grew by the publish's records only.
    let after = audit_len(fed.get("370000", "/api/v1/audit?limit=1000").await.1);
    assert!(after - before <= 5, "{} audit records for a crowd of readers", after - before);
    let scrape = scrape(&fed, "370000").await;
    let counted =
        sample(&scrape, "cascade_http_requests_total", &[("route", "/open/catalog.ttl"), ("status", "200")]);
    assert!(counted.is_some_and(|n| n >= 1.0), "open-data requests are counted in the metrics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyshacl_and_ckanapi_accept_the_open_face() {
    let python =
        tokio::task::spawn_blocking(|| python::python_env(std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))));
    let fed = Fed::launch(FOUR_PROVINCES).await;
    let mut open = Vec::new();
    for n in 1..=5 {
        let title = format!("开放数据集{n}");
        let code = publish(&fed, &title, "open", "federation").await;
        open.push(title);
        if n == 5 {
            push_csv(&fed, &code).await;
            register_service(&fed, &code).await;
        }
    }
    let hidden = ["内部数据集", "有条件开放数据集", "省内开放数据集"];
    publish(&fed, hidden[0], "closed", "federation").await;
    publish(&fed, hidden[1], "conditional", "federation").await;
    let last = publish(&fed, hidden[2], "open", "province").await;
    fed.wait_seen("370000", "370100", &last, "published", 1).await;

    let python = python.await.expect("python");
    let (url, _) = fed.url_token("370000");
    let scripts = python::scripts();
    let mut check = tokio::process::Command::new(python);
    check
        .arg(scripts.join("open_data.py"))
        .args(["--url", &url])
        .arg("--shapes")
        .arg(scripts.join("dcat-ap-3.0.1-shapes.ttl"));
    for title in &open {
        check.args(["--open", title]);
    }
    for title in hidden {
        check.args(["--hidden", title]);
    }
    let out = check.output().await.expect("run open_data.py");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "open_data.py: {}\n{said}", out.status);
    assert!(said.contains("conforms to DCAT-AP 3.0.1: True"), "{said}");
}
