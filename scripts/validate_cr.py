#!/usr/bin/env python3
"""Validate custom resources against the openAPIV3Schema of their CRDs, offline.

    scripts/validate_cr.py CRDS.yaml CR.yaml... [--strict]

CRDS.yaml holds one or more CustomResourceDefinitions (e.g. manifests/crds.yaml).
Every document of the CR files whose API group is one of those CRDs' groups is
validated against the schema of its kind and version; documents of other groups
(a Namespace next to the examples) are skipped. Prints one line per document and
exits 1 if any document fails.

--strict also rejects fields the schema does not declare. The API server silently
prunes them, which hides typos such as `redirectUri`; strict mode catches them.

Not checked here: CEL rules (x-kubernetes-validations; the crds crate's tests
evaluate them with kube-cel), metadata (the API server validates it), formats.

OpenAPI 3.0 is translated to JSON Schema draft 4: `nullable: true` becomes a
`null` type, `x-kubernetes-int-or-string` an anyOf of integer and string.
"""

import sys

import jsonschema
import yaml


def to_jsonschema(s, strict):
    if isinstance(s, list):
        return [to_jsonschema(x, strict) for x in s]
    if not isinstance(s, dict):
        return s
    # enum/default/example hold instance values, not schemas.
    s = {k: v if k in ("enum", "default", "example") else to_jsonschema(v, strict) for k, v in s.items()}
    if s.pop("x-kubernetes-int-or-string", False):
        s.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if s.pop("nullable", False) and "type" in s:
        s["type"] = [s["type"], "null"]
    if (
        strict
        and "properties" in s
        and s.get("type") in ("object", ["object", "null"])
        and "additionalProperties" not in s
        and not s.get("x-kubernetes-preserve-unknown-fields")
    ):
        s["additionalProperties"] = False
    return s


def load_schemas(path, strict):
    """{(group, version, kind): validator} for every served version of every CRD."""
    schemas = {}
    with open(path, encoding="utf-8") as f:
        for crd in yaml.safe_load_all(f):
            if not crd:
                continue
            if crd.get("kind") != "CustomResourceDefinition":
                raise SystemExit(f"{path}: not a CustomResourceDefinition: {crd.get('kind')}")
            spec = crd["spec"]
            for version in spec["versions"]:
                if not version.get("served", True):
                    continue
                root = dict(version["schema"]["openAPIV3Schema"])
                root["properties"] = {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"type": "object"},
                    **root.get("properties", {}),
                }
                validator = jsonschema.Draft4Validator(to_jsonschema(root, strict))
                schemas[(spec["group"], version["name"], spec["names"]["kind"])] = validator
    return schemas


def location(error):
    return ".".join(str(p) for p in error.absolute_path) or "<root>"


def main(argv):
    strict = "--strict" in argv
    args = [a for a in argv if a != "--strict"]
    if len(args) < 2 or any(a.startswith("--") for a in args):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    schemas = load_schemas(args[0], strict)
    groups = {group for group, _, _ in schemas}
    failed = 0
    for path in args[1:]:
        with open(path, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            group, _, version = str(doc.get("apiVersion", "")).rpartition("/")
            kind = doc.get("kind")
            name = (doc.get("metadata") or {}).get("name", "<unnamed>")
            what = f"{path}: {kind}/{name}"
            if group not in groups:
                print(f"SKIP {what} (apiVersion {doc.get('apiVersion')} is not from these CRDs)")
                continue
            validator = schemas.get((group, version, kind))
            if validator is None:
                print(f"FAIL {what}: no served CRD version for {doc.get('apiVersion')} {kind}")
                failed += 1
                continue
            # The API server validates metadata itself.
            instance = {k: v for k, v in doc.items() if k != "metadata"}
            errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
            if errors:
                failed += 1
                for error in errors:
                    print(f"FAIL {what}: {location(error)}: {error.message}")
            else:
                print(f"OK   {what}" + (" (strict)" if strict else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
