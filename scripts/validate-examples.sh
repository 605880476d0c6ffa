#!/usr/bin/env bash
# Validates the example custom resources against the generated CRD schemas, strictly,
# and checks that each deliberately bad resource in crds/tests/bad/ is rejected with the
# message named on its `# expect:` line. Offline once the Python venv exists.
#
#   scripts/validate-examples.sh
#
# Sets up a venv with jsonschema and PyYAML in $GATEHOUSE_VENV (default: .venv in the
# repository root, git-ignored) on first use; later runs reuse it.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=${GATEHOUSE_VENV:-.venv}
PY="$VENV/bin/python"
CRDS=manifests/crds.yaml

if ! "$PY" -c 'import jsonschema, yaml' 2>/dev/null; then
  echo "validate-examples: creating Python venv in $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'jsonschema==4.26.0' 'PyYAML==6.0.3'
fi

status=0

echo "validate-examples: manifests/examples/*.yaml and */*.yaml against $CRDS (strict)"
if ! "$PY" scripts/validate_cr.py "$CRDS" manifests/examples/*.yaml manifests/examples/*/*.yaml --strict; then
  status=1
fi

echo "validate-examples: crds/tests/bad/*.yaml must be rejected"
for file in crds/tests/bad/*.yaml; do
  expect=$(sed -n 's/^# expect: //p' "$file" | head -n 1)
  if [[ -z "$expect" ]]; then
    echo "FAIL $file: no '# expect: <message>' line"
    status=1
    continue
  fi
  if output=$("$PY" scripts/validate_cr.py "$CRDS" "$file" --strict 2>&1); then
    echo "FAIL $file: accepted, expected a failure with: $expect"
    status=1
  elif ! grep -qF -- "$expect" <<<"$output"; then
    echo "FAIL $file: rejected, but not with: $expect"
    echo "$output" | sed 's/^/    /'
    status=1
  else
    echo "OK   $file: rejected ($expect)"
  fi
done

if [[ $status -ne 0 ]]; then
  echo "validate-examples: FAILED"
else
  echo "validate-examples: all good"
fi
exit $status
