{{- define "tanium-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tanium-operator.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "tanium-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- /* A Deployment's pods: the main one's keep the release's selector labels (a Deployment's selector cannot change
on upgrade); a shard's get a name label of their own, so that the main selector does not match them. */}}
{{- define "tanium-operator.podSelectorLabels" -}}
{{- if .shard -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}-shard
app.kubernetes.io/instance: {{ .root.Release.Name }}
tanium-operator.dev/shard: {{ .shard | quote }}
{{- else -}}
{{- include "tanium-operator.selectorLabels" .root }}
{{- end -}}
{{- end -}}

{{- /* Every operator pod of the release, main and shards (with instance): what the metrics Service selects. */}}
{{- define "tanium-operator.podLabels" -}}
app.kubernetes.io/part-of: {{ .Chart.Name }}
{{- end -}}

{{- /* A Deployment's name: the release's for the main one, <release>-shard-<name> (at most 63) for a shard's. */}}
{{- define "tanium-operator.deploymentName" -}}
{{- $name := include "tanium-operator.fullname" .root }}
{{- if .shard }}
{{- $suffix := printf "-shard-%s" .shard }}
{{- $name = printf "%s%s" ($name | trunc (int (sub 63 (len $suffix))) | trimSuffix "-") $suffix }}
{{- end }}
{{- $name }}
{{- end -}}

{{- /* policy.tagBindings as PREFIX=NAMESPACE,NAMESPACE lines, the prefix without its trailing *: the admission
policy's parameter, and (joined with ;) the operator's TANIUM_TAG_BINDINGS. */}}
{{- define "tanium-operator.tagBindings" -}}
{{- $lines := list }}
{{- range . }}
{{- $lines = append $lines (printf "%s=%s" (trimSuffix "*" .prefix) (join "," .namespaces)) }}
{{- end }}
{{- join "\n" $lines }}
{{- end }}
