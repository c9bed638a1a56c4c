#!/usr/bin/env bash
# nodetool.sh: run Cassandra's nodetool against the local node started by up.sh, with the
# cached cassandra-all classpath and the Java 17 module flags Cassandra needs.
#
#   compose/local/nodetool.sh status
#   compose/local/nodetool.sh flush; compose/local/nodetool.sh tablestats KEYSPACE
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_java
install_cassandra
[ -f "$CASSANDRA_HOME/config/tools-logback.xml" ] || write_cassandra_tools_logback

exec "$JAVA" -Xmx256m "${CASSANDRA_JPMS_FLAGS[@]}" \
  "-Dlogback.configurationFile=$CASSANDRA_HOME/config/tools-logback.xml" \
  -cp "$CASSANDRA_HOME/lib/*" org.apache.cassandra.tools.NodeTool \
  -h "$BIND_HOST" -p "$CASSANDRA_JMX_PORT" "$@"
