{{/*
Expand the name of the chart.
*/}}
{{- define "yolo-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
Truncated at 63 chars because some Kubernetes name fields are limited to that (by the DNS naming spec).
If the release name contains the chart name it will be used as a full name.
*/}}
{{- define "yolo-operator.fullname" -}}
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

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "yolo-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "yolo-operator.labels" -}}
helm.sh/chart: {{ include "yolo-operator.chart" . }}
{{ include "yolo-operator.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: yolo-operator
{{- end }}

{{/*
Selector labels
*/}}
{{- define "yolo-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "yolo-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{- define "yolo-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "yolo-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Namespaces the operator watches when not cluster-wide.
*/}}
{{- define "yolo-operator.watchNamespaces" -}}
{{- if .Values.watchNamespaces }}{{ join "," .Values.watchNamespaces }}{{ else }}{{ .Release.Namespace }}{{ end }}
{{- end }}

{{/*
The operator image.
*/}}
{{- define "yolo-operator.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
A default image of the project's own (list $ "<name>" "<override>"): the override when set, else
<name> in the operator image's folder, with the operator image's tag (the chart's appVersion).
*/}}
{{- define "yolo-operator.projectImage" -}}
{{- $ := index . 0 -}}
{{- $override := index . 2 -}}
{{- if $override -}}
{{ $override }}
{{- else -}}
{{ dir $.Values.image.repository }}/{{ index . 1 }}:{{ $.Values.image.tag | default $.Chart.AppVersion }}
{{- end -}}
{{- end }}

{{/*
Rules the operator needs on the objects it manages, in every namespace it watches.
*/}}
{{- define "yolo-operator.managedRules" -}}
- apiGroups: [serving.yolo.dev]
  resources: [yoloservices]
  verbs: [get, list, watch, patch, update]
- apiGroups: [serving.yolo.dev]
  resources: [yoloservices/status]
  verbs: [get, patch, update]
- apiGroups: [""]
  resources: [configmaps, services]
  verbs: [get, list, watch, create, update, patch, delete]
# Read-only: why a tier is not ready (unschedulable, image pull, model fetch, crash loop).
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list]
# Read-only: whether a NetworkPolicy peer (spec.networkPolicy.gatewayFrom) selects any namespace.
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch, create, update, patch, delete]
# KEDA ScaledObjects, where KEDA is installed (the default autoscaling engine there).
- apiGroups: [keda.sh]
  resources: [scaledobjects]
  verbs: [get, list, watch, create, update, patch, delete]
{{- if .Values.rbac.serviceMonitors }}
- apiGroups: [monitoring.coreos.com]
  resources: [servicemonitors]
  verbs: [get, list, watch, create, update, patch, delete]
{{- end }}
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- if .Values.operator.peering.enabled }}
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end }}
