#!/bin/sh
# Starts one Redis server of the chart's Sentinel deployment (redis.sentinel.enabled): a replica
# of the primary the sentinels name or, when no sentinel knows one yet (a new release), the first
# pod as the primary and the others as its replicas. A restarted old primary thus comes back as
# a replica of the one the sentinels promoted, never as a second primary.
# Arguments: redis-server's own. Env: SELF_ADDRESS and FIRST_ADDRESS (host:port of this server
# and of the first pod), SENTINELS (host:port ...), SENTINEL_MASTER, SENTINEL_PASSWORD (may be
# empty), REDIS_PASSWORD (the default user's: replication).
set -eu

. "$(dirname "$0")/sentinel-lib.sh"

primary=""
for sentinel in $SENTINELS; do
  primary=$(ask_sentinel "$sentinel")
  [ -n "$primary" ] && break
done
[ -n "$primary" ] || primary="$FIRST_ADDRESS"
set -- "$@" --replica-announce-ip "${SELF_ADDRESS%:*}" --masterauth "$REDIS_PASSWORD"
if [ "$primary" != "$SELF_ADDRESS" ]; then
  set -- "$@" --replicaof "${primary%:*}" "${primary##*:}"
fi
echo "start-redis: primary $primary, this server $SELF_ADDRESS"
exec redis-server "$@"
