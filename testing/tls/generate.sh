#!/usr/bin/env bash
# Regenerates the admin-API TLS test fixtures (run once; the output is checked in, as
# rcgen is not a dependency). Two independent CAs, each with a server certificate for
# localhost / 127.0.0.1, valid for 100 years so the tests never expire. Test-only keys:
# never use them anywhere else.
set -euo pipefail
cd "$(dirname "$0")"
for n in a b; do
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 36500 \
    -subj "/CN=Gatehouse test CA $n" -keyout "ca-$n.key" -out "ca-$n.crt" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=localhost" -keyout "server-$n.key" -out "server-$n.csr" 2>/dev/null
  openssl x509 -req -in "server-$n.csr" -CA "ca-$n.crt" -CAkey "ca-$n.key" -CAcreateserial \
    -days 36500 -out "server-$n.crt" \
    -extfile <(printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n') 2>/dev/null
  rm -f "server-$n.csr" "ca-$n.srl" "ca-$n.key"
done
