#!/usr/bin/env bash
# Runs the Argo CD health check of the custom resources (deploy/argocd/health.lua) against
# the fixtures in deploy/argocd/resource_customizations/ with a real Lua 5.1 interpreter,
# and checks that the rendered copies (argocd-cm.yaml, argo-cd-values.yaml, the per-kind
# health.lua files) are current. CI runs it from scripts/check-chart.sh.
#
#   scripts/check-argocd-health.sh            # check; exits 1 on a mismatch
#   scripts/check-argocd-health.sh --write    # after editing health.lua: re-render, check
#
# The interpreter is the Lua 5.1 that PyPI's lupa wheel embeds (lupa.lua51), installed
# into the same venv as the other chart checks ($GATEHOUSE_VENV, default .venv): about a
# second on first use, nothing afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${GATEHOUSE_VENV:-.venv}
if ! "$VENV/bin/python" -c 'import lupa.lua51, yaml, jsonschema' 2>/dev/null; then
  [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    'lupa==2.8' 'jsonschema==4.26.0' 'PyYAML==6.0.3'
fi
exec "$VENV/bin/python" scripts/check_argocd_health.py "$@"
