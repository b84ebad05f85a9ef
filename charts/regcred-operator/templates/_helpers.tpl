{{/* The chart name, or nameOverride. */}}
{{- define "regcred-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of every object: the release name when it already contains the chart name (a release
named regcred-operator gives the same names as config/default), else release-chart.
*/}}
{{- define "regcred-operator.fullname" -}}
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

{{- define "regcred-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: the same as config/ uses, and immutable once a Deployment exists. */}}
{{- define "regcred-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "regcred-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "regcred-operator.labels" -}}
helm.sh/chart: {{ include "regcred-operator.chart" . }}
{{ include "regcred-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: regcred-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "regcred-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "regcred-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "regcred-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
