{{/*
Names are fixed ("loopstack-<component>"), not release-prefixed: the compiled Argo templates
name the ConfigMap `loopstack-config` and the ServiceAccount `loopstack-pipeline`, and the
InferenceServices name the runtime `loopstack-runtime`. One release per namespace.
*/}}

{{- define "loopstack.namespace" -}}{{ .Release.Namespace }}{{- end }}

{{- define "loopstack.labels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: loopstack
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: loopstack
app.kubernetes.io/component: {{ index . 1 }}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version }}
{{- end }}

{{- define "loopstack.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: loopstack
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* metadata: name, namespace (helm template -n does not write it), labels. [root, name, component] */}}
{{- define "loopstack.metadata" -}}
{{- $root := index . 0 -}}
name: {{ index . 1 }}
namespace: {{ $root.Release.Namespace }}
labels:
  {{- include "loopstack.labels" (list $root (index . 2)) | nindent 2 }}
{{- end }}

{{/* An image reference; [root, "platform"|"drift"]. A digest wins over the tag. */}}
{{- define "loopstack.image" -}}
{{- $root := index . 0 -}}
{{- $img := index $root.Values.image (index . 1) -}}
{{- if $img.digest -}}
{{ $img.repository }}@{{ $img.digest }}
{{- else -}}
{{ $img.repository }}:{{ $img.tag | default $root.Chart.AppVersion }}
{{- end -}}
{{- end }}

{{- define "loopstack.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurity.runAsUser }}
runAsGroup: {{ .Values.podSecurity.runAsGroup }}
fsGroup: {{ .Values.podSecurity.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "loopstack.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurity.runAsUser }}
runAsGroup: {{ .Values.podSecurity.runAsGroup }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "loopstack.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* ---------- PostgreSQL: in-chart unless external.postgresql.host is set ---------- */}}
{{- define "loopstack.pg.inChart" -}}{{ if not .Values.external.postgresql.host }}true{{ end }}{{- end }}
{{- define "loopstack.pg.host" -}}
{{- .Values.external.postgresql.host | default (printf "loopstack-postgresql.%s.svc" .Release.Namespace) -}}
{{- end }}
{{- define "loopstack.pg.port" -}}{{ ternary 5432 .Values.external.postgresql.port (empty .Values.external.postgresql.host) }}{{- end }}
{{- define "loopstack.pg.user" -}}{{ ternary .Values.postgresql.username .Values.external.postgresql.username (empty .Values.external.postgresql.host) }}{{- end }}
{{- define "loopstack.pg.secret" -}}
{{- if .Values.external.postgresql.host -}}
{{- required "external.postgresql.existingSecret is required with external.postgresql.host" .Values.external.postgresql.existingSecret -}}
{{- else -}}
{{- .Values.postgresql.existingSecret | default "loopstack-postgresql" -}}
{{- end -}}
{{- end }}
{{- define "loopstack.pg.passwordKey" -}}{{ ternary .Values.postgresql.passwordKey .Values.external.postgresql.passwordKey (empty .Values.external.postgresql.host) }}{{- end }}
{{/* Database name of a purpose (mlflow, feast, loopstack); [root, purpose]. */}}
{{- define "loopstack.pg.db" -}}
{{- $root := index . 0 -}}
{{- ternary (index . 1) (index $root.Values.external.postgresql.databases (index . 1)) (empty $root.Values.external.postgresql.host) -}}
{{- end }}
{{/* A SQLAlchemy URL; the password comes from $(POSTGRES_PASSWORD), set by loopstack.pg.env. */}}
{{- define "loopstack.pg.url" -}}
{{- $root := index . 0 -}}
postgresql+psycopg://{{ include "loopstack.pg.user" $root }}:$(POSTGRES_PASSWORD)@{{ include "loopstack.pg.host" $root }}:{{ include "loopstack.pg.port" $root }}/{{ include "loopstack.pg.db" . }}
{{- end }}
{{- define "loopstack.pg.env" -}}
- name: POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "loopstack.pg.secret" . }}
      key: {{ include "loopstack.pg.passwordKey" . }}
{{- end }}
{{/* Env of a component that uses the feedback read model. */}}
{{- define "loopstack.readModel.env" -}}
{{ include "loopstack.pg.env" . }}
- name: LOOPSTACK_FEEDBACK__READ_MODEL_URL
  value: {{ include "loopstack.pg.url" (list . "loopstack") | quote }}
- name: LOOPSTACK_LOOP__STORE_URL
  value: {{ include "loopstack.pg.url" (list . "loopstack") | quote }}
- name: LOOPSTACK_DRIFT__STORE_URL
  value: {{ include "loopstack.pg.url" (list . "loopstack") | quote }}
- name: LOOPSTACK_AUTH__STORE_URL
  value: {{ include "loopstack.pg.url" (list . "loopstack") | quote }}
{{- end }}

{{/* ---------- Redis (Feast online store): in-chart unless external.redis.host is set ---------- */}}
{{- define "loopstack.redis.inChart" -}}{{ if not .Values.external.redis.host }}true{{ end }}{{- end }}
{{- define "loopstack.redis.secret" -}}
{{- if .Values.external.redis.host -}}{{ .Values.external.redis.existingSecret }}{{- else -}}{{ .Values.redis.existingSecret | default "loopstack-redis" }}{{- end -}}
{{- end }}
{{- define "loopstack.redis.passwordKey" -}}{{ ternary .Values.redis.passwordKey .Values.external.redis.passwordKey (empty .Values.external.redis.host) }}{{- end }}
{{- define "loopstack.redis.env" -}}
{{- $host := .Values.external.redis.host | default (printf "loopstack-redis.%s.svc" .Release.Namespace) -}}
{{- $port := ternary 6379 .Values.external.redis.port (empty .Values.external.redis.host) -}}
{{- if include "loopstack.redis.secret" . }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "loopstack.redis.secret" . }}
      key: {{ include "loopstack.redis.passwordKey" . }}
- name: LOOPSTACK_FEATURES__REDIS_URL
  value: {{ printf "redis://:$(REDIS_PASSWORD)@%s:%v/0" $host $port | quote }}
{{- else }}
- name: LOOPSTACK_FEATURES__REDIS_URL
  value: {{ printf "redis://%s:%v/0" $host $port | quote }}
{{- end }}
{{- end }}

{{/* ---------- Kafka and MLflow endpoints ---------- */}}
{{- define "loopstack.kafka.inChart" -}}{{ if not .Values.external.kafka.bootstrapServers }}true{{ end }}{{- end }}
{{- define "loopstack.kafka.bootstrap" -}}
{{- .Values.external.kafka.bootstrapServers | default (printf "loopstack-kafka-bootstrap.%s.svc:9092" .Release.Namespace) -}}
{{- end }}
{{- define "loopstack.mlflow.inChart" -}}{{ if not .Values.external.mlflow.trackingUri }}true{{ end }}{{- end }}
{{- define "loopstack.mlflow.uri" -}}
{{- .Values.external.mlflow.trackingUri | default (printf "http://loopstack-mlflow.%s.svc:%v" .Release.Namespace .Values.mlflow.port) -}}
{{- end }}

{{/* A generated password kept across upgrades (lookup finds the live Secret); [root, secret name]. */}}
{{- define "loopstack.generatedPassword" -}}
{{- $root := index . 0 -}}
{{- $live := lookup "v1" "Secret" $root.Release.Namespace (index . 1) -}}
{{- if and $live $live.data (hasKey $live.data "password") -}}
{{ index $live.data "password" }}
{{- else -}}
{{ randAlphaNum 32 | b64enc }}
{{- end -}}
{{- end }}

{{/* Probes on an HTTP health path; [port name or number, path, TLS values (optional: for a
server that serves TLS when they are enabled)]. Over TLS the kubelet probes with HTTPS (it does
not verify the certificate); with mutual TLS it has no client certificate, so it opens the TCP
port only. */}}
{{- define "loopstack.httpProbes" -}}
readinessProbe:
  {{ include "loopstack.probeCheck" . }}
  periodSeconds: 10
  timeoutSeconds: 3
livenessProbe:
  {{ include "loopstack.probeCheck" . }}
  initialDelaySeconds: 30
  periodSeconds: 20
  timeoutSeconds: 5
  failureThreshold: 6
{{- end }}

{{/* One probe's check (one line); arguments as for loopstack.httpProbes. */}}
{{- define "loopstack.probeCheck" -}}
{{- $tls := dict -}}
{{- if gt (len .) 2 }}{{ $tls = index . 2 }}{{ end -}}
{{- if and $tls.enabled $tls.mutual -}}
tcpSocket: {port: {{ index . 0 }}}
{{- else if $tls.enabled -}}
httpGet: {path: {{ index . 1 }}, port: {{ index . 0 }}, scheme: HTTPS}
{{- else -}}
httpGet: {path: {{ index . 1 }}, port: {{ index . 0 }}}
{{- end -}}
{{- end }}

{{/* TLS of a server Loopstack implements (values `tls`): env entries (a YAML list, or ""). */}}
{{- define "loopstack.tls.env" -}}
{{- if .Values.tls.enabled }}
{{- if not .Values.tls.secretName }}{{ fail "tls.enabled needs tls.secretName (a kubernetes.io/tls Secret)" }}{{ end }}
- name: LOOPSTACK_TLS__CERT_FILE
  value: /etc/loopstack/tls/tls.crt
- name: LOOPSTACK_TLS__KEY_FILE
  value: /etc/loopstack/tls/tls.key
{{- if .Values.tls.mutual }}
- name: LOOPSTACK_TLS__CLIENT_CA_FILE
  value: /etc/loopstack/tls/ca.crt
{{- end }}
{{- end }}
{{- end }}

{{/* The TLS Secret as a read-only volume (a YAML list, or ""). */}}
{{- define "loopstack.tls.volumes" -}}
{{- if .Values.tls.enabled }}
- name: tls
  secret: {secretName: {{ .Values.tls.secretName }}, defaultMode: 0440}
{{- end }}
{{- end }}

{{/* Its mount at /etc/loopstack/tls (a YAML list, or ""). */}}
{{- define "loopstack.tls.volumeMounts" -}}
{{- if .Values.tls.enabled }}
- {name: tls, mountPath: /etc/loopstack/tls, readOnly: true}
{{- end }}
{{- end }}
