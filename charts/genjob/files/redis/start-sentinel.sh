#!/bin/sh
# Starts one sentinel of the chart's Sentinel deployment (redis.sentinel.enabled). It monitors
# the primary its peers name or, when none answers (a new release), the first Redis pod; Redis
# and the sentinels announce stable DNS names (pod IPs change on a restart).
# Env: SELF_ADDRESS (host:port of this sentinel), PEERS (host:port of every sentinel),
# FIRST_ADDRESS (host:port of the first Redis pod), SENTINEL_MASTER, SENTINEL_QUORUM,
# DOWN_AFTER_MS, FAILOVER_TIMEOUT_MS, SENTINEL_DIR (writable: Sentinel rewrites its file),
# SENTINEL_PASSWORD (may be empty), REDIS_PASSWORD (the default user's).
set -eu

. "$(dirname "$0")/sentinel-lib.sh"

primary=""
for peer in $PEERS; do
  [ "$peer" = "$SELF_ADDRESS" ] && continue
  primary=$(ask_sentinel "$peer")
  [ -n "$primary" ] && break
done
[ -n "$primary" ] || primary="$FIRST_ADDRESS"

conf="$SENTINEL_DIR/sentinel.conf"
{
  echo "port ${SELF_ADDRESS##*:}"
  echo "dir $SENTINEL_DIR"
  echo "sentinel resolve-hostnames yes"
  echo "sentinel announce-hostnames yes"
  echo "sentinel announce-ip ${SELF_ADDRESS%:*}"
  if [ -n "${SENTINEL_PASSWORD:-}" ]; then
    echo "requirepass \"$SENTINEL_PASSWORD\""
    echo "sentinel sentinel-pass \"$SENTINEL_PASSWORD\""
  fi
  echo "sentinel monitor $SENTINEL_MASTER ${primary%:*} ${primary##*:} $SENTINEL_QUORUM"
  echo "sentinel auth-pass $SENTINEL_MASTER \"$REDIS_PASSWORD\""
  echo "sentinel down-after-milliseconds $SENTINEL_MASTER $DOWN_AFTER_MS"
  echo "sentinel failover-timeout $SENTINEL_MASTER $FAILOVER_TIMEOUT_MS"
  echo "sentinel parallel-syncs $SENTINEL_MASTER 1"
} >"$conf"
echo "start-sentinel: monitoring $primary, this sentinel $SELF_ADDRESS"
exec redis-sentinel "$conf"
