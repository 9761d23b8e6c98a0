//! The admin API's OpenAPI 3.1 document, checked against a live node by
//! schemathesis (property-based: requests generated from the document, for
//! every operation): no answer is a server error, and every answer's status,
//! content type, headers and body match what the document says.

use cascade_protocol::org::Organization;
use cascade_tests::*;
use serde_json::{json, Value};

/// Examples schemathesis generates per operation and phase.
const EXAMPLES: &str = "25";

/// Concurrent readers in the crowd test.
const CROWD: usize = 400;

/// What every answer is checked for.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
     response_headers_conformance,response_schema_conformance";

/// Runs a crash of the tool itself (not a finding) may take.
const TOOL_TRIES: usize = 3;

/// schemathesis's command line, under a higher recursion limit.
const SCHEMATHESIS_MAIN: &str = "import sys; sys.setrecursionlimit(20_000); sys.argv[0] = 'schemathesis'; \
     from schemathesis.cli import schemathesis; sys.exit(schemathesis())";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let python =
        tokio::task::spawn_blocking(|| python::python_env(std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))));
    let fed = Fed::launch(TWO_NODES).await;
    // Something to find: an entry with a service, an application, a token.
    let code = fed.publish("370000", "企业登记信息", "federation").await;
    let provider = Organization::government_code(nid("370000"), 1);
    let service = json!({"name": "企业信息查询", "entry": {"origin": 370000, "code": code},
        "provider": provider, "kind": "query", "endpoints": [{"method": "GET", "path": "/companies/{id}"}],
        "sensitivity": 2, "rate_limit_per_minute": 600, "upstream": "http://127.0.0.1:9"});
    let (status, body) = fed.post("370000", "/api/v1/services", service).await;
    assert_eq!(status, 201, "{body}");

    let (url, token) = fed.url_token("370000");
    let (status, doc) = public_json(&format!("{url}/api/v1/openapi.json")).await;
    assert_eq!(status, 200, "served without a token");
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    for route in
        ["/api/v1/catalog", "/api/v1/applications", "/api/v1/datasets/{origin}/{code}/versions", "/healthz"]
    {
        assert!(paths.contains_key(route), "{route} is described");
    }
    let catalog = &doc["paths"]["/api/v1/catalog"];
    assert_eq!(catalog["get"]["security"], Value::Null, "the document-wide bearer requirement applies");
    assert_eq!(doc["paths"]["/api/v1/login"]["post"]["security"], json!([{}]), "login needs no token");

    let python = python.await.expect("python");
    let run = || {
        tokio::process::Command::new(&python)
            // Hypothesis builds strategies for nested schemas recursively; under
            // CPython 3.11's default limit (1000) it tripped over its own source
            // parsing ("AST constructor recursion depth mismatch").
            .args(["-c", SCHEMATHESIS_MAIN, "run"])
            .args([&format!("{url}/api/v1/openapi.json"), "-H", &format!("Authorization: Bearer {token}")])
            .args(["--checks", CHECKS, "--max-examples", EXAMPLES, "--workers", "2", "--seed", "1"])
            .args(["--generation-deterministic", "--no-color"])
            .current_dir(env!("CARGO_TARGET_TMPDIR"))
            .output()
    };
    // A run the tool itself broke off (a Python error inside schemathesis or
    // Hypothesis, reported as "Runtime Error" with no failure found) runs again;
    // a failure it found never does.
    let mut said = String::new();
    for _ in 0..TOOL_TRIES {
        let out = run().await.expect("schemathesis runs");
        said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!said.contains("=== FAILURES ==="), "schemathesis found failures:\n{said}");
        if out.status.success() {
            break;
        }
        assert!(said.contains("Runtime Error"), "schemathesis: {}\n{said}", out.status);
    }
    assert!(said.contains("Tested: ") && !said.contains("Runtime Error"), "{said}");

    // The node serves on, and its audit chain holds after the storm.
    let (status, verify) = fed.get("370000", "/api/v1/audit/verify").await;
    assert_eq!((status, verify["ok"].as_bool()), (200, Some(true)), "{verify}");
}

/// A GET without a token: status and JSON.
async fn public_json(url: &str) -> (u16, Value) {
    let resp = reqwest::get(url).await.expect("the node answers");
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

/// The routes this face added — the console's files, the document and
/// `whoami` — are fixed bodies or a read of the caller: a crowd of them costs
/// no audit record and no core work, and the node keeps publishing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_on_the_console_document_and_whoami_costs_no_audit_record() {
    let fed = Fed::launch(TWO_NODES).await;
    let (url, token) = fed.url_token("370000");
    let records = |v: Value| v["records"].as_u64().expect("a count");
    let before = records(fed.get("370000", "/api/v1/audit/verify").await.1);
    let http = reqwest::Client::new();
    let mut crowd = tokio::task::JoinSet::new();
    for n in 0..CROWD {
        let path = ["/", "/console/app.js", "/api/v1/openapi.json", "/api/v1/whoami"][n % 4];
        let request = http.get(format!("{url}{path}")).bearer_auth(&token);
        crowd.spawn(async move {
            let resp = request.send().await.expect("an answer");
            (resp.status().as_u16(), resp.headers().contains_key("retry-after"))
        });
    }
    while let Some(done) = crowd.join_next().await {
        match done.expect("a reader") {
            (200, _) => {}
            (503, says_when) => assert!(says_when, "a 503 without Retry-After"),
            (other, _) => panic!("{other}"),
        }
    }
    // The verification read itself is not audited either.
    assert_eq!(records(fed.get("370000", "/api/v1/audit/verify").await.1), before);
    let code = fed.publish("370000", "人群之后", "federation").await;
    fed.wait_seen("100000", "370000", &code, "published", 1).await;
}
