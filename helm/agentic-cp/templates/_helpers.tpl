{{/* Chart name, overridable. */}}
{{- define "agentic-cp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name. Truncated to 57 characters so that the "-xds"/"-admin"
suffixes still fit in a 63-character DNS label.
*/}}
{{- define "agentic-cp.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 57 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 57 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 57 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "agentic-cp.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "agentic-cp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agentic-cp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "agentic-cp.labels" -}}
helm.sh/chart: {{ include "agentic-cp.chart" . }}
{{ include "agentic-cp.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: control-plane
app.kubernetes.io/part-of: agentic-cp
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* repository@digest when a digest is given, else repository:tag. Called with an image dict and a default tag. */}}
{{- define "agentic-cp.imageRef" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (.image.tag | default .defaultTag) }}
{{- end }}
{{- end }}

{{- define "agentic-cp.image" -}}
{{- include "agentic-cp.imageRef" (dict "image" .Values.image "defaultTag" .Chart.AppVersion) }}
{{- end }}

{{/* The Envoy image of provisioned Gateway proxies (`--proxy-image`). */}}
{{- define "agentic-cp.proxyImage" -}}
{{- include "agentic-cp.imageRef" (dict "image" .Values.proxy.image "defaultTag" "") }}
{{- end }}

{{/* The Secret holding the CA that every replica shares (`--ca-secret`). */}}
{{- define "agentic-cp.caSecret" -}}
{{- .Values.caSecret | default (printf "%s-ca" (include "agentic-cp.fullname" .)) }}
{{- end }}
