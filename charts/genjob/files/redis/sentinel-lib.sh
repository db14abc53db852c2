# Shared by start-redis.sh and start-sentinel.sh (sourced): ask one sentinel (host:port) which
# server is the primary of SENTINEL_MASTER; prints host:port, or nothing when it does not answer.
ask_sentinel() {
  REDISCLI_AUTH="${SENTINEL_PASSWORD:-}" redis-cli --no-auth-warning --raw -h "${1%:*}" -p "${1##*:}" \
    SENTINEL get-master-addr-by-name "$SENTINEL_MASTER" 2>/dev/null | {
    read -r host && read -r port && case "$port" in '' | *[!0-9]*) ;; *) echo "$host:$port" ;; esac
  } || true
}
