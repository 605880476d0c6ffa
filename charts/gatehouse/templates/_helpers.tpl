{{/* Chart name. */}}
{{- define "gatehouse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Resource name prefix: <release>-gatehouse unless overridden. */}}
{{- define "gatehouse.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "gatehouse.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "gatehouse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gatehouse
{{- end -}}

{{/* Selector labels of a component (authserver, operator). */}}
{{- define "gatehouse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gatehouse.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "gatehouse.tag" -}}
{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}

{{- define "gatehouse.authserverImage" -}}
{{- printf "%s/authserver:%s" .Values.image.repository (include "gatehouse.tag" .) -}}
{{- end -}}

{{- define "gatehouse.operatorImage" -}}
{{- printf "%s/gatehouse-operator:%s" .Values.image.repository (include "gatehouse.tag" .) -}}
{{- end -}}

{{/* The admin Service: a Service name is a DNS label (at most 63 characters), so the
fullname is cut to leave room for the suffix (Helm allows 53-character release names). */}}
{{- define "gatehouse.adminService" -}}
{{- printf "%s-admin" (include "gatehouse.fullname" . | trunc 57 | trimSuffix "-") -}}
{{- end -}}

{{- define "gatehouse.encryptionSecret" -}}
{{- default (printf "%s-encryption" (include "gatehouse.fullname" .)) .Values.encryption.existingSecret -}}
{{- end -}}

{{- define "gatehouse.adminSecret" -}}
{{- default (printf "%s-admin-token" (include "gatehouse.fullname" .)) .Values.admin.existingSecret -}}
{{- end -}}

{{- define "gatehouse.databaseSecret" -}}
{{- required "database.existingSecret is required: create a Secret with the PostgreSQL DSN (key DATABASE_URL) and name it here" .Values.database.existingSecret -}}
{{- end -}}

{{/* The auth pods' database DSN. The ENCRYPTION_KEY comes from a mounted file (see
the Deployment): its Secret may be created after the pod starts. */}}
{{- define "gatehouse.databaseEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "gatehouse.databaseSecret" . }}
      key: DATABASE_URL
{{- end -}}
