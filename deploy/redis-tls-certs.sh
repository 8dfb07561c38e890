#!/bin/sh
# Certificates for a TLS-only Redis (rediss://): a private CA and a server certificate it signs.
#
#   deploy/redis-tls-certs.sh [DIR] [EXTRA_DNS_NAME...]     (or: make redis-certs)
#
# writes DIR/ca.crt, DIR/tls.crt and DIR/tls.key (default DIR: docker/redis-tls, what
# docker-compose.tls.yml mounts). The server certificate names the compose service (redis), the
# Kubernetes Service (ragblend-redis and its cluster names in the default namespace), localhost
# and 127.0.0.1, plus any extra names given. For Kubernetes, put them in the Secret
# ragblend-redis-tls (deploy/overlays/redis-tls/redis-tls-secret.example.yaml says how).
# The CA key is not kept: make new certificates (and restart Redis) to renew them.
set -eu
dir="${1:-docker/redis-tls}"
[ $# -gt 0 ] && shift
days="${REDIS_TLS_DAYS:-825}"
mkdir -p "$dir"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
san="DNS:redis,DNS:ragblend-redis,DNS:ragblend-redis.default.svc,DNS:ragblend-redis.default.svc.cluster.local"
san="$san,DNS:localhost,IP:127.0.0.1"
for name in "$@"; do san="$san,DNS:$name"; done
openssl req -x509 -newkey rsa:2048 -nodes -days "$days" -subj "/CN=ragblend redis CA" \
  -keyout "$work/ca.key" -out "$dir/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=ragblend-redis" \
  -keyout "$dir/tls.key" -out "$work/tls.csr" 2>/dev/null
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$san" > "$work/ext"
openssl x509 -req -in "$work/tls.csr" -CA "$dir/ca.crt" -CAkey "$work/ca.key" -CAserial "$work/ca.srl" -CAcreateserial \
  -days "$days" -extfile "$work/ext" -out "$dir/tls.crt" 2>/dev/null
# the Redis image runs as its own user, which must read the key it is given
chmod 644 "$dir/ca.crt" "$dir/tls.crt" "$dir/tls.key"
echo "wrote $dir/ca.crt $dir/tls.crt $dir/tls.key"
