{{/*
One KEDA trigger reading the length of a genjob key (a pending LIST or an in-flight ZSET):
`redis` against a single Redis, or `redis-sentinel` when there are sentinels (the bundled
ones with redis.sentinel.enabled, or externalRedis.sentinels), so KEDA follows the primary
through a failover as genjob's own clients do. Arguments: ctx (the root context), name, key, listLength.
*/}}
{{- define "genjob.redis.kedaTrigger" -}}
{{- $ := .ctx }}
{{- $sentinels := include "genjob.redis.sentinels" $ | fromJsonArray }}
- type: {{ ternary "redis-sentinel" "redis" (not (empty $sentinels)) }}
  name: {{ .name }}
  metadata:
    {{- if $sentinels }}
    addresses: {{ join "," $sentinels | quote }}
    sentinelMaster: {{ include "genjob.redis.sentinelMaster" $ | quote }}
    {{- else }}
    address: {{ include "genjob.redis.address" $ | quote }}
    {{- end }}
    databaseIndex: {{ include "genjob.redis.databaseIndex" $ | quote }}
    enableTLS: {{ include "genjob.redis.tls" $ | quote }}
    listName: {{ .key | quote }}
    listLength: {{ .listLength | quote }}
    activationListLength: "0"
  {{- if include "genjob.redis.secretName" $ }}
  authenticationRef:
    name: {{ include "genjob.fullname" $ }}-redis
  {{- end }}
{{- end }}
