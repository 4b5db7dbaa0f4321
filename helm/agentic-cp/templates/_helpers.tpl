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

{{- define "agentic-cp.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* The Secret holding the CA that every replica shares (`--ca-secret`). */}}
{{- define "agentic-cp.caSecret" -}}
{{- .Values.caSecret | default (printf "%s-ca" (include "agentic-cp.fullname" .)) }}
{{- end }}

{{/* Where a remote cluster's kubeconfig is mounted. */}}
{{- define "agentic-cp.remoteClusterDir" -}}
{{- printf "/etc/agentic-cp/remote-clusters/%s" .name }}
{{- end }}

{{/* values.schema.json checks each remoteClusters entry; this catches what it cannot: a repeated name. */}}
{{- define "agentic-cp.checkRemoteClusters" -}}
{{- $seen := dict }}
{{- range .Values.remoteClusters }}
{{- if hasKey $seen .name }}
{{- fail (printf "remoteClusters name %q appears twice" .name) }}
{{- end }}
{{- $_ := set $seen .name true }}
{{- end }}
{{- end }}
