{{/*
A Deployment of a Loopstack process (platform or drift image) with the chart's security
posture: non-root, read-only root filesystem (writable /tmp and state dir are emptyDirs), no
capabilities, seccomp RuntimeDefault, and a ServiceAccount token only when the process calls
the Kubernetes API.

Arguments (a dict):
  root         the chart root context
  name         object and ServiceAccount name (loopstack-<component>)
  component    app.kubernetes.io/component
  image        "platform" or "drift"
  replicas     replica count
  command      container command (list)
  args         container args (list, optional)
  port         container port serving /healthz and /metrics
  env          extra env entries (YAML string, optional)
  resources    requests/limits
  healthPath   readiness/liveness path (default /healthz)
  tls          true when the process serves TLS once the values' `tls` enable it (probes)
  kubeApi      true when the process talks to the Kubernetes API (mounts the token)
  strategy     "Recreate" for single-writer processes (optional)
  volumes      extra volumes (YAML string, optional); volumeMounts likewise
*/}}
{{- define "loopstack.deployment" -}}
{{- $root := .root -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  {{- include "loopstack.metadata" (list $root .name .component) | nindent 2 }}
  {{- if .kubeApi }}
  annotations:
    # The one checkov finding skipped per resource (the others: tests/charts/checkov.yaml).
    checkov.io/skip1: CKV_K8S_38=calls the Kubernetes API (InferenceServices, Workflows) under the loopstack-operator Role
  {{- end }}
spec:
  replicas: {{ .replicas }}
  {{- if .strategy }}
  strategy:
    type: {{ .strategy }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "loopstack.selectorLabels" (list $root .component) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "loopstack.labels" (list $root .component) | nindent 8 }}
      annotations:
        # Roll the pods when the settings change.
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    spec:
      serviceAccountName: {{ .name }}
      automountServiceAccountToken: {{ .kubeApi | default false }}
      securityContext:
        {{- include "loopstack.podSecurityContext" $root | nindent 8 }}
      {{- include "loopstack.imagePullSecrets" $root | nindent 6 }}
      containers:
        - name: {{ .component }}
          image: {{ include "loopstack.image" (list $root .image) }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command: {{ toJson .command }}
          {{- with .args }}
          args: {{ toJson . }}
          {{- end }}
          ports:
            - name: http
              containerPort: {{ .port }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: loopstack-config
          {{- with .env }}
          env:
            {{- . | nindent 12 }}
          {{- end }}
          {{- include "loopstack.httpProbes" (list "http" (.healthPath | default "/healthz") (ternary $root.Values.tls (dict) (.tls | default false))) | nindent 10 }}
          resources:
            {{- toYaml .resources | nindent 12 }}
          securityContext:
            {{- include "loopstack.containerSecurityContext" $root | nindent 12 }}
          volumeMounts:
            - {name: tmp, mountPath: /tmp}
            - {name: state, mountPath: /var/lib/loopstack}
            {{- with .volumeMounts }}
            {{- . | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir: {sizeLimit: 1Gi}
        - name: state
          emptyDir: {sizeLimit: 2Gi}
        {{- with .volumes }}
        {{- . | nindent 8 }}
        {{- end }}
{{- end }}

{{/* A ClusterIP Service in front of a component's `http` port; [root, name, component, port]. */}}
{{- define "loopstack.service" -}}
{{- $root := index . 0 -}}
apiVersion: v1
kind: Service
metadata:
  {{- include "loopstack.metadata" (list $root (index . 1) (index . 2)) | nindent 2 }}
spec:
  type: ClusterIP
  selector:
    {{- include "loopstack.selectorLabels" (list $root (index . 2)) | nindent 4 }}
  ports:
    - name: http
      port: {{ index . 3 }}
      targetPort: http
      protocol: TCP
{{- end }}
