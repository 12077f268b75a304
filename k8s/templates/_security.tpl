{{/*
Security helpers (issue 18): API keys of the recommendation pods, least-privilege Redis users.
*/}}

{{/* The Secret holding the API keys file (key `keys`): auth.existingSecret or the generated one. */}}
{{- define "recsys.apiKeys.secretName" -}}
{{- default (printf "%s-api-keys" (include "recsys.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{- define "recsys.apiKeys.dir" -}}/etc/recsys/api-keys{{- end -}}

{{/* Scope names of values auth.rateLimits -> the RECSYS_AUTH__<SCOPE>__* env names. */}}
{{- define "recsys.apiKeys.scopeEnv" -}}
recommend: RECOMMEND
events: EVENTS
admin: ADMIN
driftCheck: DRIFT_CHECK
{{- end -}}

{{/*
Env of the recommendation container (the public entry, the only pods that check API keys);
empty for the other components. dict "root" $ "component" "recommendation".
*/}}
{{- define "recsys.auth.env" -}}
{{- if eq .component "recommendation" }}
{{- $auth := .root.Values.auth }}
- name: RECSYS_AUTH__ENABLED
  value: {{ $auth.enabled | toString | quote }}
{{- if $auth.enabled }}
- name: RECSYS_AUTH__KEYS_FILE
  value: {{ printf "%s/keys" (include "recsys.apiKeys.dir" .root) | quote }}
{{- end }}
{{- $scopes := include "recsys.apiKeys.scopeEnv" .root | fromYaml }}
{{- range $scope, $limit := $auth.rateLimits }}
{{- with $limit }}
- name: {{ printf "RECSYS_AUTH__%s__PER_SECOND" (index $scopes $scope) }}
  value: {{ .perSecond | toString | quote }}
- name: {{ printf "RECSYS_AUTH__%s__BURST" (index $scopes $scope) }}
  value: {{ .burst | toString | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Read-only mount of the keys file (only the `keys` item, never the keys themselves). */}}
{{- define "recsys.auth.volumeMount" -}}
{{- if and (eq .component "recommendation") .root.Values.auth.enabled }}
- name: api-keys
  mountPath: {{ include "recsys.apiKeys.dir" .root }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* The Secret volume: a directory mount (not subPath), so a Secret update reaches the file. */}}
{{- define "recsys.auth.volume" -}}
{{- if and (eq .component "recommendation") .root.Values.auth.enabled }}
- name: api-keys
  secret:
    secretName: {{ include "recsys.apiKeys.secretName" .root }}
    items:
      - key: keys
        path: keys
    defaultMode: 0440
{{- end }}
{{- end -}}

{{/*
The bundled Redis' credentials Secret: redisAcl.existingSecret or `<release>-redis-users` (named
from the release only: the Bitnami chart resolves `redis.auth.existingSecret` with tpl in its own
context, where this chart's fullname helpers do not apply).
*/}}
{{- define "recsys.redisUsers.secretName" -}}
{{- default (printf "%s-redis-users" .Release.Name) .Values.redisAcl.existingSecret -}}
{{- end -}}

{{/*
The ACL rules of each role: a copy of feature_store/acl.py's `acl_rules(role)`, which
tests/unit/k8s keep equal (`recsys redis acl --role ROLE` prints them).
*/}}
{{- define "recsys.redisAcl.rules" -}}
serving: "resetkeys ~rs:v1:* resetchannels -@all +get +mget +lrange +watch +multi +exec +unwatch +set +rpush +xadd +evalsha +script|load +hmget +hset +pexpire"
materialize: "resetkeys ~rs:v1:* resetchannels -@all +mset +mget +set +scan +unlink +get +xrange"
{{- end -}}

{{/*
The ACL file the bundled Redis loads (`--aclfile`). dict "root" $ "admin" "serving"
"materialize" (passwords). An ACL file defines every user: without a `default` line Redis
would create that user with nopass, so the admin line (the Redis password) is always there.
*/}}
{{- define "recsys.redisAcl.file" -}}
{{- $v := .root.Values -}}
{{- $rules := include "recsys.redisAcl.rules" .root | fromYaml -}}
user default on {{ if $v.redis.auth.enabled }}#{{ sha256sum .admin }}{{ else }}nopass{{ end }} ~* &* +@all
{{- if $v.redisAcl.enabled }}
{{- range $role := list "serving" "materialize" }}
user {{ index $v.redisAcl.users $role }} on #{{ sha256sum (index $ $role) }} {{ index $rules $role }}
{{- end }}
{{- end }}
{{ end -}}

{{/*
One generated secret value: `given` when set, else the value the live Secret already holds
(helm upgrade keeps it), else a new random one. dict "old" <data of the live Secret> "key" K
"given" V "prefix" P "length" N.
*/}}
{{- define "recsys.secretValue" -}}
{{- if .given -}}
{{- .given -}}
{{- else if hasKey .old .key -}}
{{- index .old .key | b64dec -}}
{{- else -}}
{{- printf "%s%s" (default "" .prefix) (randAlphaNum (int (default 32 .length))) -}}
{{- end -}}
{{- end -}}

{{/*
Redis credentials of one role (feature_store/acl.py). dict "root" $ "role" serving|materialize.
The bundled Redis: the role's ACL user (redisAcl.enabled) or the default user, passwords from
the users Secret. An external Redis: externalRedis.users.<role>.username when set (with
redisAcl.enabled), else the default user with externalRedis.existingSecret as before.
*/}}
{{- define "recsys.redis.credentials" -}}
{{- $v := .root.Values -}}
{{- $user := "" -}}
{{- $secret := "" -}}
{{- $key := "" -}}
{{- if $v.redis.enabled -}}
{{- $secret = include "recsys.redisUsers.secretName" .root -}}
{{- if $v.redisAcl.enabled -}}
{{- $user = index $v.redisAcl.users .role -}}
{{- $key = printf "%s-password" .role -}}
{{- else if $v.redis.auth.enabled -}}
{{- $key = "redis-password" -}}
{{- end -}}
{{- else -}}
{{- $u := index (default (dict) $v.externalRedis.users) .role | default (dict) -}}
{{- if and $v.redisAcl.enabled $u.username -}}
{{- $user = $u.username -}}
{{- $secret = default $v.externalRedis.existingSecret $u.existingSecret -}}
{{- $key = default (printf "%s-password" .role) $u.passwordKey -}}
{{- if not $secret -}}
{{- fail (printf "externalRedis.users.%s.username needs externalRedis.users.%s.existingSecret (or externalRedis.existingSecret) holding its password" .role .role) -}}
{{- end -}}
{{- else if $v.externalRedis.existingSecret -}}
{{- $secret = $v.externalRedis.existingSecret -}}
{{- $key = $v.externalRedis.existingSecretPasswordKey -}}
{{- end -}}
{{- end -}}
{{- if $user }}
- name: REDIS_USERNAME
  value: {{ $user | quote }}
{{- end }}
{{- if $key }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret | quote }}
      key: {{ $key | quote }}
{{- end }}
{{- end -}}
