{{/*
Helpers of the genjob chart. Every helper is prefixed `genjob.`.
Helpers that need a component take a dict: (dict "ctx" $ "component" "worker" "tier" "pro").
*/}}

{{- define "genjob.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "genjob.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "genjob.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: the stable subset used in selectors (never change them on upgrade). */}}
{{- define "genjob.selectorLabels" -}}
app.kubernetes.io/name: {{ include "genjob.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- with .tier }}
genjob.io/tier: {{ . }}
{{- end }}
{{- end }}

{{/* All labels: selector labels plus free-form ones. */}}
{{- define "genjob.labels" -}}
helm.sh/chart: {{ include "genjob.chart" .ctx }}
{{ include "genjob.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: genjob
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that select every pod of this release (NetworkPolicies). */}}
{{- define "genjob.instanceSelector" -}}
app.kubernetes.io/name: {{ include "genjob.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* image: (dict "ctx" $ "image" .Values.image.api) */}}
{{- define "genjob.image" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) }}
{{- end }}

{{/* serviceAccountName: (dict "ctx" $ "component" "operator" "sa" .Values.operator.serviceAccount) */}}
{{- define "genjob.serviceAccountName" -}}
{{- if .sa.create }}
{{- default (printf "%s-%s" (include "genjob.fullname" .ctx) .component) .sa.name }}
{{- else }}
{{- default "default" .sa.name }}
{{- end }}
{{- end }}

{{/* Pod-level securityContext for Pod Security Standard "restricted". */}}
{{- define "genjob.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container-level securityContext for Pod Security Standard "restricted". */}}
{{- define "genjob.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* ---------------------------------------------------------------- Redis */}}

{{- define "genjob.redis.serviceName" -}}
{{- printf "%s-redis" (include "genjob.fullname" .) }}
{{- end }}

{{/* The URL genjob processes use (no password in it; GENJOB_REDIS__PASSWORD carries it). */}}
{{- define "genjob.redis.url" -}}
{{- if .Values.redis.enabled }}
{{- printf "redis://%s:6379/0" (include "genjob.redis.serviceName" .) }}
{{- else }}
{{- required "externalRedis.url is required when redis.enabled is false" .Values.externalRedis.url }}
{{- end }}
{{- end }}

{{/* host:port of Redis as seen from the KEDA operator's namespace. */}}
{{- define "genjob.redis.address" -}}
{{- if .Values.redis.enabled }}
{{- printf "%s.%s.svc.%s:6379" (include "genjob.redis.serviceName" .) .Release.Namespace .Values.clusterDomain }}
{{- else }}
{{- $u := urlParse (include "genjob.redis.url" .) }}
{{- if contains ":" $u.host }}{{ $u.host }}{{ else }}{{ printf "%s:6379" $u.host }}{{ end }}
{{- end }}
{{- end }}

{{- define "genjob.redis.databaseIndex" -}}
{{- $path := trimPrefix "/" (urlParse (include "genjob.redis.url" .)).path }}
{{- default "0" $path }}
{{- end }}

{{- define "genjob.redis.tls" -}}
{{- ternary "true" "false" (eq (urlParse (include "genjob.redis.url" .)).scheme "rediss") }}
{{- end }}

{{/* Name of the Secret holding the Redis password; empty when Redis has none. */}}
{{- define "genjob.redis.secretName" -}}
{{- if .Values.redis.enabled }}
{{- default (printf "%s-redis" (include "genjob.fullname" .)) .Values.redis.auth.existingSecret }}
{{- else if .Values.externalRedis.existingSecret }}
{{- .Values.externalRedis.existingSecret }}
{{- else if .Values.externalRedis.password }}
{{- printf "%s-redis" (include "genjob.fullname" .) }}
{{- end }}
{{- end }}

{{- define "genjob.redis.secretKey" -}}
{{- if .Values.redis.enabled }}
{{- .Values.redis.auth.existingSecretPasswordKey }}
{{- else if .Values.externalRedis.existingSecret }}
{{- .Values.externalRedis.existingSecretPasswordKey }}
{{- else }}
{{- "redis-password" }}
{{- end }}
{{- end }}

{{/* "true" when the bundled Redis runs with replicas and Sentinel; empty otherwise. */}}
{{- define "genjob.redis.sentinelBundled" -}}
{{- if and .Values.redis.enabled .Values.redis.sentinel.enabled }}true{{ end }}
{{- end }}

{{- define "genjob.redis.headlessServiceName" -}}
{{- printf "%s-redis-headless" (include "genjob.fullname" .) }}
{{- end }}

{{- define "genjob.redis.sentinelName" -}}
{{- printf "%s-redis-sentinel" (include "genjob.fullname" .) }}
{{- end }}

{{/* DNS name of the bundled Redis pod `ordinal` (through the headless Service). */}}
{{- define "genjob.redis.podHost" -}}
{{- printf "%s-redis-%v.%s.%s.svc.%s" (include "genjob.fullname" .ctx) .ordinal (include "genjob.redis.headlessServiceName" .ctx) .ctx.Release.Namespace .ctx.Values.clusterDomain }}
{{- end }}

{{/* Sentinel addresses (host:port) genjob and KEDA ask for the primary, as a JSON list: the
bundled sentinels (one per pod, by its stable DNS name) or externalRedis.sentinels; [] without. */}}
{{- define "genjob.redis.sentinels" -}}
{{- if include "genjob.redis.sentinelBundled" . }}
{{- $name := include "genjob.redis.sentinelName" . }}
{{- $out := list }}
{{- range $i := until (int .Values.redis.sentinel.replicas) }}
{{- $out = append $out (printf "%s-%d.%s.%s.svc.%s:26379" $name $i $name $.Release.Namespace $.Values.clusterDomain) }}
{{- end }}
{{- toJson $out }}
{{- else if not .Values.redis.enabled }}
{{- toJson .Values.externalRedis.sentinels }}
{{- else }}
{{- toJson list }}
{{- end }}
{{- end }}

{{- define "genjob.redis.sentinelMaster" -}}
{{- ternary .Values.redis.sentinel.masterName .Values.externalRedis.sentinelMaster .Values.redis.enabled }}
{{- end }}

{{/* Key of the sentinels' password in the Redis Secret; empty when the sentinels have none. */}}
{{- define "genjob.redis.sentinelPasswordKey" -}}
{{- if include "genjob.redis.sentinelBundled" . }}sentinel-password
{{- else if and (not .Values.redis.enabled) .Values.externalRedis.existingSecret }}{{ .Values.externalRedis.existingSecretSentinelPasswordKey }}
{{- end }}
{{- end }}

{{/* The Redis ACL user of a component (gateway, operator, worker, keda); empty: the default
user. Arguments: ctx, user. Its password is at key `<user>-password` of the Redis Secret. */}}
{{- define "genjob.redis.aclUser" -}}
{{- $v := .ctx.Values }}
{{- if and $v.redis.enabled $v.redis.acl.enabled }}{{ printf "%s%s" $v.redis.acl.userPrefix .user }}
{{- else if and (not $v.redis.enabled) $v.externalRedis.aclUsers }}{{ printf "%s%s" $v.externalRedis.aclUserPrefix .user }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- Tiers */}}

{{/* The worker pool of one tier: worker.* merged with tiers.<name>.pool, as YAML (use fromYaml).
     (dict "ctx" $ "name" $name "tier" $tier) */}}
{{- define "genjob.tierPool" -}}
{{- $defaults := omit (deepCopy .ctx.Values.worker) "serviceAccount" "ownPodPolicy" }}
{{- $pool := mergeOverwrite $defaults (deepCopy (default dict .tier.pool)) }}
{{- if not (hasKey $pool "enabled") }}{{ $_ := set $pool "enabled" true }}{{ end }}
{{- toYaml $pool }}
{{- end }}

{{/* Seconds the worker gets to drain after SIGTERM (GENJOB_WORKER__DRAIN_GRACE_SECONDS). (dict "pool" $pool) */}}
{{- define "genjob.drainGraceSeconds" -}}
{{- sub (int .pool.terminationGracePeriodSeconds) (int .pool.drainMarginSeconds) }}
{{- end }}

{{- define "genjob.workerName" -}}
{{- printf "%s-worker-%s" (include "genjob.fullname" .ctx) .name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* ------------------------------------------------- KEDA push trigger */}}

{{/* "true" when the operator serves KEDA's external-push API and the ScaledObjects use it. */}}
{{- define "genjob.push.enabled" -}}
{{- if and .Values.operator.enabled .Values.keda.enabled .Values.operator.pushScaler.enabled }}true{{ end }}
{{- end }}

{{- define "genjob.push.serviceName" -}}
{{- printf "%s-operator-push" (include "genjob.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "genjob.push.address" -}}
{{- .Values.operator.pushScaler.scalerAddress | default (printf "%s.%s.svc:%d" (include "genjob.push.serviceName" .) .Release.Namespace (int .Values.operator.pushScaler.port)) }}
{{- end }}

{{- define "genjob.push.serverSecretName" -}}
{{- .Values.operator.pushScaler.tls.existingSecret | default (printf "%s-push-server-tls" (include "genjob.fullname" .)) }}
{{- end }}

{{- define "genjob.push.clientSecretName" -}}
{{- .Values.operator.pushScaler.tls.existingClientSecret | default (printf "%s-push-client-tls" (include "genjob.fullname" .)) }}
{{- end }}

{{/* ---------------------------------------------------------------- Config */}}

{{/* The shared config.yaml (genjob/settings.py). Only the queue part of each tier goes in. */}}
{{- define "genjob.config" -}}
{{- $tiers := dict }}
{{- range $name, $tier := .Values.tiers }}
{{- $_ := set $tiers $name $tier.queue }}
{{- end }}
{{- $results := dict "backend" .Values.results.backend }}
{{- if eq .Values.results.backend "filesystem" }}
{{- $_ := set $results "path" .Values.results.mountPath }}
{{- else }}
{{- $_ := set $results "s3_bucket" .Values.results.s3.bucket }}
{{- $_ := set $results "s3_prefix" .Values.results.s3.prefix }}
{{- with .Values.results.s3.region }}{{ $_ := set $results "s3_region" . }}{{ end }}
{{- with .Values.results.s3.endpointUrl }}{{ $_ := set $results "s3_endpoint_url" . }}{{ end }}
{{- end }}
{{- $operator := dict "namespaces" .Values.operator.namespaces "ttl_seconds_after_finished" .Values.operator.ttlSecondsAfterFinished "tenant_label" .Values.operator.tenantLabel "owner_namespaces" .Values.operator.ownerNamespaces "peering_name" (include "genjob.fullname" .) "http_port" 8080 }}
{{- if include "genjob.push.enabled" . }}
{{- $_ := set $operator "push_port" (int .Values.operator.pushScaler.port) }}
{{- $_ := set $operator "push_tls_dir" "/etc/genjob/push-tls" }}
{{- end }}
{{- $operator = mergeOverwrite $operator (deepCopy .Values.operator.extraConfig) }}
{{- $api := dict "mode" .Values.api.mode "namespace_template" .Values.api.namespaceTemplate }}
{{- if include "genjob.api.keysSecretName" . }}
{{- $_ := set $api "api_keys_file" (printf "/etc/genjob/api-keys/%s" .Values.api.apiKeys.key) }}
{{- end }}
{{- $api = mergeOverwrite $api (deepCopy .Values.api.extraConfig) }}
{{- $redis := dict "url" (include "genjob.redis.url" .) "key_prefix" .Values.redis.keyPrefix }}
{{- with include "genjob.redis.sentinels" . | fromJsonArray }}
{{- $_ := set $redis "sentinels" . }}
{{- $_ := set $redis "sentinel_master" (include "genjob.redis.sentinelMaster" $) }}
{{- end }}
{{- $wait := 0 }}
{{- if include "genjob.redis.sentinelBundled" . }}{{ $wait = .Values.redis.sentinel.waitReplicas }}
{{- else if not .Values.redis.enabled }}{{ $wait = .Values.externalRedis.waitReplicas }}{{ end }}
{{- with $wait }}{{ $_ := set $redis "wait_replicas" . }}{{ end }}
{{- $cfg := dict
  "redis" $redis
  "queue" .Values.config.queue
  "tiers" $tiers
  "models" .Values.config.models
  "default_model" .Values.config.defaultModel
  "worker" (dict "tiers" (list (first (sortAlpha (keys .Values.tiers)))))
  "results" $results
  "operator" $operator
  "api" $api
  "log_level" .Values.config.logLevel
  "log_format" .Values.config.logFormat
}}
{{- toYaml $cfg }}
{{- end }}

{{- define "genjob.api.keysSecretName" -}}
{{- if .Values.api.apiKeys.existingSecret }}
{{- .Values.api.apiKeys.existingSecret }}
{{- else if .Values.api.apiKeys.content }}
{{- printf "%s-api-keys" (include "genjob.fullname" .) }}
{{- end }}
{{- end }}

{{/* Env every genjob container gets: the config file, its own pod identity, its Redis user
and password, the sentinels' password. Arguments: ctx, user (its Redis ACL user: gateway,
operator or worker). */}}
{{- define "genjob.commonEnv" -}}
{{- $ctx := .ctx }}
{{- $user := include "genjob.redis.aclUser" . }}
- name: GENJOB_CONFIG_FILE
  value: /etc/genjob/config.yaml
- name: POD_NAME
  valueFrom:
    fieldRef: {fieldPath: metadata.name}
- name: POD_NAMESPACE
  valueFrom:
    fieldRef: {fieldPath: metadata.namespace}
{{- with $user }}
- name: GENJOB_REDIS__USERNAME
  value: {{ . | quote }}
{{- end }}
{{- with include "genjob.redis.secretName" $ctx }}
- name: GENJOB_REDIS__PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ ternary (printf "%s-password" $.user) (include "genjob.redis.secretKey" $ctx) (not (empty $user)) }}
{{- with include "genjob.redis.sentinelPasswordKey" $ctx }}
- name: GENJOB_REDIS__SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "genjob.redis.secretName" $ctx }}
      key: {{ . }}
{{- end }}
{{- end }}
{{- end }}

{{/* The config volume and its mount. */}}
{{- define "genjob.configVolume" -}}
- name: config
  configMap:
    name: {{ include "genjob.fullname" . }}-config
{{- end }}

{{- define "genjob.configVolumeMount" -}}
- name: config
  mountPath: /etc/genjob
  readOnly: true
{{- end }}

{{- define "genjob.resultsClaimName" -}}
{{- default (printf "%s-results" (include "genjob.fullname" .)) .Values.results.persistence.existingClaim }}
{{- end }}

{{/* ---------------------------------------------------------------- Validation */}}

{{/* Checks values.schema.json cannot express; fails the render with a clear message. */}}
{{- define "genjob.validate" -}}
{{- if not (hasKey .Values.config.models .Values.config.defaultModel) }}
{{- fail (printf "config.defaultModel %q is not a key of config.models (%s)" .Values.config.defaultModel (keys .Values.config.models | sortAlpha | join ", ")) }}
{{- end }}
{{- range $name, $tier := .Values.tiers }}
{{- range $lower := (default list $tier.queue.spill_over_to) }}
{{- if not (hasKey $.Values.tiers $lower) }}
{{- fail (printf "tiers.%s.queue.spill_over_to names unknown tier %q" $name $lower) }}
{{- end }}
{{- end }}
{{- $pool := include "genjob.tierPool" (dict "ctx" $ "name" $name "tier" $tier) | fromYaml }}
{{- if $pool.enabled }}
{{- $drain := include "genjob.drainGraceSeconds" (dict "pool" $pool) | int }}
{{- if le $drain 0 }}
{{- fail (printf "tier %s: terminationGracePeriodSeconds (%v) must exceed drainMarginSeconds (%v)" $name $pool.terminationGracePeriodSeconds $pool.drainMarginSeconds) }}
{{- end }}
{{- if and (eq $pool.capacityType "spot") (gt (int $pool.terminationGracePeriodSeconds) 120) }}
{{- fail (printf "tier %s runs on Spot but terminationGracePeriodSeconds is %v: a Spot interruption notice gives 120 s, so keep it <= 120 (or use capacityType on-demand)" $name $pool.terminationGracePeriodSeconds) }}
{{- end }}
{{- range $field := list "tiers" "spill_over" "drain_grace_seconds" "http_port" "checkpoint_on_preempt" "checkpoint_interval_seconds" "checkpoint_min_job_seconds" }}
{{- if hasKey (default dict $pool.extraConfig) $field }}
{{- fail (printf "tiers.%s: extraConfig.%s is set by the chart (docs/helm.md lists the value that sets it)" $name $field) }}
{{- end }}
{{- end }}
{{- if and $.Values.keda.enabled (gt (int $pool.keda.minReplicas) (int $pool.keda.maxReplicas)) }}
{{- fail (printf "tier %s: keda.minReplicas (%v) exceeds keda.maxReplicas (%v)" $name $pool.keda.minReplicas $pool.keda.maxReplicas) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (eq .Values.results.backend "s3") (not .Values.results.s3.bucket) }}
{{- fail "results.s3.bucket is required when results.backend is s3" }}
{{- end }}
{{- if and .Values.redis.enabled .Values.redis.sentinel.enabled (lt (int .Values.redis.replicas) 2) }}
{{- fail "redis.sentinel.enabled needs redis.replicas >= 2 (a primary and at least one replica to promote)" }}
{{- end }}
{{- if and .Values.redis.enabled (not .Values.redis.sentinel.enabled) (gt (int .Values.redis.replicas) 1) }}
{{- fail "redis.replicas > 1 needs redis.sentinel.enabled (replicas are only useful with Sentinel to promote them)" }}
{{- end }}
{{- if and .Values.redis.enabled .Values.redis.sentinel.enabled (gt (int .Values.redis.sentinel.quorum) (int .Values.redis.sentinel.replicas)) }}
{{- fail "redis.sentinel.quorum exceeds redis.sentinel.replicas: no failover could ever be agreed" }}
{{- end }}
{{- if and (not .Values.redis.enabled) .Values.externalRedis.url (regexMatch "^rediss?://[^/]*@" .Values.externalRedis.url) }}
{{- fail "externalRedis.url must not contain credentials: put the password in externalRedis.existingSecret" }}
{{- end }}
{{- end }}
