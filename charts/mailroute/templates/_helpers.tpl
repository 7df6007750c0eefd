{{/* Resource name prefix: RELEASE-mailroute, or RELEASE when it already says mailroute. */}}
{{- define "mailroute.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "mailroute.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mailroute.operator" -}}{{ include "mailroute.fullname" . }}-operator{{- end -}}
{{- define "mailroute.relay" -}}{{ include "mailroute.fullname" . }}-relay{{- end -}}

{{/* Labels on every object; $component is operator, relay or cleanup. */}}
{{- define "mailroute.labels" -}}
{{- $ctx := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $ctx.Chart.Name $ctx.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
{{ include "mailroute.selectorLabels" . }}
{{- end -}}

{{- define "mailroute.selectorLabels" -}}
{{- $ctx := index . 0 -}}
app.kubernetes.io/name: {{ include "mailroute.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "mailroute.image" -}}
{{- printf "%s:%s" .image.repository (default .appVersion .image.tag) -}}
{{- end -}}

{{/* The namespace whose table the relay serves. */}}
{{- define "mailroute.tableNamespace" -}}
{{- default .Release.Namespace .Values.relay.tableNamespace -}}
{{- end -}}

{{- define "mailroute.relayHostname" -}}
{{- default (printf "%s.%s.svc.%s" (include "mailroute.relay" .) .Release.Namespace .Values.clusterDomain) .Values.relay.hostname -}}
{{- end -}}

{{/* The restricted Pod Security Standard, plus a read-only root filesystem. */}}
{{- define "mailroute.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "mailroute.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}


{{/* NetworkPolicy rules. */}}
{{- define "mailroute.apiServerEgress" -}}
- ports:
    {{- range .ports }}
    - {port: {{ . }}, protocol: TCP}
    {{- end }}
  {{- with .to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
{{- define "mailroute.dnsEgress" -}}
- ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
{{- end -}}
{{- define "mailroute.metricsIngress" -}}
- ports:
    - {port: metrics, protocol: TCP}
  {{- with . }}
  from:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
