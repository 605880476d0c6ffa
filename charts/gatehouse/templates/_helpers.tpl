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

{{/* The operator's --job-pod-overlay (JSON): jobPods, with pull secrets and scheduling
falling back to the auth server's so that Job pods can run where the auth pods do. */}}
{{- define "gatehouse.jobPodOverlay" -}}
{{- $j := .Values.jobPods -}}
{{- $o := dict "platformAssignsUid" $j.platformAssignsUid -}}
{{- with $j.labels }}{{ $_ := set $o "labels" . }}{{ end -}}
{{- with $j.annotations }}{{ $_ := set $o "annotations" . }}{{ end -}}
{{- $pull := ternary .Values.image.pullSecrets $j.imagePullSecrets (kindIs "invalid" $j.imagePullSecrets) -}}
{{- if $pull }}
{{- $refs := list -}}
{{- range $pull }}{{ $refs = append $refs (dict "name" .) }}{{ end -}}
{{- $_ := set $o "imagePullSecrets" $refs -}}
{{- end -}}
{{- $ns := ternary .Values.authserver.nodeSelector $j.nodeSelector (kindIs "invalid" $j.nodeSelector) -}}
{{- with $ns }}{{ $_ := set $o "nodeSelector" . }}{{ end -}}
{{- $tol := ternary .Values.authserver.tolerations $j.tolerations (kindIs "invalid" $j.tolerations) -}}
{{- with $tol }}{{ $_ := set $o "tolerations" . }}{{ end -}}
{{- $aff := ternary .Values.authserver.affinity $j.affinity (kindIs "invalid" $j.affinity) -}}
{{- with $aff }}{{ $_ := set $o "affinity" . }}{{ end -}}
{{- with $j.priorityClassName }}{{ $_ := set $o "priorityClassName" . }}{{ end -}}
{{- with $j.resources }}{{ $_ := set $o "resources" . }}{{ end -}}
{{- if not (kindIs "invalid" $j.runAsUser) }}{{ $_ := set $o "runAsUser" $j.runAsUser }}{{ end -}}
{{- if not (kindIs "invalid" $j.runAsGroup) }}{{ $_ := set $o "runAsGroup" $j.runAsGroup }}{{ end -}}
{{- toJson $o -}}
{{- end -}}

{{/* The admin API's TLS Secret; fails the render when TLS is on without one. */}}
{{- define "gatehouse.adminTlsSecret" -}}
{{- required "admin.tls.secretName is required when admin.tls.enabled is true: a kubernetes.io/tls Secret with tls.crt, tls.key and ca.crt (see docs/kubernetes.md, Admin API over TLS)" .Values.admin.tls.secretName -}}
{{- end -}}
