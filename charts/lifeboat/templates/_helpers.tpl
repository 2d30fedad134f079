{{/*
Names and labels shared by every object of the chart.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "lifeboat.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: fullnameOverride, else the release name, suffixed with
the chart name unless it already contains it. Cut to 63 characters (DNS label).
*/}}
{{- define "lifeboat.fullname" -}}
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

{{/* chart label value: name-version. */}}
{{- define "lifeboat.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "lifeboat.labels" -}}
helm.sh/chart: {{ include "lifeboat.chart" . }}
{{ include "lifeboat.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: lifeboat
{{- end }}

{{/* Labels that select the daemon's pods (immutable in a Deployment: keep them stable). */}}
{{- define "lifeboat.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lifeboat.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount the pods run as. */}}
{{- define "lifeboat.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "lifeboat.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: repository@digest when a digest is set (it wins), else repository:tag with
the tag defaulting to the chart's appVersion. `latest` is refused here as well as by the schema,
so that --skip-schema-validation cannot sneak it in.
*/}}
{{- define "lifeboat.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if eq (lower $tag) "latest" }}
{{- fail "image.tag must not be latest: pin a release tag (e.g. 0.1.0) or set image.digest" }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
The daemon's port, from config.server.listen (IP:PORT or [IPv6]:PORT): the single source of the
container port, the probes' target, the Service's target and the NetworkPolicy's port.
*/}}
{{- define "lifeboat.port" -}}
{{- $listen := toString .Values.config.server.listen }}
{{- if not (regexMatch "^([0-9.]+|\\[[0-9A-Fa-f:.]+\\]):[0-9]{1,5}$" $listen) }}
{{- fail (printf "config.server.listen %q must be IP:PORT, e.g. 0.0.0.0:8000" $listen) }}
{{- end }}
{{- if or (hasPrefix "127." $listen) (hasPrefix "[::1]" $listen) }}
{{- fail (printf "config.server.listen %q is a loopback address: the kubelet and Prometheus connect to the pod IP; use 0.0.0.0:PORT" $listen) }}
{{- end }}
{{- $port := regexFind "[0-9]+$" $listen | atoi }}
{{- if or (lt $port 1) (gt $port 65535) }}
{{- fail (printf "config.server.listen %q has no valid port (1-65535)" $listen) }}
{{- end }}
{{- $port }}
{{- end }}

{{/* Namespace of the leader-election Lease: the configured one, else the release namespace. */}}
{{- define "lifeboat.leaseNamespace" -}}
{{- $le := .Values.config.server.leaderElection | default dict }}
{{- default .Release.Namespace $le.namespace }}
{{- end }}

{{/* Name of the leader-election Lease: the configured one, else lifeboat's default. */}}
{{- define "lifeboat.leaseName" -}}
{{- $le := .Values.config.server.leaderElection | default dict }}
{{- default "lifeboat" $le.leaseName }}
{{- end }}

{{/* Whether leader election is on (lifeboat's default is on). */}}
{{- define "lifeboat.leaderElection" -}}
{{- $le := .Values.config.server.leaderElection | default dict }}
{{- if hasKey $le "enabled" }}{{ $le.enabled }}{{ else }}true{{ end }}
{{- end }}
