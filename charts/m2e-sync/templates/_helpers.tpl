{{- define "m2e-sync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "m2e-sync.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "m2e-sync.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "m2e-sync.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "m2e-sync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "m2e-sync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "m2e-sync.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "m2e-sync.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: m2e-sync
{{- end -}}

{{/* Per component: pass (dict "root" $ "component" "variant-sync"). */}}
{{- define "m2e-sync.componentSelector" -}}
{{ include "m2e-sync.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "m2e-sync.componentLabels" -}}
{{ include "m2e-sync.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "m2e-sync.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "m2e-sync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "m2e-sync.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "m2e-sync.credentialsSecret" -}}
{{- default (printf "%s-credentials" (include "m2e-sync.fullname" .)) .Values.m2e.existingSecret -}}
{{- end -}}

{{/* The environment every worker and the tick job share; settings come from the ConfigMap. */}}
{{- define "m2e-sync.secretEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef: {fieldPath: metadata.name}
{{- if .Values.kafka.sasl.existingSecret }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.passwordKey }}
{{- end }}
{{- if .Values.redis.url }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "m2e-sync.fullname" . }}-redis
      key: REDIS_URL
{{- end }}
{{- if .Values.redis.existingSecret }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.passwordKey }}
{{- if .Values.redis.keySecretKey }}
- name: REDIS_KEY_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.keySecretKey }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "m2e-sync.podSpecCommon" -}}
serviceAccountName: {{ include "m2e-sync.serviceAccountName" . }}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
securityContext: {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "m2e-sync.volumes" -}}
- name: tmp
  emptyDir: {sizeLimit: 64Mi}
- name: credentials
  secret:
    secretName: {{ include "m2e-sync.credentialsSecret" . }}
    items:
      - {key: {{ .Values.m2e.credentialsKey | quote }}, path: credentials.yaml}
- name: settings
  configMap:
    name: {{ include "m2e-sync.fullname" . }}
    items:
      - {key: product-defaults.yaml, path: product-defaults.yaml}
{{- if .Values.kafka.tls.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.tls.caSecret }}
    items:
      - {key: {{ .Values.kafka.tls.caKey | quote }}, path: ca.crt}
{{- end }}
{{- end -}}

{{- define "m2e-sync.volumeMounts" -}}
- {name: tmp, mountPath: /tmp}
- {name: credentials, mountPath: /etc/m2e-sync/credentials, readOnly: true}
- {name: settings, mountPath: /etc/m2e-sync/settings, readOnly: true}
{{- if .Values.kafka.tls.caSecret }}
- {name: kafka-ca, mountPath: /etc/m2e-sync/kafka-ca, readOnly: true}
{{- end }}
{{- end -}}

{{/* (list defaults overrides): defaults with each override key set (false included). */}}
{{- define "m2e-sync.override" -}}
{{- $out := deepCopy (index . 0) -}}
{{- range $k, $v := (index . 1 | default (dict)) -}}
{{- $_ := set $out $k $v -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* Every pod that may share one token's budget: replicas, or the autoscaler's maximum. */}}
{{- define "m2e-sync.expectedReplicas" -}}
{{- $total := 0 -}}
{{- range $name, $svc := .Values.services -}}
{{- if $svc.enabled -}}
{{- $auto := include "m2e-sync.override" (list $.Values.autoscaling $svc.autoscaling) | fromYaml -}}
{{- $keda := include "m2e-sync.override" (list $.Values.keda $svc.keda) | fromYaml -}}
{{- if $keda.enabled -}}
{{- $total = add $total $keda.maxReplicaCount -}}
{{- else if $auto.enabled -}}
{{- $total = add $total $auto.maxReplicas -}}
{{- else -}}
{{- $total = add $total $svc.replicas -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- max 1 $total -}}
{{- end -}}
