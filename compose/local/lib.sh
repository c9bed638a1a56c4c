# shellcheck shell=bash disable=SC2034 # settings are used by the scripts that source this file
# lib.sh: shared settings and helpers for up.sh, down.sh and kafka-perf.sh
# (local Apache Kafka + Apache Cassandra without Docker). Sourced, not run.
#
# Every setting below is a default that the environment can override.

COURIER_CACHE="${COURIER_CACHE:-$HOME/.cache/courier}"
COURIER_LOCAL_STATE="${COURIER_LOCAL_STATE:-$COURIER_CACHE/local}"
# Config files hold these paths (file:// URLs too): make them absolute.
case "$COURIER_CACHE" in /*) ;; *) COURIER_CACHE="$PWD/$COURIER_CACHE" ;; esac
case "$COURIER_LOCAL_STATE" in /*) ;; *) COURIER_LOCAL_STATE="$PWD/$COURIER_LOCAL_STATE" ;; esac

KAFKA_VERSION="${COURIER_KAFKA_VERSION:-4.4.0}"
# log4j2 binding for Kafka's slf4j 1.7 API; keep in step with the log4j-core Kafka brings.
KAFKA_LOG4J_VERSION="${COURIER_KAFKA_LOG4J_VERSION:-2.25.5}"
CASSANDRA_VERSION="${COURIER_CASSANDRA_VERSION:-5.0.9}"
MVN_DEPENDENCY_PLUGIN="${COURIER_MVN_DEPENDENCY_PLUGIN:-org.apache.maven.plugins:maven-dependency-plugin:3.8.1}"

BIND_HOST="127.0.0.1"
KAFKA_PORT="${COURIER_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${COURIER_KAFKA_CONTROLLER_PORT:-9093}"
CASSANDRA_PORT="${COURIER_CASSANDRA_PORT:-9042}"
CASSANDRA_STORAGE_PORT="${COURIER_CASSANDRA_STORAGE_PORT:-7000}"
CASSANDRA_JMX_PORT="${COURIER_CASSANDRA_JMX_PORT:-7199}"

KAFKA_HEAP="${COURIER_KAFKA_HEAP:-1g}"
CASSANDRA_HEAP="${COURIER_CASSANDRA_HEAP:-1g}"
START_TIMEOUT="${COURIER_LOCAL_START_TIMEOUT:-240}"
STOP_TIMEOUT="${COURIER_LOCAL_STOP_TIMEOUT:-60}"

# Transport security: each server gets, on its first secured start, a local CA, a server
# certificate for 127.0.0.1/localhost and generated passwords, all kept in its state
# directory (tls/, secrets/), and clients get a courier.env beside them. Set
# COURIER_LOCAL_PLAINTEXT=1 to run a server without TLS or authentication instead: only
# to measure what security costs (BENCHMARKS.md); the default is secured.
PLAINTEXT="${COURIER_LOCAL_PLAINTEXT:-0}"
# The role (Cassandra) and SCRAM user (Kafka) courier logs in as.
COURIER_USER="courier"

JAVA="${COURIER_JAVA:-java}"
MVN="${COURIER_MVN:-mvn}"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROBE="$HERE/probe.py"

KAFKA_HOME="$COURIER_CACHE/dist/kafka-$KAFKA_VERSION"
CASSANDRA_HOME="$COURIER_CACHE/dist/cassandra-$CASSANDRA_VERSION"
KAFKA_STATE="$COURIER_LOCAL_STATE/kafka"
CASSANDRA_STATE="$COURIER_LOCAL_STATE/cassandra"

# The JPMS part of Cassandra 5.0's conf/jvm17-server.options: what Cassandra (server and
# nodetool) needs on Java 17.
CASSANDRA_JPMS_FLAGS=(
  -Djdk.attach.allowAttachSelf=true
  --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
  --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
  --add-exports java.sql/java.sql=ALL-UNNAMED
  --add-exports java.base/java.lang.ref=ALL-UNNAMED
  --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
  --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
  --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
  --add-opens java.base/java.lang.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
  --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
  --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
  --add-opens java.base/jdk.internal.math=ALL-UNNAMED
  --add-opens java.base/jdk.internal.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
  --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
  --add-opens java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens java.base/java.io=ALL-UNNAMED
  --add-opens java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
  --add-opens java.base/java.lang=ALL-UNNAMED
  --add-opens java.base/java.util=ALL-UNNAMED
)

log() { printf '[courier-local] %s\n' "$*" >&2; }
die() { printf '[courier-local] ERROR: %s\n' "$*" >&2; exit 1; }

# Which services a command line names: none means both.
parse_services() {
  SERVICES=()
  local arg
  for arg in "$@"; do
    case "$arg" in
      kafka | cassandra) SERVICES+=("$arg") ;;
      *) die "unknown service '$arg' (expected: kafka, cassandra)" ;;
    esac
  done
  if [ "${#SERVICES[@]}" -eq 0 ]; then SERVICES=(kafka cassandra); fi
}

state_dir() { # service
  case "$1" in
    kafka) printf '%s' "$KAFKA_STATE" ;;
    cassandra) printf '%s' "$CASSANDRA_STATE" ;;
  esac
}
pid_file() { printf '%s/%s.pid' "$(state_dir "$1")" "$1"; }
service_port() { # service
  case "$1" in
    kafka) printf '%s' "$KAFKA_PORT" ;;
    cassandra) printf '%s' "$CASSANDRA_PORT" ;;
  esac
}
service_log() { # service: the main log file
  case "$1" in
    kafka) printf '%s/logs/server.log' "$KAFKA_STATE" ;;
    cassandra) printf '%s/logs/system.log' "$CASSANDRA_STATE" ;;
  esac
}

# Prints the service's PID if its pid file names a live JVM that we started.
# Every JVM started by up.sh carries -Dcourier.local=<service> on its command line,
# which guards against a recycled PID.
running_pid() { # service
  local pf pid
  pf="$(pid_file "$1")"
  [ -f "$pf" ] || return 1
  pid="$(cat "$pf" 2>/dev/null || true)"
  case "$pid" in '' | *[!0-9]*) return 1 ;; esac
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "-Dcourier.local=$1 " || return 1
  printf '%s' "$pid"
}

port_open() { # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

rss_mib() { # pid
  awk '/^VmRSS:/ { printf "%d", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || printf '?'
}

ensure_java() {
  command -v "$JAVA" >/dev/null 2>&1 || die "'$JAVA' not found: install a JDK 17 (e.g. apt-get install -y openjdk-17-jdk-headless)"
}

ensure_python3() {
  if ! command -v python3 >/dev/null 2>&1; then
    log "python3 not found (needed by the readiness probe): installing python3-minimal with apt-get"
    apt-get install -y -q python3-minimal >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q python3-minimal >/dev/null; } ||
      die "could not install python3-minimal"
  fi
}

# Resolves a pom's runtime dependencies from Maven Central into DIR/lib (once).
# The jars come through the ordinary Maven local repository (~/.m2 unless configured).
mvn_install() { # dir label
  local dir="$1" label="$2"
  [ -f "$dir/.installed" ] && return 0
  command -v "$MVN" >/dev/null 2>&1 || die "'$MVN' not found: install Maven (apt-get install -y maven)"
  # One install at a time (up.sh and kafka-perf.sh may race on a fresh machine).
  exec 8>"$COURIER_CACHE/.install.lock"
  flock -w 900 8 || die "another install holds $COURIER_CACHE/.install.lock"
  if [ -f "$dir/.installed" ]; then
    exec 8>&-
    return 0
  fi
  log "installing $label into $dir (Maven, first use only)"
  rm -rf "${dir:?}/lib" "${dir:?}/lib.partial"
  local t0=$SECONDS
  # shellcheck disable=SC2086 # COURIER_MVN_ARGS is a word list on purpose
  if ! "$MVN" -B -q -f "$dir/pom.xml" ${COURIER_MVN_ARGS:-} \
    "$MVN_DEPENDENCY_PLUGIN:copy-dependencies" \
    -DincludeScope=runtime -DoutputDirectory="$dir/lib.partial" >"$dir/mvn.log" 2>&1; then
    tail -n 30 "$dir/mvn.log" >&2
    die "Maven could not resolve $label; full output in $dir/mvn.log"
  fi
  mv "$dir/lib.partial" "$dir/lib"
  printf '%s\n' "$label" >"$dir/.installed"
  exec 8>&-
  log "installed $label: $(find "$dir/lib" -name '*.jar' | wc -l) jars in $((SECONDS - t0)) s"
}

install_kafka() {
  mkdir -p "$KAFKA_HOME"
  [ -f "$KAFKA_HOME/.installed" ] && return 0
  cat >"$KAFKA_HOME/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <!-- generated by courier compose/local/lib.sh: Apache Kafka broker + tools, runtime classpath -->
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.courier</groupId>
  <artifactId>kafka-dist</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$KAFKA_LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
POM
  mvn_install "$KAFKA_HOME" "Apache Kafka $KAFKA_VERSION (org.apache.kafka:kafka_2.13 + kafka-tools)"
}

install_cassandra() {
  mkdir -p "$CASSANDRA_HOME"
  [ -f "$CASSANDRA_HOME/.installed" ] && return 0
  cat >"$CASSANDRA_HOME/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <!-- generated by courier compose/local/lib.sh: Apache Cassandra server, runtime classpath -->
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.courier</groupId>
  <artifactId>cassandra-dist</artifactId>
  <version>$CASSANDRA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.cassandra</groupId><artifactId>cassandra-all</artifactId><version>$CASSANDRA_VERSION</version></dependency>
  </dependencies>
</project>
POM
  mvn_install "$CASSANDRA_HOME" "Apache Cassandra $CASSANDRA_VERSION (org.apache.cassandra:cassandra-all)"
}

# Log4j2 configuration for the Kafka command-line tools: warnings to stderr only.
write_kafka_tools_log4j() {
  mkdir -p "$KAFKA_HOME/config"
  cat >"$KAFKA_HOME/config/tools-log4j2.properties" <<'CONF'
# generated by courier compose/local/lib.sh: Kafka tools log warnings to stderr
status = warn
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stderr.ref = STDERR
CONF
}

# Logback configuration for Cassandra's command-line tools: warnings to stderr only.
write_cassandra_tools_logback() {
  mkdir -p "$CASSANDRA_HOME/config"
  cat >"$CASSANDRA_HOME/config/tools-logback.xml" <<'CONF'
<!-- generated by courier compose/local/lib.sh: Cassandra tools log warnings to stderr -->
<configuration scan="false">
  <appender name="STDERR" class="ch.qos.logback.core.ConsoleAppender">
    <target>System.err</target>
    <encoder><pattern>%-5level %date{ISO8601} %msg%n</pattern></encoder>
  </appender>
  <root level="WARN"><appender-ref ref="STDERR"/></root>
</configuration>
CONF
}

# ------------------------------------------------------------ transport security

ensure_openssl() {
  command -v openssl >/dev/null 2>&1 || die "'openssl' not found (it makes the local CA and certificates): apt-get install -y openssl"
}

secured() { [ "$PLAINTEXT" != 1 ]; }

# DIR/secrets/NAME: a random password made once (0600), so restarts keep it.
ensure_secret() { # dir name
  local d="$1/secrets"
  mkdir -p "$d"
  chmod 700 "$d"
  [ -s "$d/$2" ] && return 0
  ensure_openssl
  (umask 077 && openssl rand -hex 24 >"$d/$2.tmp") && mv "$d/$2.tmp" "$d/$2"
}

# DIR/tls/: a CA of this server's own (ca.pem, ca.key) and a server certificate it
# signed for 127.0.0.1 and localhost (server.pem, server.key), also as a PKCS#12
# keystore (server.p12, password in DIR/secrets/keystore.password). Made once.
ensure_tls() { # dir label
  local dir="$1" label="$2" t="$1/tls"
  [ -s "$t/server.p12" ] && [ -s "$t/ca.pem" ] && return 0
  ensure_openssl
  mkdir -p "$t"
  chmod 700 "$t"
  ensure_secret "$dir" keystore.password
  log "$label: creating a local CA and a server certificate in $t (first secured start)"
  (
    umask 077
    cd "$t"
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 3650 \
      -subj "/CN=courier local $label CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout ca.key -out ca.pem 2>/dev/null
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
      -subj "/CN=$label" -keyout server.key -out server.csr 2>/dev/null
    # clientAuth too: a Kafka node is its own controller's client over TLS.
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
      "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
      -days 825 -sha256 -extfile server.ext -out server.pem 2>/dev/null
    openssl pkcs12 -export -in server.pem -inkey server.key -certfile ca.pem -name server \
      -passout "file:$dir/secrets/keystore.password" -out server.p12.tmp
    mv server.p12.tmp server.p12
    rm -f server.csr server.ext
  ) || die "$label: could not create the TLS files in $t"
  # Clients need the CA certificate, never its key.
  chmod 644 "$t/ca.pem"
}

# Writes DIR/courier.env: the COURIER_* variables that let courier reach this server
# (TLS with its CA, the courier user and its password file), for `set -a; . FILE` and
# for the tests (pipeline/src/testing.rs). None in plaintext mode.
write_courier_env() { # dir SECTION (KAFKA or CASSANDRA)
  local f="$1/courier.env"
  if ! secured; then
    rm -f "$f"
    return 0
  fi
  {
    printf '# generated by courier compose/local/up.sh at every secured start: how courier reaches\n'
    printf '# this server (set -a; . %s; set +a), or use compose/local/courier.toml.\n' "$f"
    printf 'COURIER_%s__TLS=true\n' "$2"
    printf 'COURIER_%s__CA_FILE=%s\n' "$2" "$1/tls/ca.pem"
    printf 'COURIER_%s__USERNAME=%s\n' "$2" "$COURIER_USER"
    printf 'COURIER_%s__PASSWORD_FILE=%s\n' "$2" "$1/secrets/$COURIER_USER.password"
  } >"$f.tmp"
  mv "$f.tmp" "$f"
}
