"""Fails when the operator RBAC rules rendered by the chart differ from a reference file
(operator/rbac.yaml cluster-wide, operator/rbac-namespaced.yaml with
operator.watchNamespaces [shop, billing]: the files the operator's tests check every
request against). Roles are compared per namespace: a Role the chart renders without a
namespace lives in the release namespace (RELEASE_NAMESPACE, default gatehouse).

    python compare_rbac.py RENDERED.yaml operator/rbac.yaml [RELEASE_NAMESPACE]
"""
import sys

import yaml


def rules(path, release_namespace, kinds=("ClusterRole", "Role")):
    out = {}
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            if not doc or doc.get("kind") not in kinds:
                continue
            meta = doc["metadata"]
            if "-operator" not in meta["name"]:
                continue
            namespace = None
            if doc["kind"] == "Role":
                namespace = meta.get("namespace", release_namespace)
            norm = sorted(
                (tuple(sorted(r.get("apiGroups", []))), tuple(sorted(r.get("resources", []))),
                 tuple(sorted(r.get("verbs", []))))
                for r in doc.get("rules", [])
            )
            key = (doc["kind"], namespace or "", meta["name"].split("-operator", 1)[1])
            if key in out:
                sys.exit(f"compare_rbac: {path}: two {key[0]}s {meta['name']} in {namespace}")
            out[key] = norm
    return out


release_namespace = sys.argv[3] if len(sys.argv) > 3 else "gatehouse"
chart = rules(sys.argv[1], release_namespace)
reference = rules(sys.argv[2], release_namespace)
if chart != reference:
    print(f"compare_rbac: chart operator RBAC differs from {sys.argv[2]}")
    for key in sorted(set(chart) | set(reference)):
        if chart.get(key) != reference.get(key):
            kind, ns, suffix = key
            print(f"  {kind} *-operator{suffix} {ns}:\n    chart:     {chart.get(key)}\n"
                  f"    reference: {reference.get(key)}")
    sys.exit(1)
print(f"compare_rbac: chart operator RBAC matches {sys.argv[2]}")
