#!/usr/bin/env bash
# Chart and manifest checks (CI): helm lint --strict, render with default values and with
# ci/all-values.yaml (and the namespace-scoped ci/namespaced-values.yaml), validate every rendered object strictly against the Kubernetes 1.30
# schemas (kubernetes-validate, offline), check the plain manifests are current,
# validate the CRD examples against the generated CRD schemas, and run the Argo CD health
# checks of the custom resources against their fixtures (Lua 5.1).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-k8s-tools.sh >/dev/null
HELM=.tools/bin/helm
VENV=${GATEHOUSE_VENV:-.venv}
if ! "$VENV/bin/kubernetes-validate" --version >/dev/null 2>&1 || ! "$VENV/bin/python" -c 'import jsonschema, yaml' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    'kubernetes-validate==1.37.0' 'jsonschema==4.26.0' 'PyYAML==6.0.3'
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for values in "" charts/gatehouse/ci/all-values.yaml; do
  label=${values:-default values}
  # database.existingSecret has no default (the one value every install must give).
  args=(--namespace gatehouse --kube-version 1.30.0 --include-crds --set database.existingSecret=gatehouse-database)
  [[ -n "$values" ]] && args+=(-f "$values")
  echo "check-chart: helm lint --strict ($label)"
  "$HELM" lint --strict charts/gatehouse --set database.existingSecret=gatehouse-database ${values:+-f "$values"} >/dev/null
  echo "check-chart: render and validate against Kubernetes 1.30 ($label)"
  "$HELM" template gatehouse charts/gatehouse "${args[@]}" >"$work/rendered.yaml"
  # GitOps (Argo CD, Flux, `helm template | kubectl apply`) renders without cluster
  # access: the output must be a pure function of the values (no lookup, no random).
  echo "check-chart: two renders are identical ($label)"
  "$HELM" template gatehouse charts/gatehouse "${args[@]}" >"$work/rendered-again.yaml"
  diff -u "$work/rendered.yaml" "$work/rendered-again.yaml"
  if grep -nE '\b(lookup|randAlphaNum|randAlpha|randNumeric|randAscii|randBytes|uuidv4|genPrivateKey|genCA|now)\b' charts/gatehouse/templates/*; then
    echo "check-chart: a template uses lookup or a random/time function" >&2
    exit 1
  fi
  # --strict: unknown fields fail. Custom resources without a bundled schema (the
  # PodMonitors) are only warned about.
  "$VENV/bin/kubernetes-validate" -k 1.30.0 --strict --quiet "$work/rendered.yaml"
  "$VENV/bin/python" scripts/compare_rbac.py "$work/rendered.yaml" operator/rbac.yaml
done

echo "check-chart: namespace-scoped install (ci/namespaced-values.yaml)"
ns_values=charts/gatehouse/ci/namespaced-values.yaml
"$HELM" lint --strict charts/gatehouse -f "$ns_values" >/dev/null
"$HELM" template gatehouse charts/gatehouse --namespace gatehouse --kube-version 1.30.0 \
  -f "$ns_values" >"$work/namespaced.yaml"
"$VENV/bin/kubernetes-validate" -k 1.30.0 --strict --quiet "$work/namespaced.yaml"
"$VENV/bin/python" scripts/compare_rbac.py "$work/namespaced.yaml" operator/rbac-namespaced.yaml
# Least privilege, checked on the output rather than trusted to the reference file: no
# cluster-wide rule over Secrets or Events (OidcClients are cluster-wide on purpose: a
# watched namespace being deleted loses its Role before the clients' finalizers are
# released, docs/operator.md); a Role in every watched namespace;
# the operator told which namespaces and which instance.
"$VENV/bin/python" - "$work/namespaced.yaml" "$ns_values" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
values = yaml.safe_load(open(sys.argv[2]))["operator"]
bad = []
for d in docs:
    if d["kind"] != "ClusterRole":
        continue
    for r in d.get("rules", []):
        for res in r.get("resources", []):
            if res.split("/")[0] in ("secrets", "events", "*"):
                bad.append(f"ClusterRole {d['metadata']['name']} grants {res} cluster-wide")
watch_roles = {d["metadata"].get("namespace") for d in docs
               if d["kind"] == "Role" and d["metadata"]["name"].endswith("-operator-watch")}
for ns in values["watchNamespaces"]:
    if ns not in watch_roles:
        bad.append(f"no Role in watched namespace {ns}")
env = {e["name"]: e.get("value") for d in docs if d["kind"] == "Deployment"
       and d["metadata"]["name"].endswith("-operator")
       for c in d["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])}
if env.get("GATEHOUSE_WATCH_NAMESPACES") != ",".join(values["watchNamespaces"]):
    bad.append(f"GATEHOUSE_WATCH_NAMESPACES is {env.get('GATEHOUSE_WATCH_NAMESPACES')!r}")
if env.get("GATEHOUSE_INSTANCE") != values["instance"]:
    bad.append(f"GATEHOUSE_INSTANCE is {env.get('GATEHOUSE_INSTANCE')!r}")
if bad:
    sys.exit("check-chart: namespaced install:\n  " + "\n  ".join(bad))
PY
echo "check-chart: the default install sets neither GATEHOUSE_WATCH_NAMESPACES nor GATEHOUSE_INSTANCE"
"$HELM" template gatehouse charts/gatehouse --namespace gatehouse --set database.existingSecret=db >"$work/default.yaml"
if grep -qE 'GATEHOUSE_WATCH_NAMESPACES|GATEHOUSE_INSTANCE|gatehouse.dev/instance' "$work/default.yaml"; then
  echo "check-chart: the default install is namespace-scoped or names an instance" >&2
  exit 1
fi
if "$HELM" template gatehouse charts/gatehouse --set database.existingSecret=db \
  --set 'operator.watchNamespaces[0]=Shop' >/dev/null 2>"$work/err"; then
  echo "check-chart: values.schema.json accepted operator.watchNamespaces[0]=Shop" >&2
  exit 1
fi

echo "check-chart: a NetworkPolicy admits only the probe port to the operator pods"
"$VENV/bin/python" - "$work/default.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
policies = [d for d in docs if d["kind"] == "NetworkPolicy"
            and d["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/component") == "operator"]
if len(policies) != 1:
    sys.exit(f"check-chart: {len(policies)} NetworkPolicies select the operator pods")
spec = policies[0]["spec"]
ports = [p["port"] for rule in spec.get("ingress", []) for p in rule.get("ports", [])]
if "Ingress" not in spec["policyTypes"] or ports != ["probes"]:
    sys.exit(f"check-chart: the operator NetworkPolicy admits {ports} ({spec['policyTypes']})")
PY

echo "check-chart: the PodDisruptionBudget is rendered only when it can be satisfied"
"$HELM" template gatehouse charts/gatehouse --namespace gatehouse --set database.existingSecret=db >"$work/two.yaml"
grep -q '^kind: PodDisruptionBudget' "$work/two.yaml"
for set in authserver.replicas=1 "authserver.autoscaling.enabled=true,authserver.autoscaling.minReplicas=1"; do
  "$HELM" template gatehouse charts/gatehouse --namespace gatehouse --set database.existingSecret=db --set "$set" >"$work/one.yaml"
  if grep -q '^kind: PodDisruptionBudget' "$work/one.yaml"; then
    echo "check-chart: a PodDisruptionBudget that blocks drains was rendered with $set" >&2
    exit 1
  fi
done

echo "check-chart: names fit their limits with the longest release name Helm allows"
long=identity-provider-with-a-release-name-of-53-chars-xy
"$HELM" template "$long" charts/gatehouse --namespace gatehouse --set database.existingSecret=db >"$work/long.yaml"
"$VENV/bin/python" - "$work/long.yaml" <<'PY'
import sys, yaml
bad = []
for doc in yaml.safe_load_all(open(sys.argv[1])):
    if not doc:
        continue
    meta = doc.get("metadata", {})
    if doc.get("kind") == "Service" and len(meta.get("name", "")) > 63:
        bad.append(f"Service {meta['name']} is longer than 63 characters")
    for k, v in (meta.get("labels") or {}).items():
        if len(str(v)) > 63:
            bad.append(f"{doc.get('kind')} {meta.get('name')}: label {k} value longer than 63")
if bad:
    sys.exit("\n".join(bad))
PY

echo "check-chart: an install without the database Secret fails with a message naming it"
if "$HELM" template gatehouse charts/gatehouse >/dev/null 2>"$work/err"; then
  echo "check-chart: rendered without database.existingSecret" >&2
  exit 1
fi
grep -q "database.existingSecret is required" "$work/err"

echo "check-chart: admin TLS needs its Secret; with it the operator uses https and only the CA"
if "$HELM" template gatehouse charts/gatehouse --set database.existingSecret=db --set admin.tls.enabled=true >/dev/null 2>"$work/err"; then
  echo "check-chart: rendered admin.tls.enabled without admin.tls.secretName" >&2
  exit 1
fi
grep -q "admin.tls.secretName is required" "$work/err"
"$HELM" template gatehouse charts/gatehouse --namespace gatehouse --set database.existingSecret=db \
  --set admin.tls.enabled=true --set admin.tls.secretName=admin-tls >"$work/tls.yaml"
grep -q 'value: https://gatehouse-admin.gatehouse.svc:8081' "$work/tls.yaml"
grep -q 'value: /var/run/gatehouse/admin-ca/ca.crt' "$work/tls.yaml"
grep -q 'name: GATEHOUSE_ADMIN_TLS_CERT_FILE' "$work/tls.yaml"
"$HELM" template gatehouse charts/gatehouse --namespace gatehouse --set database.existingSecret=db >"$work/plain.yaml"
if grep -q 'admin-tls\|GATEHOUSE_ADMIN_CA_FILE' "$work/plain.yaml"; then
  echo "check-chart: admin TLS rendered although admin.tls.enabled is false" >&2
  exit 1
fi

echo "check-chart: Job pods inherit pull secrets and scheduling unless jobPods says otherwise"
"$HELM" template gatehouse charts/gatehouse --set database.existingSecret=db \
  --set 'image.pullSecrets[0]=regcred' --set authserver.nodeSelector.pool=system >"$work/jobpods.yaml"
grep -qF '{\"imagePullSecrets\":[{\"name\":\"regcred\"}],\"nodeSelector\":{\"pool\":\"system\"},\"platformAssignsUid\":false}' "$work/jobpods.yaml"
"$HELM" template gatehouse charts/gatehouse --set database.existingSecret=db --set 'image.pullSecrets[0]=regcred' \
  --set-json 'jobPods={"imagePullSecrets":[],"platformAssignsUid":true,"annotations":{"sidecar.istio.io/inject":"false"}}' >"$work/jobpods.yaml"
grep -qF '{\"annotations\":{\"sidecar.istio.io/inject\":\"false\"},\"platformAssignsUid\":true}' "$work/jobpods.yaml"

echo "check-chart: bad values are rejected at install time"
if "$HELM" template gatehouse charts/gatehouse --set database.existingSecret=db --set authserver.replicas=many >/dev/null 2>"$work/err"; then
  echo "check-chart: values.schema.json accepted authserver.replicas=many" >&2
  exit 1
fi
grep -q "want integer" "$work/err"

scripts/render-manifests.sh --check
.tools/bin/kubectl kustomize manifests/ >"$work/kustomized.yaml"
"$VENV/bin/kubernetes-validate" -k 1.30.0 --strict --quiet "$work/kustomized.yaml"
GATEHOUSE_VENV="$VENV" scripts/validate-examples.sh
echo "check-chart: Argo CD health checks (deploy/argocd)"
"$VENV/bin/kubernetes-validate" -k 1.30.0 --strict --quiet deploy/argocd/argocd-cm.yaml
GATEHOUSE_VENV="$VENV" scripts/check-argocd-health.sh
echo "check-chart: all chart and manifest checks passed"
