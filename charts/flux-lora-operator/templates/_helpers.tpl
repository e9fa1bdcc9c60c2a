{{/* The release's full name, at most 63 characters (a DNS label). */}}
{{- define "fluxlora.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fluxlora.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "fluxlora.commonLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The operator's objects; the gateway's carry component: gateway instead. */}}
{{- define "fluxlora.labels" -}}
{{ include "fluxlora.commonLabels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "fluxlora.gatewaySelectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "fluxlora.gatewayLabels" -}}
{{ include "fluxlora.commonLabels" . }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "fluxlora.serviceAccountName" -}}
{{- default (include "fluxlora.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "fluxlora.progressUrl" -}}
{{- .Values.progress.url | default (printf "http://%s-progress.%s.svc:%v" (include "fluxlora.fullname" .) .Release.Namespace .Values.progress.port) -}}
{{- end -}}

{{/* The operator's settings as FLUXLORA_* variables; unset values leave the operator's defaults. */}}
{{- define "fluxlora.env" -}}
{{- $v := .Values -}}
{{- $settings := dict
    "LOG_LEVEL" $v.logLevel
    "METRICS_PORT" $v.metrics.port
    "HEALTH_PORT" $v.health.port
    "PROGRESS_PORT" $v.progress.port
    "PROGRESS_URL" (include "fluxlora.progressUrl" .)
    "PROGRESS_SECONDS" $v.progress.intervalSeconds
    "NAMESPACES" (join "," $v.watchNamespaces)
    "PEERING" (ternary $v.peering.name "" $v.peering.enabled)
    "PEERING_LIFETIME_SECONDS" (ternary $v.peering.lifetimeSeconds "" $v.peering.enabled)
    "TRAINER_IMAGE" $v.trainer.image
    "TRAINER_IMAGE_PULL_POLICY" $v.trainer.imagePullPolicy
    "IMAGE_PULL_SECRETS" $v.trainer.imagePullSecrets
    "GPU_RESOURCE" $v.trainer.gpuResource
    "GPUS" $v.trainer.gpus
    "CPU_REQUEST" $v.trainer.cpuRequest
    "MEMORY_REQUEST" $v.trainer.memoryRequest
    "MEMORY_LIMIT" $v.trainer.memoryLimit
    "TRAINER_GRACE_SECONDS" $v.trainer.terminationGracePeriodSeconds
    "NODE_SELECTOR" $v.trainer.nodeSelector
    "TOLERATIONS" $v.trainer.tolerations
    "ALLOWED_TOLERATION_KEYS" $v.trainer.allowedTolerationKeys
    "PRIORITY_CLASS_NAME" $v.trainer.priorityClassName
    "ALLOWED_PRIORITY_CLASSES" $v.trainer.allowedPriorityClasses
    "RUNTIME_CLASS_NAME" $v.trainer.runtimeClassName
    "DATASET_LIMITS" $v.trainer.datasetLimits
    "EPHEMERAL_STORAGE_LIMIT" $v.trainer.ephemeralStorageLimit
    "DEFAULT_OUTPUT" $v.output.default
    "S3_ENDPOINT" $v.output.s3Endpoint
    "OUTPUT_SECRET" $v.output.credentialsSecret
    "OUTPUT_PVC" $v.output.pvc
    "MODEL_CACHE_PVC" $v.model.cachePvc
    "HF_TOKEN_SECRET" $v.model.hfTokenSecret
    "QUEUE_NAME" $v.kueue.defaultQueue
    "TTL_SECONDS_AFTER_FINISHED" $v.ttlSecondsAfterFinished
    "WEBHOOK_ALLOWED_NETWORKS" $v.webhooks.allowedNetworks
    "WEBHOOK_RETRY_SECONDS" $v.webhooks.retrySeconds
-}}
{{- $env := list -}}
{{- range $name := keys $settings | sortAlpha -}}
{{- $value := index $settings $name -}}
{{- if $value -}}
{{- $text := ternary $value (toJson $value) (kindIs "string" $value) -}}
{{- $env = append $env (dict "name" (printf "FLUXLORA_%s" $name) "value" $text) -}}
{{- end -}}
{{- end -}}
{{- toYaml (concat $env $v.extraEnv) -}}
{{- end -}}
