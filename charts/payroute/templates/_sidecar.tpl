{{/*
Sidecar injection: named templates that another chart includes into its own pod spec.

Add this chart as a dependency named `payroute` (see README.md, "Inject into your own chart"),
then, in your pod template, with the root context `.`:

  metadata:
    labels:
      {{- include "payroute.podLabels" . | nindent 8 }}
    annotations:
      {{- include "payroute.podAnnotations" . | nindent 8 }}
  spec:
    terminationGracePeriodSeconds: {{ include "payroute.terminationGracePeriodSeconds" . }}
    securityContext:
      fsGroup: 65532                # payroute's uid reads the keys and writes the ledger
    initContainers:
      {{- include "payroute.sidecar.initContainers" . | nindent 6 }}   # native mode
    containers:
      - name: my-app
        ...
      {{- include "payroute.sidecar.containers" . | nindent 6 }}       # classic mode
    volumes:
      {{- include "payroute.sidecar.volumes" . | nindent 6 }}

Each template accepts either the payroute chart's context or a parent chart's root context; in
the latter, payroute's values are those of the `payroute` subchart (`.Subcharts.payroute`), so the
ConfigMap, PVC and Service rendered by the subchart and the pod spec agree on names.
*/}}

{{/* payroute's container, as one list item. Mode-aware (restartPolicy / preStop). */}}
{{- define "payroute.sidecar.container" -}}
{{- $c := . }}
{{- if ne .Chart.Name "payroute" }}
{{- $c = index (.Subcharts | default dict) "payroute" | required "payroute.sidecar.container: add the payroute chart as a dependency named payroute (no alias)" }}
{{- end }}
{{- include "payroute.internal.container" $c | trim }}
{{- end }}

{{/* The container in native mode (for initContainers), nothing in classic mode. */}}
{{- define "payroute.sidecar.initContainers" -}}
{{- $c := . }}
{{- if ne .Chart.Name "payroute" }}
{{- $c = index (.Subcharts | default dict) "payroute" | required "payroute.sidecar.initContainers: add the payroute chart as a dependency named payroute (no alias)" }}
{{- end }}
{{- if eq $c.Values.sidecar.mode "native" }}
{{- include "payroute.internal.container" $c | trim }}
{{- end }}
{{- end }}

{{/* The container in classic mode (for containers), nothing in native mode. */}}
{{- define "payroute.sidecar.containers" -}}
{{- $c := . }}
{{- if ne .Chart.Name "payroute" }}
{{- $c = index (.Subcharts | default dict) "payroute" | required "payroute.sidecar.containers: add the payroute chart as a dependency named payroute (no alias)" }}
{{- end }}
{{- if eq $c.Values.sidecar.mode "classic" }}
{{- include "payroute.internal.container" $c | trim }}
{{- end }}
{{- end }}

{{/* payroute's volumes (rules, keys, ledger, tmp), as list items. */}}
{{- define "payroute.sidecar.volumes" -}}
{{- $c := . }}
{{- if ne .Chart.Name "payroute" }}
{{- $c = index (.Subcharts | default dict) "payroute" | required "payroute.sidecar.volumes: add the payroute chart as a dependency named payroute (no alias)" }}
{{- end }}
{{- include "payroute.internal.volumes" $c | trim }}
{{- end }}

{{/* Pod annotations for Prometheus scraping of the admin port (map entries; may be empty). */}}
{{- define "payroute.podAnnotations" -}}
{{- $c := . }}
{{- if ne .Chart.Name "payroute" }}
{{- $c = index (.Subcharts | default dict) "payroute" | required "payroute.podAnnotations: add the payroute chart as a dependency named payroute (no alias)" }}
{{- end }}
{{- if $c.Values.metrics.podAnnotations -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ $c.Values.ports.admin | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}

{{/* The pod label that the notify Service and the PodMonitor select. */}}
{{- define "payroute.podLabels" -}}
{{- $c := . }}
{{- if ne .Chart.Name "payroute" }}
{{- $c = index (.Subcharts | default dict) "payroute" | required "payroute.podLabels: add the payroute chart as a dependency named payroute (no alias)" }}
{{- end -}}
{{ include "payroute.sidecarLabelKey" $c }}: {{ include "payroute.fullname" $c | quote }}
{{- end }}

{{/* terminationGracePeriodSeconds for the pod: app drain + payroute's shutdown grace + 5. */}}
{{- define "payroute.terminationGracePeriodSeconds" -}}
{{- $c := . }}
{{- if ne .Chart.Name "payroute" }}
{{- $c = index (.Subcharts | default dict) "payroute" | required "payroute.terminationGracePeriodSeconds: add the payroute chart as a dependency named payroute (no alias)" }}
{{- end }}
{{- include "payroute.internal.terminationGracePeriodSeconds" $c }}
{{- end }}

{{- define "payroute.internal.container" -}}
{{- include "payroute.internal.validate" . }}
{{- $v := .Values }}
- name: {{ $v.sidecar.name }}
  image: {{ include "payroute.image" . | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  {{- if eq $v.sidecar.mode "native" }}
  # A native sidecar: started (startup probe passed) before the app's containers, stopped after them.
  restartPolicy: Always
  {{- end }}
  command:
    - /usr/local/bin/payroute
  args:
    - serve
    - --config
    - {{ include "payroute.rulesDir" . }}/routes.yaml
    {{- if $v.ledger.postgres.enabled }}
    - --ledger-max-connections
    - {{ $v.ledger.postgres.maxConnections | int | quote }}
    {{- if $v.ledger.postgres.password.existingSecret }}
    - --ledger-password-file
    - {{ include "payroute.ledgerPasswordFile" . }}
    {{- end }}
    {{- if include "payroute.ledgerCaSource" . }}
    - --ledger-ca-file
    - {{ include "payroute.ledgerCaFile" . }}
    {{- end }}
    {{- end }}
  env:
    - name: PAYROUTE_API_LISTEN
      value: "127.0.0.1:{{ $v.ports.api }}"
    - name: PAYROUTE_NOTIFY_LISTEN
      value: "0.0.0.0:{{ $v.ports.notify }}"
    - name: PAYROUTE_ADMIN_LISTEN
      value: "0.0.0.0:{{ $v.ports.admin }}"
    - name: PAYROUTE_DATA_DIR
      value: {{ $v.ledger.mountPath | quote }}
    {{- if $v.ledger.postgres.enabled }}
    # The PostgreSQL ledger shared by every replica; the URL stays in its Secret.
    - name: PAYROUTE_LEDGER_URL
      valueFrom:
        secretKeyRef:
          name: {{ $v.ledger.postgres.existingSecret }}
          key: {{ $v.ledger.postgres.key }}
    {{- end }}
    {{- with include "payroute.replicas" . }}
    - name: PAYROUTE_REPLICAS
      value: {{ . | quote }}
    {{- end }}
    {{- if $v.rateLimits.redis.enabled }}
    # Every replica enforces each channel's whole rate limit together through this Redis.
    - name: PAYROUTE_REDIS_URL
      valueFrom:
        secretKeyRef:
          name: {{ $v.rateLimits.redis.existingSecret }}
          key: {{ $v.rateLimits.redis.key }}
    {{- with $v.rateLimits.redis.keyPrefix }}
    - name: PAYROUTE_REDIS_KEY_PREFIX
      value: {{ . | quote }}
    {{- end }}
    {{- end }}
    - name: PAYROUTE_SHUTDOWN_GRACE_SECS
      value: {{ $v.shutdownGraceSecs | quote }}
    - name: PAYROUTE_LOG
      value: {{ $v.log.level | quote }}
    - name: PAYROUTE_LOG_FORMAT
      value: {{ $v.log.format | quote }}
    {{- with $v.notifyBaseUrl }}
    - name: PAYROUTE_NOTIFY_BASE_URL
      value: {{ . | quote }}
    {{- end }}
    {{- if $v.sandbox }}
    - name: PAYROUTE_SANDBOX
      value: "true"
    {{- end }}
    {{- if $v.events.url }}
    - name: PAYROUTE_EVENTS_URL
      value: {{ $v.events.url | quote }}
    - name: PAYROUTE_EVENTS_SECRET_FILE
      value: {{ printf "%s/%s" $v.events.secret.mountPath $v.events.secret.key | quote }}
    {{- end }}
    {{- with $v.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $v.extraEnvFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    - name: payroute-notify
      containerPort: {{ $v.ports.notify }}
      protocol: TCP
    - name: payroute-admin
      containerPort: {{ $v.ports.admin }}
      protocol: TCP
  startupProbe:
    httpGet:
      path: /healthz
      port: {{ $v.ports.admin }}
    {{- toYaml $v.probes.startup | nindent 4 }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: {{ $v.ports.admin }}
    {{- toYaml $v.probes.liveness | nindent 4 }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: {{ $v.ports.admin }}
    {{- toYaml $v.probes.readiness | nindent 4 }}
  {{- if and (eq $v.sidecar.mode "classic") (ne $v.sidecar.preStop.type "none") }}
  # Classic sidecar: all containers get SIGTERM together, so payroute keeps serving while the app
  # drains and only then starts its own shutdown.
  lifecycle:
    preStop:
      {{- if eq $v.sidecar.preStop.type "sleep" }}
      sleep:
        seconds: {{ int $v.sidecar.drainSeconds }}
      {{- else }}
      exec:
        command:
          {{- if $v.sidecar.preStop.command }}
          {{- toYaml $v.sidecar.preStop.command | nindent 10 }}
          {{- else }}
          - /bin/sleep
          - {{ $v.sidecar.drainSeconds | quote }}
          {{- end }}
      {{- end }}
  {{- end }}
  {{- with $v.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $v.securityContext | nindent 4 }}
  terminationMessagePolicy: FallbackToLogsOnError
  volumeMounts:
    # A directory, not a subPath mount (those never see ConfigMap updates): payroute watches
    # the directory for the kubelet's ..data symlink swap.
    - name: payroute-rules
      mountPath: {{ include "payroute.rulesDir" . }}
      readOnly: true
    {{- if $v.keys.existingSecret }}
    - name: payroute-keys
      mountPath: {{ $v.keys.mountPath }}
      readOnly: true
    {{- end }}
    {{- if $v.events.url }}
    # A directory, not a subPath mount: a rotated Secret reaches payroute without a restart.
    - name: payroute-events-secret
      mountPath: {{ $v.events.secret.mountPath }}
      readOnly: true
    {{- end }}
    {{- if and $v.ledger.postgres.enabled $v.ledger.postgres.password.existingSecret }}
    - name: payroute-ledger-password
      mountPath: {{ $v.ledger.postgres.password.mountPath }}
      readOnly: true
    {{- end }}
    {{- if and $v.ledger.postgres.enabled (include "payroute.ledgerCaSource" .) }}
    - name: payroute-ledger-ca
      mountPath: {{ $v.ledger.postgres.ca.mountPath }}
      readOnly: true
    {{- end }}
    - name: payroute-ledger
      mountPath: {{ $v.ledger.mountPath }}
    - name: payroute-tmp
      mountPath: /tmp
{{- end }}

{{- define "payroute.internal.volumes" -}}
{{- $v := .Values }}
- name: payroute-rules
  configMap:
    name: {{ include "payroute.rulesConfigMapName" . }}
{{- if $v.keys.existingSecret }}
- name: payroute-keys
  secret:
    secretName: {{ $v.keys.existingSecret }}
    defaultMode: {{ int $v.keys.defaultMode }}
{{- end }}
{{- if $v.events.url }}
- name: payroute-events-secret
  secret:
    secretName: {{ $v.events.secret.existingSecret }}
    defaultMode: {{ int $v.events.secret.defaultMode }}
{{- end }}
{{- $pg := $v.ledger.postgres }}
{{- if and $pg.enabled $pg.password.existingSecret }}
- name: payroute-ledger-password
  secret:
    secretName: {{ $pg.password.existingSecret }}
    defaultMode: {{ int $pg.password.defaultMode }}
    items:
      - key: {{ $pg.password.key }}
        path: {{ $pg.password.key }}
{{- end }}
{{- if and $pg.enabled (include "payroute.ledgerCaSource" .) }}
- name: payroute-ledger-ca
  {{- if $pg.ca.existingSecret }}
  secret:
    secretName: {{ $pg.ca.existingSecret }}
  {{- else }}
  configMap:
    name: {{ $pg.ca.existingConfigMap }}
  {{- end }}
    defaultMode: {{ int $pg.ca.defaultMode }}
    items:
      - key: {{ $pg.ca.key }}
        path: {{ $pg.ca.key }}
{{- end }}
{{- if $pg.enabled }}
# The orders are in PostgreSQL: this directory only keeps downloaded statements and
# reconciliation reports.
{{- end }}
- name: payroute-ledger
  {{- if $v.ledger.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ include "payroute.ledgerClaimName" . }}
  {{- else if $v.ledger.emptyDir.sizeLimit }}
  emptyDir:
    sizeLimit: {{ $v.ledger.emptyDir.sizeLimit }}
  {{- else }}
  emptyDir: {}
  {{- end }}
- name: payroute-tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end }}
