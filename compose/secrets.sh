#!/usr/bin/env bash
# compose/secrets.sh: makes the secrets compose/docker-compose.yml mounts (compose
# `secrets:`), into compose/secrets/ (git-ignored), once; run it before the first
# `docker compose up`. Rerunning keeps every file that exists, so passwords and
# certificates survive; delete compose/secrets/ to start over (then also
# `docker compose down -v`: the volumes hold the old users).
#
#   kafka_ca.pem, kafka_ca.key        a CA of this deployment's own (the key never leaves here)
#   kafka-{1,2,3}.p12                 each broker's key and certificate (kafka-N, localhost,
#                                     127.0.0.1), PKCS#12
#   kafka-admin.p12                   the client certificate the one-shot kafka-users service
#                                     presents to the brokers' mutual-TLS listener
#   kafka_secrets.properties          keystore.password=… (the brokers read it through Kafka's
#                                     file config provider, so it is in no environment)
#   kafka_courier_password            courier's SCRAM-SHA-512 password
#   scylla_admin_password             replaces the superuser cassandra's default password
#   scylla_courier_password           the password of the role courier logs in as
set -euo pipefail
cd "$(dirname "$0")"
command -v openssl >/dev/null || { echo "error: openssl not found" >&2; exit 1; }

mkdir -p secrets
# The directory keeps them from other users of this machine; the files themselves
# must be readable by the containers' users (compose bind-mounts file secrets as
# they are, whatever uid a container runs as).
chmod 700 secrets
cd secrets

password() { # file
  [ -s "$1" ] || openssl rand -hex 24 >"$1"
}
password kafka_keystore_password
password kafka_courier_password
password scylla_admin_password
password scylla_courier_password
[ -s kafka_secrets.properties ] ||
  printf 'keystore.password=%s\n' "$(cat kafka_keystore_password)" >kafka_secrets.properties

if [ ! -s kafka_ca.pem ]; then
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 3650 \
    -subj "/CN=courier compose Kafka CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout kafka_ca.key -out kafka_ca.pem 2>/dev/null
  chmod 600 kafka_ca.key
fi

# NAME.p12: a key and a certificate for SANS signed by the CA. Brokers' certificates
# serve clients and are clients of each other (replication, the controller quorum).
keystore() { # name sans
  [ -s "$1.p12" ] && return 0
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
    -subj "/CN=$1" -keyout "$1.key" -out "$1.csr" 2>/dev/null
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=$2" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA kafka_ca.pem -CAkey kafka_ca.key \
    -set_serial "0x$(openssl rand -hex 16)" -days 825 -sha256 -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  openssl pkcs12 -export -in "$1.pem" -inkey "$1.key" -certfile kafka_ca.pem -name "$1" \
    -passout file:kafka_keystore_password -out "$1.p12"
  rm -f "$1.csr" "$1.ext" "$1.key" "$1.pem"
}
for broker in kafka-1 kafka-2 kafka-3; do
  keystore "$broker" "DNS:$broker,DNS:localhost,IP:127.0.0.1"
done
keystore kafka-admin "DNS:kafka-admin"

chmod 644 ./*.p12 kafka_ca.pem kafka_secrets.properties kafka_keystore_password \
  kafka_courier_password scylla_admin_password scylla_courier_password
echo "secrets in $(pwd)"
