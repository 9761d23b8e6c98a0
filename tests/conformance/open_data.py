"""Checks a node's open-data face with independent clients.

- pyshacl validates /open/catalog.ttl and /open/catalog.jsonld against the
  DCAT-AP 3.0.1 shapes; both documents must hold the same graph;
- the datasets in it are exactly the expected open ones: no closed, conditional,
  province-scoped or withdrawn entry appears in any literal;
- ckanapi (a real CKAN client) pages through package_search with sort=id asc
  and gets every open entry exactly once, and package_show agrees.

Exit status 0 when everything holds; the reasons otherwise.
"""

import argparse
import sys
import urllib.request

import ckanapi
import pyshacl
import rdflib
from rdflib.compare import isomorphic
from rdflib.namespace import DCAT, DCTERMS, RDF


def fetch(url):
    with urllib.request.urlopen(url, timeout=60) as resp:
        return resp.read().decode("utf-8")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="the node's admin URL")
    parser.add_argument("--shapes", required=True, help="DCAT-AP SHACL shapes (Turtle)")
    parser.add_argument("--open", action="append", default=[], help="title of an open entry")
    parser.add_argument("--hidden", action="append", default=[], help="title that must not appear")
    args = parser.parse_args()
    failures = []
    shapes = rdflib.Graph().parse(args.shapes, format="turtle")

    graphs = {}
    for ext, fmt in (("ttl", "turtle"), ("jsonld", "json-ld")):
        graph = rdflib.Graph().parse(data=fetch(f"{args.url}/open/catalog.{ext}"), format=fmt)
        graphs[ext] = graph
        conforms, _, report = pyshacl.validate(graph, shacl_graph=shapes)
        print(f"catalog.{ext}: {len(graph)} triples, conforms to DCAT-AP 3.0.1: {conforms}")
        if not conforms:
            failures.append(f"catalog.{ext} does not conform:\n{report}")
        titles = {str(t) for d in graph.subjects(RDF.type, DCAT.Dataset) for t in graph.objects(d, DCTERMS.title)}
        if titles != set(args.open):
            failures.append(f"catalog.{ext} datasets {sorted(titles)} != open entries {sorted(args.open)}")
        literals = {str(o) for o in graph.objects() if isinstance(o, rdflib.Literal)}
        leaked = [h for h in args.hidden if any(h in lit for lit in literals)]
        if leaked:
            failures.append(f"catalog.{ext} shows entries that are not open: {leaked}")
    # The same statements, but for the paging links, which name their own format.
    hydra = rdflib.Namespace("http://www.w3.org/ns/hydra/core#")
    for graph in graphs.values():
        for page in list(graph.subjects(RDF.type, hydra.PagedCollection)):
            graph.remove((page, None, None))
    if not isomorphic(graphs["ttl"], graphs["jsonld"]):
        only = graphs["ttl"] - graphs["jsonld"], graphs["jsonld"] - graphs["ttl"]
        failures.append(f"the Turtle and JSON-LD catalogs hold different graphs: {[sorted(g) for g in only]}")

    ckan = ckanapi.RemoteCKAN(args.url, user_agent="cascade-conformance")
    ids, titles, start = [], [], 0
    while True:
        page = ckan.action.package_search(rows=2, start=start, sort="id asc")
        if not page["results"]:
            break
        for package in page["results"]:
            ids.append(package["id"])
            titles.append(package["title"])
            shown = ckan.action.package_show(id=package["name"])
            if shown != package:
                failures.append(f"package_show({package['name']}) differs from the search result")
        start += len(page["results"])
    print(f"ckanapi paged {len(ids)} packages, {len(set(ids))} distinct; count said {page['count']}")
    if len(ids) != len(set(ids)):
        failures.append(f"package_search repeated packages: {ids}")
    if ids != sorted(ids):
        failures.append(f"package_search with sort=id asc is not in id order: {ids}")
    if sorted(titles) != sorted(args.open):
        failures.append(f"package_search found {sorted(titles)}, expected {sorted(args.open)}")
    if page["count"] != len(ids):
        failures.append(f"package_search count {page['count']} != {len(ids)} packages paged")
    orgs = set(ckan.action.organization_list())
    missing = {p["owner_org"].lower() for p in ckan.action.package_search(rows=1000)["results"]} - orgs
    if missing:
        failures.append(f"organization_list lacks the owners {sorted(missing)}")
    try:
        ckan.action.package_show(id="100000/0/000000")
        failures.append("package_show of an unknown id did not fail")
    except ckanapi.NotFound:
        pass

    for failure in failures:
        print("FAIL:", failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
