{{/* The chart's name, or nameOverride. */}}
{{- define "integro.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's resource name prefix (fullnameOverride, or release-chart). */}}
{{- define "integro.fullname" -}}
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

{{- define "integro.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "integro.selectorLabels" -}}
app.kubernetes.io/name: {{ include "integro.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "integro.labels" -}}
helm.sh/chart: {{ include "integro.chart" . }}
{{ include "integro.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: integro
{{- end }}

{{/* Is this the SQLite shape (one pod, no worker Deployment)? "true" or "". */}}
{{- define "integro.sqlite" -}}
{{- if eq .Values.database.kind "sqlite" }}true{{ end }}
{{- end }}

{{/*
Refuses values that cannot work. Included by the web Deployment, which every
shape renders.
*/}}
{{- define "integro.validate" -}}
{{- $kind := .Values.database.kind }}
{{- if not (has $kind (list "postgres" "sqlite")) }}
{{- fail (printf "database.kind must be postgres or sqlite, not %v" $kind) }}
{{- end }}
{{- if eq $kind "sqlite" }}
{{- if gt (int .Values.web.replicas) 1 }}
{{- fail (printf "database.kind=sqlite has one writer: web.replicas must be 1, not %v (use PostgreSQL to scale out)" .Values.web.replicas) }}
{{- end }}
{{- if gt (int .Values.worker.replicas) 0 }}
{{- fail (printf "database.kind=sqlite runs the jobs in the web pod: worker.replicas must be 0, not %v (use PostgreSQL for worker pods)" .Values.worker.replicas) }}
{{- end }}
{{- if or .Values.web.autoscaling.enabled .Values.worker.autoscaling.enabled }}
{{- fail "database.kind=sqlite cannot autoscale: set web.autoscaling.enabled and worker.autoscaling.enabled to false (use PostgreSQL to scale out)" }}
{{- end }}
{{- end }}
{{- if and (eq $kind "postgres") (lt (int .Values.worker.replicas) 1) (not .Values.worker.autoscaling.enabled) }}
{{- fail "database.kind=postgres runs the jobs in the worker Deployment and the web pods run none: worker.replicas must be at least 1" }}
{{- end }}
{{- if not .Values.existingSecret }}
{{- if not .Values.secret.masterKey }}
{{- fail "set existingSecret (a Secret with the master key and database URL) or secret.masterKey (base64 of 32 random bytes: openssl rand -base64 32)" }}
{{- end }}
{{- if ne (len (b64dec .Values.secret.masterKey)) 32 }}
{{- fail "secret.masterKey must be base64 of 32 bytes (openssl rand -base64 32)" }}
{{- end }}
{{- if and (eq $kind "postgres") (not .Values.secret.databaseUrl) }}
{{- fail "database.kind=postgres needs the database URL: set existingSecret or secret.databaseUrl (postgres://user:password@host:5432/db)" }}
{{- end }}
{{- end }}
{{- if and (eq $kind "postgres") .Values.secret.databaseUrl (not (hasPrefix "postgres" .Values.secret.databaseUrl)) }}
{{- fail "secret.databaseUrl must be a postgres:// or postgresql:// URL with database.kind=postgres" }}
{{- end }}
{{- end }}

{{- define "integro.secretName" -}}
{{- default (printf "%s-secrets" (include "integro.fullname" .)) .Values.existingSecret }}
{{- end }}

{{- define "integro.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* terminationGracePeriodSeconds: the value, or the job lease + 15 s. */}}
{{- define "integro.gracePeriod" -}}
{{- if .Values.terminationGracePeriodSeconds }}
{{- int .Values.terminationGracePeriodSeconds }}
{{- else }}
{{- add (int .Values.jobLeaseSecs) 15 }}
{{- end }}
{{- end }}

{{/* The database URL's EnvVar (PostgreSQL; SQLite uses the data directory). */}}
{{- define "integro.databaseUrlEnv" -}}
- name: INTEGRO_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "integro.secretName" . }}
      key: {{ .Values.secretKeys.databaseUrl }}
{{- end }}

{{/* EnvVars every long-running Integro container has. */}}
{{- define "integro.env" -}}
- name: INTEGRO_DATA_DIR
  value: /data
- name: INTEGRO_AUTO_MIGRATE
  value: "false"
- name: INTEGRO_JOB_LEASE_SECS
  value: {{ .Values.jobLeaseSecs | int | quote }}
- name: INTEGRO_MASTER_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "integro.secretName" . }}
      key: {{ .Values.secretKeys.masterKey }}
{{- if not (include "integro.sqlite" .) }}
{{ include "integro.databaseUrlEnv" . }}
{{- end }}
{{- with .Values.publicUrl }}
- name: INTEGRO_PUBLIC_URL
  value: {{ . | quote }}
{{- end }}
{{- range $name, $value := .Values.env }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Pod-level settings shared by every Integro pod. */}}
{{- define "integro.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/*
A pod's annotations: the chart-made Secret's checksum (a new key rolls the
pods), Prometheus' scrape annotations for /metrics on .port, and .extra.
*/}}
{{- define "integro.podAnnotations" -}}
{{- $root := .root }}
{{- if not $root.Values.existingSecret }}
checksum/secret: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
{{- end }}
{{- if $root.Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with .extra }}
{{ toYaml . }}
{{- end }}
{{- end }}
