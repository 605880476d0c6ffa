"""Fails when the operator RBAC rules rendered by the chart differ from operator/rbac.yaml
(the file the operator's tests check every request against).

    python compare_rbac.py RENDERED.yaml operator/rbac.yaml
"""
import sys

import yaml


def rules(path, kinds=("ClusterRole", "Role")):
    out = {}
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            if not doc or doc.get("kind") not in kinds:
                continue
            name = doc["metadata"]["name"]
            if not name.endswith("operator"):
                continue
            norm = sorted(
                (tuple(sorted(r.get("apiGroups", []))), tuple(sorted(r.get("resources", []))),
                 tuple(sorted(r.get("verbs", []))))
                for r in doc.get("rules", [])
            )
            out[doc["kind"]] = norm
    return out


chart, reference = rules(sys.argv[1]), rules(sys.argv[2])
if chart != reference:
    print("compare_rbac: chart operator RBAC differs from operator/rbac.yaml")
    for kind in sorted(set(chart) | set(reference)):
        if chart.get(kind) != reference.get(kind):
            print(f"  {kind}:\n    chart:     {chart.get(kind)}\n    reference: {reference.get(kind)}")
    sys.exit(1)
print("compare_rbac: chart operator RBAC matches operator/rbac.yaml")
