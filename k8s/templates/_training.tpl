{{/*
Distributed training (issue 15): an Indexed Job whose pods run `recsys train` under torchrun,
with static rendezvous through pod 0, which a headless Service of the same name gives a DNS name.
*/}}

{{/*
Name of the Job and of its headless Service (the pods' subdomain). A pod's hostname is
<job>-<index>, which must stay a 63-character DNS label.
*/}}
{{- define "recsys.training.name" -}}
{{- printf "%s-train" (include "recsys.fullname" .) | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{/* Pod 0's DNS name under the headless Service: torchrun's --master-addr. */}}
{{- define "recsys.training.masterAddr" -}}
{{- $name := include "recsys.training.name" . -}}
{{- printf "%s-0.%s.%s.svc" $name $name .Release.Namespace -}}
{{- end -}}

{{/* The training image: training.image, or the recommendation bento's image. */}}
{{- define "recsys.training.image" -}}
{{- $img := .Values.training.image -}}
{{- if $img.repository -}}
{{- printf "%s:%s" $img.repository (toString (default .Chart.AppVersion $img.tag)) -}}
{{- else -}}
{{- $rec := .Values.recommendation.image -}}
{{- printf "%s:%s" $rec.repository (toString (default .Chart.AppVersion (default $rec.tag $img.tag))) -}}
{{- end -}}
{{- end -}}

{{- define "recsys.training.pullPolicy" -}}
{{- if .Values.training.image.repository -}}
{{- .Values.training.image.pullPolicy -}}
{{- else -}}
{{- .Values.recommendation.image.pullPolicy -}}
{{- end -}}
{{- end -}}

{{/* The model store claim (modelStore.type volume): existingClaim or the chart's own. */}}
{{- define "recsys.training.modelStoreClaim" -}}
{{- default (printf "%s-model-store" (include "recsys.fullname" .)) .Values.training.modelStore.existingClaim -}}
{{- end -}}

{{/* The data directory `recsys train --data-dir` reads: the claim's mount or the download. */}}
{{- define "recsys.training.dataDir" -}}
{{- if .Values.training.data.existingClaim -}}
/data
{{- else -}}
{{- printf "/data/%s" .Values.training.dataset -}}
{{- end -}}
{{- end -}}

{{/* Values that the schema cannot check alone; fails the render with what is wrong. */}}
{{- define "recsys.training.validate" -}}
{{- $t := .Values.training -}}
{{- if and (gt (int $t.gpu) 0) (gt (int $t.procsPerNode) (int $t.gpu)) -}}
{{- fail (printf "training.procsPerNode (%v) > training.gpu (%v): DDP over nccl needs a GPU per process" $t.procsPerNode $t.gpu) -}}
{{- end -}}
{{- if eq $t.modelStore.type "s3" -}}
{{- if not $t.modelStore.s3.url -}}
{{- fail "training.modelStore.type=s3 needs training.modelStore.s3.url (s3://bucket/prefix/)" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Arguments of the launcher (torchrun): static rendezvous through pod 0, this pod's node rank
from the Job's completion index (so pod 0 holds global rank 0, the rank that writes models),
then `recsys train`. Kubernetes expands $(JOB_COMPLETION_INDEX) from the env the Job
controller gives each pod.
*/}}
{{- define "recsys.training.torchrunArgs" -}}
{{- $t := .Values.training -}}
{{- $args := list "--nnodes" (toString $t.nodes) "--nproc-per-node" (toString $t.procsPerNode) "--node-rank" "$(JOB_COMPLETION_INDEX)" "--master-addr" (include "recsys.training.masterAddr" .) "--master-port" (toString $t.masterPort) -}}
{{- $args = concat $args $t.program (list "train" "--data-dir" (include "recsys.training.dataDir" .)) -}}
{{- with $t.stage -}}
{{- $args = concat $args (list "--stage" .) -}}
{{- end -}}
{{- if $t.report -}}
{{- $args = concat $args (list "--report" (printf "%s/train-report.json" $t.modelStore.mountPath)) -}}
{{- end -}}
{{- $args = concat $args $t.extraArgs -}}
{{- toYaml $args -}}
{{- end -}}
