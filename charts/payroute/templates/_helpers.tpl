{{/*
Names and labels. These helpers take the payroute chart's own context; the public sidecar
templates in _sidecar.tpl translate a parent chart's context into it first.
*/}}

{{- define "payroute.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "payroute.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "payroute.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object this chart renders. */}}
{{- define "payroute.labels" -}}
helm.sh/chart: {{ include "payroute.chart" . }}
{{ include "payroute.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "payroute.selectorLabels" -}}
app.kubernetes.io/name: {{ include "payroute.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The label that marks pods carrying this release's payroute (Service and PodMonitor select it). */}}
{{- define "payroute.sidecarLabelKey" -}}
payroute/sidecar
{{- end }}

{{- define "payroute.rulesConfigMapName" -}}
{{- .Values.existingConfigMap | default (printf "%s-rules" (include "payroute.fullname" .)) }}
{{- end }}

{{- define "payroute.ledgerClaimName" -}}
{{- .Values.ledger.persistence.existingClaim | default (printf "%s-ledger" (include "payroute.fullname" .)) }}
{{- end }}

{{/* Where the database password file is mounted and read (--ledger-password-file). */}}
{{- define "payroute.ledgerPasswordFile" -}}
{{- $p := .Values.ledger.postgres.password }}
{{- printf "%s/%s" (trimSuffix "/" $p.mountPath) $p.key }}
{{- end }}

{{/* `secret` or `configMap` when the database's CA certificate comes from one; empty otherwise. */}}
{{- define "payroute.ledgerCaSource" -}}
{{- $ca := .Values.ledger.postgres.ca }}
{{- if $ca.existingSecret }}secret{{ else if $ca.existingConfigMap }}configMap{{ end }}
{{- end }}

{{/* Where the CA certificate is mounted and read (--ledger-ca-file). */}}
{{- define "payroute.ledgerCaFile" -}}
{{- $ca := .Values.ledger.postgres.ca }}
{{- printf "%s/%s" (trimSuffix "/" $ca.mountPath) $ca.key }}
{{- end }}

{{/* PAYROUTE_REPLICAS: rateLimits.replicas, else the demo's replicaCount (at least 1); empty
when neither applies (payroute then assumes 1). */}}
{{- define "payroute.replicas" -}}
{{- if .Values.rateLimits.replicas }}
{{- int .Values.rateLimits.replicas }}
{{- else if .Values.demo.enabled }}
{{- max 1 (int .Values.demo.replicaCount) }}
{{- end }}
{{- end }}

{{- define "payroute.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/* Where routes.yaml is mounted (a directory: the kubelet swaps its ..data symlink on updates). */}}
{{- define "payroute.rulesDir" -}}
/etc/payroute/rules
{{- end }}

{{/* Seconds the pod may take to stop: the app drains, then payroute finishes its requests. */}}
{{- define "payroute.internal.terminationGracePeriodSeconds" -}}
{{- $floor := add (int .Values.sidecar.drainSeconds) (int .Values.shutdownGraceSecs) }}
{{- if .Values.sidecar.terminationGracePeriodSeconds }}
{{- $set := int .Values.sidecar.terminationGracePeriodSeconds }}
{{- if le $set $floor }}
{{- fail (printf "sidecar.terminationGracePeriodSeconds (%d) must be larger than sidecar.drainSeconds + shutdownGraceSecs (%d)" $set $floor) }}
{{- end }}
{{- $set }}
{{- else }}
{{- add $floor 5 }}
{{- end }}
{{- end }}

{{/* Checks of value combinations that would otherwise fail later, less clearly. */}}
{{- define "payroute.internal.validate" -}}
{{- $mode := .Values.sidecar.mode }}
{{- if not (has $mode (list "native" "classic")) }}
{{- fail (printf "sidecar.mode must be native or classic, not %q" $mode) }}
{{- end }}
{{- if and (eq $mode "native") (semverCompare "<1.29-0" .Capabilities.KubeVersion.Version) }}
{{- fail (printf "sidecar.mode=native needs Kubernetes >= 1.29 (native sidecars); this is %s: use sidecar.mode=classic" .Capabilities.KubeVersion.Version) }}
{{- end }}
{{- if not (has .Values.sidecar.preStop.type (list "sleep" "exec" "none")) }}
{{- fail (printf "sidecar.preStop.type must be sleep, exec or none, not %q" .Values.sidecar.preStop.type) }}
{{- end }}
{{- if and (eq $mode "classic") (eq .Values.sidecar.preStop.type "sleep") (semverCompare "<1.29-0" .Capabilities.KubeVersion.Version) }}
{{- fail (printf "the sleep preStop handler needs Kubernetes >= 1.30 (1.29 with the PodLifecycleSleepAction gate); this is %s: set sidecar.preStop.type=exec with an image that has /bin/sleep (the Dockerfile's slim target), or none" .Capabilities.KubeVersion.Version) }}
{{- end }}
{{- if not (has .Values.log.format (list "json" "text")) }}
{{- fail (printf "log.format must be json or text, not %q" .Values.log.format) }}
{{- end }}
{{- if and (not .Values.existingConfigMap) (not .Values.rules) }}
{{- fail "set either rules (inline routes.yaml) or existingConfigMap" }}
{{- end }}
{{- $pg := .Values.ledger.postgres }}
{{- if and $pg.enabled (not $pg.existingSecret) }}
{{- fail "ledger.postgres.enabled needs ledger.postgres.existingSecret: an existing Secret whose key ledger.postgres.key holds the postgres:// URL (the URL is never a plain value)" }}
{{- end }}
{{- if and $pg.ca.existingSecret $pg.ca.existingConfigMap }}
{{- fail "set one of ledger.postgres.ca.existingSecret and ledger.postgres.ca.existingConfigMap, not both" }}
{{- end }}
{{- if and .Values.rateLimits.redis.enabled (not .Values.rateLimits.redis.existingSecret) }}
{{- fail "rateLimits.redis.enabled needs rateLimits.redis.existingSecret: an existing Secret whose key rateLimits.redis.key holds the redis:// URL" }}
{{- end }}
{{- if and .Values.events.url (not .Values.events.secret.existingSecret) }}
{{- fail "events.url needs events.secret.existingSecret: a Secret whose key events.secret.key holds the whsec_ signing secret (payroute refuses to start without one)" }}
{{- end }}
{{- end }}
