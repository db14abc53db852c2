{{/*
Egress rules of the component NetworkPolicies, one helper per destination (docs/security.md).
Each renders a list of NetworkPolicyEgressRules; the caller indents it under `egress:`.
*/}}

{{/* The cluster DNS. */}}
{{- define "genjob.egress.dns" -}}
- to:
    {{- toYaml .Values.networkPolicy.egress.dnsTo | nindent 4 }}
  ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
{{- end }}

{{/* Redis: the bundled pods (and sentinels), or the external server and its sentinels. */}}
{{- define "genjob.egress.redis" -}}
{{- if .Values.redis.enabled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "genjob.selectorLabels" (dict "ctx" . "component" "redis") | nindent 10 }}
  ports:
    - {port: 6379, protocol: TCP}
{{- if include "genjob.redis.sentinelBundled" . }}
- to:
    - podSelector:
        matchLabels:
          {{- include "genjob.selectorLabels" (dict "ctx" . "component" "redis-sentinel") | nindent 10 }}
  ports:
    - {port: 26379, protocol: TCP}
{{- end }}
{{- else }}
- {{- with .Values.networkPolicy.egress.externalRedisTo }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    - {port: {{ (urlParse .Values.externalRedis.url).host | splitList ":" | rest | first | default "6379" }}, protocol: TCP}
    {{- range .Values.externalRedis.sentinels }}
    - {port: {{ splitList ":" . | last }}, protocol: TCP}
    {{- end }}
{{- end }}
{{- end }}

{{/* The Kubernetes API server's endpoints. */}}
{{- define "genjob.egress.apiServer" -}}
- to:
    {{- range .Values.networkPolicy.egress.apiServerCIDRs }}
    - ipBlock: {cidr: {{ . }}}
    {{- else }}
    - ipBlock: {cidr: 0.0.0.0/0, except: [169.254.0.0/16]}
    - ipBlock: {cidr: "::/0", except: ["fe80::/10", "fd00:ec2::254/128"]}
    {{- end }}
  ports:
    {{- range .Values.networkPolicy.egress.apiServerPorts }}
    - {port: {{ . }}, protocol: TCP}
    {{- end }}
{{- end }}

{{/* HTTPS to the public internet (a worker's init images, model downloads). */}}
{{- define "genjob.egress.publicHttps" -}}
- to:
    {{- toYaml .Values.networkPolicy.egress.publicTo | nindent 4 }}
  ports:
    - {port: 443, protocol: TCP}
{{- end }}

{{/* The S3 result store (nothing for the filesystem backend: a volume, no network). */}}
{{- define "genjob.egress.resultStore" -}}
{{- if eq .Values.results.backend "s3" }}
{{- $endpoint := urlParse (default "https://s3.amazonaws.com" .Values.results.s3.endpointUrl) }}
{{- $port := $endpoint.host | splitList ":" | rest | first | default (ternary "80" "443" (eq $endpoint.scheme "http")) }}
- to:
    {{- toYaml (default .Values.networkPolicy.egress.publicTo .Values.networkPolicy.egress.resultStoreTo) | nindent 4 }}
  ports:
    - {port: {{ $port }}, protocol: TCP}
{{- end }}
{{- end }}

{{/* Whether workers need HTTPS to the internet: "true" or empty. */}}
{{- define "genjob.egress.workerHttps" -}}
{{- $egress := .Values.networkPolicy.egress }}
{{- if or $egress.workerHttps (eq .Values.models.source "init") .Values.worker.extraConfig.init_image_url_allowlist }}true{{ end }}
{{- end }}
