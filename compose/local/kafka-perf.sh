#!/usr/bin/env bash
# kafka-perf.sh: run Kafka's own command-line tools with the classpath that up.sh cached
# (no Kafka distribution needed). Installs Kafka's jars on first use, like up.sh.
#
#   compose/local/kafka-perf.sh producer ARGS...   # org.apache.kafka.tools.ProducerPerformance
#   compose/local/kafka-perf.sh consumer ARGS...   # org.apache.kafka.tools.ConsumerPerformance
#   compose/local/kafka-perf.sh topics ARGS...     # org.apache.kafka.tools.TopicCommand
#   compose/local/kafka-perf.sh class FQCN ARGS... # any main class on that classpath
#
# e.g. kafka-perf.sh producer --topic perf --num-records 200000 --record-size 100 \
#        --throughput -1 --producer-props bootstrap.servers=127.0.0.1:9092
# Heap: COURIER_KAFKA_TOOLS_HEAP (default 512m).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ "$#" -ge 1 ] || { sed -n '2,13p' "$0" >&2; exit 2; }
case "$1" in
  producer) main=org.apache.kafka.tools.ProducerPerformance ;;
  consumer) main=org.apache.kafka.tools.ConsumerPerformance ;;
  topics) main=org.apache.kafka.tools.TopicCommand ;;
  class)
    [ "$#" -ge 2 ] || die "usage: kafka-perf.sh class FQCN ARGS..."
    main="$2"
    shift
    ;;
  *) die "unknown tool '$1' (expected: producer, consumer, topics, class FQCN)" ;;
esac
shift

ensure_java
install_kafka
[ -f "$KAFKA_HOME/config/tools-log4j2.properties" ] || write_kafka_tools_log4j

exec "$JAVA" "-Xmx${COURIER_KAFKA_TOOLS_HEAP:-512m}" -XX:+UseG1GC -Djava.awt.headless=true \
  "-Dlog4j2.configurationFile=file:$KAFKA_HOME/config/tools-log4j2.properties" \
  -cp "$KAFKA_HOME/lib/*" "$main" "$@"
