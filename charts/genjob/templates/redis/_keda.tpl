{{/*
One KEDA trigger reading the length of a genjob key (a pending LIST or an in-flight ZSET):
`redis` against the bundled or external Redis, or `redis-sentinel` when the chart points at
an external Sentinel set (externalRedis.sentinels), so KEDA follows the primary through a
failover as genjob's own clients do. Arguments: ctx (the root context), name, key, listLength.
*/}}
{{- define "genjob.redis.kedaTrigger" -}}
{{- $ := .ctx }}
{{- $sentinels := ternary (list) $.Values.externalRedis.sentinels $.Values.redis.enabled }}
- type: {{ ternary "redis-sentinel" "redis" (not (empty $sentinels)) }}
  name: {{ .name }}
  metadata:
    {{- if $sentinels }}
    addresses: {{ join "," $sentinels | quote }}
    sentinelMaster: {{ $.Values.externalRedis.sentinelMaster | quote }}
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
