{{/*
Names, labels, and the values every template derives from: the checks that refuse a
deployment which would break lockgate's promises, the lockgate.yaml the ConfigMap holds, and
the Secret's variables.
*/}}

{{- define "lockgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "lockgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "lockgate.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "lockgate.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object; selectorLabels with a component pick one set of pods. */}}
{{- define "lockgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "lockgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* (dict "ctx" $ "component" "gateway") */}}
{{- define "lockgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lockgate.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "lockgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "lockgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "lockgate.secretName" -}}
{{- default (include "lockgate.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "lockgate.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
Refusals, rendered (as nothing) by every template that depends on them, so that `helm
install` stops before anything is created. Several pods without shared PostgreSQL and Redis
would each count limits and budgets on their own, and SQLite cannot be shared at all.
*/}}
{{- define "lockgate.validate" -}}
{{- /* Types, enums and misspelt keys are values.schema.json's to refuse, before this runs. */ -}}
{{- $storage := .Values.storage.mode -}}
{{- $redis := .Values.redis.mode -}}
{{- if or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) -}}
{{- if eq $storage "sqlite" -}}
{{- fail "more than one pod (replicaCount > 1 or autoscaling) needs shared storage: set storage.mode to bundled or external (PostgreSQL); SQLite is one pod's file" -}}
{{- end -}}
{{- if eq $redis "none" -}}
{{- fail "more than one pod (replicaCount > 1 or autoscaling) needs Redis: set redis.mode to bundled or external, or each pod would enforce limits and budgets on its own" -}}
{{- end -}}
{{- end -}}
{{- if and (eq $storage "external") (not .Values.secrets.existingSecret) (not .Values.storage.url) -}}
{{- fail "storage.mode external needs storage.url (postgresql://user:password@host:5432/db), or secrets.existingSecret holding LOCKGATE_STORAGE_URL" -}}
{{- end -}}
{{- if and (eq $redis "external") (not .Values.secrets.existingSecret) (not .Values.redis.url) -}}
{{- fail "redis.mode external needs redis.url (redis://:password@host:6379/0), or secrets.existingSecret holding LOCKGATE_REDIS_URL" -}}
{{- end -}}
{{- if and (not .Values.secrets.existingSecret) (not .Values.secrets.masterKey) -}}
{{- fail "set secrets.masterKey (the gateway's master key; at least 8 characters), or secrets.existingSecret holding LOCKGATE_MASTER_KEY" -}}
{{- end -}}
{{- $config := .Values.config | default dict -}}
{{- range $key := list "storage" "redis" -}}
{{- if hasKey $config $key -}}
{{- fail (printf "config.%s is set by the chart: use %s.mode (and %s.url) instead" $key $key $key) -}}
{{- end -}}
{{- end -}}
{{- $server := $config.server | default dict -}}
{{- range $key := list "master_key" "spill_dir" -}}
{{- if hasKey $server $key -}}
{{- fail (printf "config.server.%s is set by the chart (secrets.masterKey; the spill folder is on the pod's data volume)" $key) -}}
{{- end -}}
{{- end -}}
{{- if and $server.metrics_auth .Values.metrics.podAnnotations -}}
{{- fail "config.server.metrics_auth closes /metrics to the prometheus.io/scrape annotations (they cannot send the key): set metrics.podAnnotations false and use metrics.serviceMonitor" -}}
{{- end -}}
{{- range $name, $_ := .Values.secrets.env -}}
{{- if not (regexMatch "^[A-Za-z_][A-Za-z0-9_]*$" $name) -}}
{{- fail (printf "secrets.env: %q is not an environment variable name" $name) -}}
{{- end -}}
{{- if has $name (list "LOCKGATE_MASTER_KEY" "LOCKGATE_STORAGE_URL" "LOCKGATE_REDIS_URL" "POSTGRES_PASSWORD" "REDIS_PASSWORD") -}}
{{- fail (printf "secrets.env: %s is set by the chart" $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Whole seconds of the drain: config.server.drain_s (lockgate's default, 20, when unset). */}}
{{- define "lockgate.drainSeconds" -}}
{{- $server := .Values.config.server | default dict -}}
{{- if and (hasKey $server "drain_s") (not (kindIs "invalid" $server.drain_s)) -}}
{{- $server.drain_s | float64 | ceil | int -}}
{{- else -}}
20
{{- end -}}
{{- end -}}

{{/* preStop sleep + drain + margin: Kubernetes kills the pod only after lockgate's drain. */}}
{{- define "lockgate.gracePeriodSeconds" -}}
{{- add (int .Values.lifecycle.preStopSleepSeconds) (int (include "lockgate.drainSeconds" .)) (int .Values.lifecycle.exitMarginSeconds) -}}
{{- end -}}

{{- define "lockgate.postgresqlHost" -}}
{{- printf "%s-postgresql" (include "lockgate.fullname" .) -}}
{{- end -}}

{{- define "lockgate.redisHost" -}}
{{- printf "%s-redis" (include "lockgate.fullname" .) -}}
{{- end -}}

{{/* The config's storage URL: passwords stay "${NAME}" references, filled from the Secret. */}}
{{- define "lockgate.storageUrl" -}}
{{- if eq .Values.storage.mode "sqlite" -}}
sqlite:////var/lib/lockgate/lockgate.db
{{- else if eq .Values.storage.mode "bundled" -}}
{{- $pg := .Values.bundledPostgresql -}}
{{- printf "postgresql://%s:${POSTGRES_PASSWORD}@%s:5432/%s" $pg.username (include "lockgate.postgresqlHost" .) $pg.database -}}
{{- else -}}
${LOCKGATE_STORAGE_URL}
{{- end -}}
{{- end -}}

{{- define "lockgate.redisUrl" -}}
{{- if eq .Values.redis.mode "bundled" -}}
{{- printf "redis://:${REDIS_PASSWORD}@%s:6379/0" (include "lockgate.redisHost" .) -}}
{{- else if eq .Values.redis.mode "external" -}}
${LOCKGATE_REDIS_URL}
{{- end -}}
{{- end -}}

{{/* lockgate.yaml: the values' config with what the chart owns filled in. */}}
{{- define "lockgate.configYaml" -}}
{{- $config := deepCopy (.Values.config | default dict) -}}
{{- $server := deepCopy ($config.server | default dict) -}}
{{- $_ := set $server "master_key" "${LOCKGATE_MASTER_KEY}" -}}
{{- $_ := set $server "spill_dir" "/var/lib/lockgate/spill" -}}
{{- $_ := set $config "server" $server -}}
{{- $_ := set $config "storage" (include "lockgate.storageUrl" .) -}}
{{- if ne .Values.redis.mode "none" -}}
{{- $_ := set $config "redis" (include "lockgate.redisUrl" .) -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/*
A password of a bundled service: the value given, else the one the release's Secret already
holds (so an upgrade keeps it), else a new random one. (dict "ctx" $ "key" "POSTGRES_PASSWORD"
"given" "...")
*/}}
{{- define "lockgate.password" -}}
{{- if .given -}}
{{- .given -}}
{{- else -}}
{{- $secret := lookup "v1" "Secret" .ctx.Release.Namespace (include "lockgate.fullname" .ctx) -}}
{{- if and $secret (hasKey ($secret.data | default dict) .key) -}}
{{- index $secret.data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum 32 -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Restricted-profile security context shared by every container of the chart. */}}
{{- define "lockgate.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}
