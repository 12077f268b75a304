{{/* Where the retriever and ranker run (RECSYS_STAGES): remote (own pods) or embedded. */}}
{{- define "recsys.stages" -}}
{{- default "remote" .Values.stages -}}
{{- end -}}

{{/*
The bentos deployed on their own: all three with remote stages; only recommendation when the
stages are embedded in its process.
*/}}
{{- define "recsys.components" -}}
{{- if eq (include "recsys.stages" .) "embedded" -}}
recommendation
{{- else -}}
retriever ranker recommendation
{{- end -}}
{{- end -}}

{{/* The stage bentos with pods of their own, space-separated (empty when embedded). */}}
{{- define "recsys.remoteStages" -}}
{{- without (splitList " " (include "recsys.components" .)) "recommendation" | join " " -}}
{{- end -}}

{{/*
The component whose pods assemble the served features, so log them for drift (inference log,
reports) and monitor them: the ranker, or recommendation when the ranker is embedded in it.
*/}}
{{- define "recsys.featureMonitor" -}}
{{- if eq (include "recsys.stages" .) "embedded" -}}recommendation{{- else -}}ranker{{- end -}}
{{- end -}}

{{- define "recsys.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "recsys.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of one component's objects: dict "root" $ "component" "ranker". */}}
{{- define "recsys.componentName" -}}
{{- printf "%s-%s" (include "recsys.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "recsys.selectorLabels" -}}
app.kubernetes.io/name: {{ include "recsys.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "recsys.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "recsys.selectorLabels" . }}
app.kubernetes.io/part-of: recsys
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: dict "root" $ "component" "ranker". */}}
{{- define "recsys.componentSelectorLabels" -}}
{{ include "recsys.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "recsys.componentLabels" -}}
{{ include "recsys.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* One component's image, tag defaulting to the chart's appVersion. */}}
{{- define "recsys.image" -}}
{{- $c := index .root.Values .component -}}
{{- printf "%s:%s" $c.image.repository (toString (default .root.Chart.AppVersion $c.image.tag)) -}}
{{- end -}}

{{- define "recsys.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "recsys.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Redis: used at all? (redis mode, from the subchart or an external server) */}}
{{- define "recsys.redis.used" -}}
{{- if eq .Values.featureStore.mode "redis" -}}true{{- end -}}
{{- end -}}

{{/* Name the Bitnami chart gives its objects (common.names.fullname with name "redis"). */}}
{{- define "recsys.redis.fullname" -}}
{{- if .Values.redis.fullnameOverride -}}
{{- .Values.redis.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains "redis" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-redis" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Label on every pod allowed to reach Redis (the NetworkPolicy selects on it). */}}
{{- define "recsys.redis.clientLabel" -}}
{{ printf "%s-redis-client" (include "recsys.fullname" .) | trunc 63 | trimSuffix "-" }}: "true"
{{- end -}}

{{/*
Redis connection env. dict "root" $ "write" bool "role" serving|materialize: writers
(materialization, POST /events) go to the master, serving reads to the replicas when
featureStore.readFromReplicas. Names are Settings' own: REDIS_URL or REDIS_HOST/REDIS_PORT, and
REDIS_USERNAME/REDIS_PASSWORD of the role's least-privilege user (recsys.redis.credentials).
*/}}
{{- define "recsys.redis.env" -}}
{{- $v := .root.Values -}}
{{- if include "recsys.redis.used" .root }}
{{- if $v.redis.enabled }}
{{- if $v.redis.sentinel.enabled }}
{{- fail "redis.sentinel.enabled: the services' Redis client is not sentinel-aware; use architecture=replication without sentinel" }}
{{- end }}
{{- $host := printf "%s-master" (include "recsys.redis.fullname" .root) -}}
{{- if and (not .write) $v.featureStore.readFromReplicas }}
{{- if ne $v.redis.architecture "replication" }}
{{- fail "featureStore.readFromReplicas needs redis.architecture=replication" }}
{{- end }}
{{- $host = printf "%s-replicas" (include "recsys.redis.fullname" .root) -}}
{{- end }}
- name: REDIS_HOST
  value: {{ $host | quote }}
- name: REDIS_PORT
  value: "6379"
{{- else }}
{{- if $v.externalRedis.url }}
- name: REDIS_URL
  value: {{ $v.externalRedis.url | quote }}
{{- else if $v.externalRedis.host }}
- name: REDIS_HOST
  value: {{ $v.externalRedis.host | quote }}
- name: REDIS_PORT
  value: {{ $v.externalRedis.port | toString | quote }}
{{- else }}
{{- fail "featureStore.mode=redis with redis.enabled=false needs externalRedis.url or externalRedis.host" }}
{{- end }}
{{- end }}
{{- include "recsys.redis.credentials" . }}
{{- end }}
{{- end -}}

{{/* Settings env rendered inline (for hook pods that run before the ConfigMap exists). */}}
{{- define "recsys.configEnv" -}}
{{- range $key, $value := .Values.config }}
- name: {{ $key }}
  value: {{ $value | toString | quote }}
{{- end }}
- name: FEATURE_STORE_MODE
  value: {{ .Values.featureStore.mode | quote }}
{{- end -}}

{{/* Env every bento container needs for a read-only root filesystem. */}}
{{- define "recsys.bentoEnv" -}}
- name: BENTOML_HOME
  value: {{ .Values.bento.home | quote }}
- name: XDG_CACHE_HOME
  value: /tmp/cache
- name: MPLCONFIGDIR
  value: /tmp/matplotlib
{{- end -}}

{{/*
Env and mounts for CLI pods (jobs) that read models from the bento: BENTOML_HOME is the bento
itself, whose models/ dir is the model store; BentoML creates bentos/, envs/ and tmp/ beside it,
so those are emptyDirs on the otherwise read-only filesystem.
*/}}
{{- define "recsys.cliEnv" -}}
- name: BENTOML_HOME
  value: {{ .Values.bento.path | quote }}
- name: XDG_CACHE_HOME
  value: /tmp/cache
- name: MPLCONFIGDIR
  value: /tmp/matplotlib
{{- end -}}

{{- define "recsys.cliVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: bentoml-scratch
  mountPath: {{ printf "%s/bentos" .Values.bento.path }}
  subPath: bentos
- name: bentoml-scratch
  mountPath: {{ printf "%s/envs" .Values.bento.path }}
  subPath: envs
- name: bentoml-scratch
  mountPath: {{ printf "%s/tmp" .Values.bento.path }}
  subPath: tmp
{{- end -}}

{{- define "recsys.cliVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.bento.tmpSizeLimit }}
- name: bentoml-scratch
  emptyDir:
    sizeLimit: {{ .Values.bento.tmpSizeLimit }}
{{- end -}}

{{- define "recsys.inferenceLogClaim" -}}
{{- default (printf "%s-inference-log" (include "recsys.fullname" .)) .Values.drift.inferenceLog.existingClaim -}}
{{- end -}}

{{- define "recsys.reportsClaim" -}}
{{- default (printf "%s-drift-reports" (include "recsys.fullname" .)) .Values.drift.reports.existingClaim -}}
{{- end -}}

{{/*
Env of the recommendation container: the placement in force and, with remote stages, where
they are. dict "root" $ "component" "recommendation"; empty for the other components.
*/}}
{{- define "recsys.stagesEnv" -}}
{{- if eq .component "recommendation" }}
- name: RECSYS_STAGES
  value: {{ include "recsys.stages" .root | quote }}
{{- range $stage := splitList " " (include "recsys.remoteStages" .root) | compact }}
- name: {{ printf "RECSYS_%s_URL" (upper $stage) }}
  value: {{ include "recsys.componentUrl" (dict "root" $.root "component" $stage) | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* In-cluster URL of a bento: its Service, or the KServe predictor when kserve.enabled. */}}
{{- define "recsys.componentUrl" -}}
{{- $name := include "recsys.componentName" . -}}
{{- if .root.Values.kserve.enabled -}}
{{- printf "http://%s-predictor.%s.svc" $name .root.Release.Namespace -}}
{{- else -}}
{{- $c := index .root.Values .component -}}
{{- printf "http://%s.%s.svc:%v" $name .root.Release.Namespace $c.service.port -}}
{{- end -}}
{{- end -}}

{{/* Pod-level spec shared by every pod of the chart. */}}
{{- define "recsys.podCommon" -}}
serviceAccountName: {{ include "recsys.serviceAccountName" . }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
