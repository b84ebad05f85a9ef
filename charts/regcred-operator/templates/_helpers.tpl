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
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The namespaces the operator trusts for sources (--source-namespace; default the release
namespace), as a JSON list: the admission policy selects them only by an exact include entry.
*/}}
{{- define "regcred-operator.trustedNamespaces" -}}
{{- if .Values.sourceNamespaces }}
{{- toJson .Values.sourceNamespaces }}
{{- else }}
{{- toJson (list .Release.Namespace) }}
{{- end }}
{{- end }}

{{/*
credentialSelector (a label selector string, as --credential-selector takes it) as a
LabelSelector in JSON, for the admission policy binding's paramRef: `k=v`, `k==v`, `k!=v`, `k`,
`!k`, `k in (a,b)`, `k notin (a,b)`, comma-separated. Empty selects every RegistryCredential.
Anything else (`k>1`) fails the render rather than select other credentials than the operator.
*/}}
{{- define "regcred-operator.credentialLabelSelector" -}}
{{- $selector := trim .Values.credentialSelector }}
{{- $key := "[^\\s!=<>(),]+" }}
{{- $labels := dict }}
{{- $expressions := list }}
{{- if $selector }}
{{- $terms := regexFindAll "[^,(]+(\\([^)]*\\))?" $selector -1 }}
{{- if ne (join "," $terms) $selector }}
{{- fail (printf "credentialSelector %q is not a label selector" $selector) }}
{{- end }}
{{- range $terms }}
{{- $term := trim . }}
{{- if regexMatch (printf "^!\\s*%s$" $key) $term }}
{{- $expressions = append $expressions (dict "key" (trim (trimPrefix "!" $term)) "operator" "DoesNotExist") }}
{{- else if regexMatch (printf "^%s\\s+(in|notin)\\s*\\([^()]*\\)$" $key) $term }}
{{- $name := regexReplaceAll (printf "^(%s)\\s+(in|notin)\\s*\\(([^()]*)\\)$" $key) $term "${1}" }}
{{- $op := regexReplaceAll (printf "^(%s)\\s+(in|notin)\\s*\\(([^()]*)\\)$" $key) $term "${2}" }}
{{- $inner := trim (regexReplaceAll (printf "^(%s)\\s+(in|notin)\\s*\\(([^()]*)\\)$" $key) $term "${3}") }}
{{- if not $inner }}
{{- fail (printf "credentialSelector %q: %q has no values" $selector $term) }}
{{- end }}
{{- $values := list }}
{{- range splitList "," $inner }}
{{- $values = append $values (trim .) }}
{{- end }}
{{- $expressions = append $expressions (dict "key" $name "operator" (ternary "In" "NotIn" (eq $op "in")) "values" $values) }}
{{- else if regexMatch (printf "^%s\\s*!=\\s*[^\\s!=<>(),]*$" $key) $term }}
{{- $parts := regexSplit "\\s*!=\\s*" $term 2 }}
{{- $expressions = append $expressions (dict "key" (index $parts 0) "operator" "NotIn" "values" (list (index $parts 1))) }}
{{- else if regexMatch (printf "^%s\\s*==?\\s*[^\\s!=<>(),]*$" $key) $term }}
{{- $parts := regexSplit "\\s*==?\\s*" $term 2 }}
{{- if hasKey $labels (index $parts 0) }}
{{- $expressions = append $expressions (dict "key" (index $parts 0) "operator" "In" "values" (list (index $parts 1))) }}
{{- else }}
{{- $_ := set $labels (index $parts 0) (index $parts 1) }}
{{- end }}
{{- else if regexMatch (printf "^%s$" $key) $term }}
{{- $expressions = append $expressions (dict "key" $term "operator" "Exists") }}
{{- else }}
{{- fail (printf "credentialSelector %q: %q cannot be written as a LabelSelector" $selector $term) }}
{{- end }}
{{- end }}
{{- end }}
{{- $out := dict }}
{{- if $labels }}{{ $_ := set $out "matchLabels" $labels }}{{ end }}
{{- if $expressions }}{{ $_ := set $out "matchExpressions" $expressions }}{{ end }}
{{- toJson $out }}
{{- end }}

{{/*
The API version of the admission policy and its binding: admissionPolicy.apiVersion when set,
else the newest the cluster serves (v1 on Kubernetes 1.36+, v1beta1 where 1.34 / 1.35 enable it),
else empty: the policy is left out, and ServiceAccount patching alone provides the copy.
*/}}
{{- define "regcred-operator.admissionPolicyAPIVersion" -}}
{{- if .Values.admissionPolicy.apiVersion -}}
{{ .Values.admissionPolicy.apiVersion }}
{{- else if .Capabilities.APIVersions.Has "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy" -}}
admissionregistration.k8s.io/v1
{{- else if .Capabilities.APIVersions.Has "admissionregistration.k8s.io/v1beta1/MutatingAdmissionPolicy" -}}
admissionregistration.k8s.io/v1beta1
{{- end -}}
{{- end }}

{{/*
The credential provider plugins' image: by digest when one is given.
*/}}
{{- define "regcred-operator.pluginsImage" -}}
{{- $image := .Values.credentialProviders.pluginsImage -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (required "credentialProviders.pluginsImage.tag or .digest is required" $image.tag) -}}
{{- end -}}
{{- end }}
