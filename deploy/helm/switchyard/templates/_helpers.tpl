{{/*
Names, labels and the few values derived from several settings. Every template uses these, so a
name or label is spelled in one place.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "switchyard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name: fullnameOverride, else "<release>-<chart name>", else the
release name alone when it already contains the chart name. Truncated so that suffixes such as
"-control-plane" still fit the 63-character limit of a DNS label.
*/}}
{{- define "switchyard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 48 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 48 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 48 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<fullname>-control-plane" and "<fullname>-data-plane". */}}
{{- define "switchyard.controlPlane.fullname" -}}
{{- printf "%s-control-plane" (include "switchyard.fullname" .) }}
{{- end }}

{{- define "switchyard.dataPlane.fullname" -}}
{{- printf "%s-data-plane" (include "switchyard.fullname" .) }}
{{- end }}

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "switchyard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every resource carries. */}}
{{- define "switchyard.labels" -}}
helm.sh/chart: {{ include "switchyard.chart" . }}
app.kubernetes.io/name: {{ include "switchyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: switchyard
{{- end }}

{{/*
Selector labels of one plane. Call with (dict "ctx" $ "component" "control-plane").
These are immutable in a Deployment's selector: never add to them.
*/}}
{{- define "switchyard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchyard.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* All labels of one plane's resources: common labels plus the component. */}}
{{- define "switchyard.componentLabels" -}}
{{ include "switchyard.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The Secret holding SWITCHYARD_MASTER_KEY, REDIS_URL and the rest. */}}
{{- define "switchyard.secretName" -}}
{{- if .Values.secrets.create }}
{{- include "switchyard.fullname" . }}
{{- else }}
{{- default (include "switchyard.fullname" .) .Values.secrets.existingSecret }}
{{- end }}
{{- end }}

{{/*
"true" when /metrics needs SWITCHYARD_METRICS_TOKEN, read from the Secret by both planes and sent
by the ServiceMonitors; empty otherwise. On with secrets.create and secrets.metricsToken, or with
an existing Secret and metrics.tokenFromSecret (the Secret has the key). Refuses the settings
that would leave /metrics open although a token was asked for.
*/}}
{{- define "switchyard.metricsToken" -}}
{{- $s := .Values.secrets }}
{{- if $s.create }}
{{- if and .Values.metrics.tokenFromSecret (not $s.metricsToken) }}
{{- fail "metrics.tokenFromSecret with secrets.create=true needs secrets.metricsToken (the chart writes the Secret): set it, e.g. to the output of `openssl rand -hex 32`" }}
{{- end }}
{{- if $s.metricsToken }}true{{ end }}
{{- else }}
{{- if $s.metricsToken }}
{{- fail "secrets.metricsToken is only used with secrets.create=true. With your own Secret, add the key SWITCHYARD_METRICS_TOKEN to it and set metrics.tokenFromSecret=true" }}
{{- end }}
{{- if .Values.metrics.tokenFromSecret }}true{{ end }}
{{- end }}
{{- end }}

{{/* The ServiceAccount both planes run as. */}}
{{- define "switchyard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "switchyard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* "repository:tag" of one plane's image; the tag defaults to the chart's appVersion. Call with (dict "ctx" $ "image" .Values.controlPlane.image). */}}
{{- define "switchyard.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag | toString) }}
{{- end }}
{{- end }}

{{/*
SWITCHYARD_NODE_COUNT of the data plane: dataPlane.nodeCount when set; else the HPA's
minReplicas when autoscaling is on (the count the HPA rests at; see values.yaml); else
dataPlane.replicaCount.
*/}}
{{- define "switchyard.dataPlane.nodeCount" -}}
{{- if .Values.dataPlane.nodeCount }}
{{- .Values.dataPlane.nodeCount | int }}
{{- else if .Values.dataPlane.autoscaling.enabled }}
{{- .Values.dataPlane.autoscaling.minReplicas | int }}
{{- else }}
{{- .Values.dataPlane.replicaCount | int }}
{{- end }}
{{- end }}

{{/* https when the host's Ingress has TLS on. Call with one of .Values.ingress.gateway / .console. */}}
{{- define "switchyard.scheme" -}}
{{- if .tls.enabled }}https{{ else }}http{{ end }}
{{- end }}

{{/* The gateway's public base URL: publicGatewayUrl, else from the gateway Ingress host, else empty. */}}
{{- define "switchyard.publicGatewayUrl" -}}
{{- if .Values.publicGatewayUrl }}
{{- .Values.publicGatewayUrl | trimSuffix "/" }}
{{- else if and .Values.ingress.enabled .Values.ingress.gateway.host }}
{{- printf "%s://%s" (include "switchyard.scheme" .Values.ingress.gateway) .Values.ingress.gateway.host }}
{{- end }}
{{- end }}

{{/* The console's origin (for the gateway's CORS): from the console Ingress host, else empty. */}}
{{- define "switchyard.consoleOrigin" -}}
{{- if and .Values.ingress.enabled .Values.ingress.console.host }}
{{- printf "%s://%s" (include "switchyard.scheme" .Values.ingress.console) .Values.ingress.console.host }}
{{- end }}
{{- end }}

{{/*
terminationGracePeriodSeconds of one plane: the configured value, which must exceed the preStop
sleep plus the app's shutdown deadline; by default those two plus 30 s for the usage flush and
budget lease hand-back that follow the deadline. Call with one plane's values.
*/}}
{{- define "switchyard.terminationGrace" -}}
{{- $floor := add .preStopSleepSeconds .shutdownGraceSeconds }}
{{- if .terminationGracePeriodSeconds }}
{{- if le (int .terminationGracePeriodSeconds) (int $floor) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be larger than preStopSleepSeconds + shutdownGraceSeconds (%d): Kubernetes would kill the process before its graceful shutdown ends" (int .terminationGracePeriodSeconds) (int $floor)) }}
{{- end }}
{{- .terminationGracePeriodSeconds | int }}
{{- else }}
{{- add $floor 30 }}
{{- end }}
{{- end }}

{{/* The pod and container security contexts (restricted Pod Security Standard). */}}
{{- define "switchyard.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "switchyard.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* An env var read from the Secret. Call with (dict "ctx" $ "name" "REDIS_URL" "optional" false). */}}
{{- define "switchyard.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "switchyard.secretName" .ctx }}
      key: {{ .name }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end }}
