{{/* Chart name, overridable. */}}
{{- define "wfe-admission.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: <release>-<chart>, or the release name alone when it already contains the chart
name (a release called wfe-admission gives wfe-admission). Truncated to 52 characters so that
suffixes such as -selfsigned, -serving, -policy and -tls stay within 63.
*/}}
{{- define "wfe-admission.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "wfe-admission.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "wfe-admission.labels" -}}
helm.sh/chart: {{ include "wfe-admission.chart" . }}
{{ include "wfe-admission.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: admission-webhook
app.kubernetes.io/part-of: kubernaut
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that select the webhook's pods (never change them between upgrades). */}}
{{- define "wfe-admission.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wfe-admission.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "wfe-admission.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "wfe-admission.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The user name the API server gives the webhook's pods. */}}
{{- define "wfe-admission.serviceAccountUser" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "wfe-admission.serviceAccountName" .) }}
{{- end }}

{{/*
Both webhook configurations carry the full name (they are different kinds): the self-managed
webhook looks each name up as either kind (--webhook-configurations).
*/}}
{{- define "wfe-admission.mutatingName" -}}
{{- include "wfe-admission.fullname" . }}
{{- end }}

{{- define "wfe-admission.validatingName" -}}
{{- include "wfe-admission.fullname" . }}
{{- end }}

{{- define "wfe-admission.policyConfigMapName" -}}
{{- printf "%s-policy" (include "wfe-admission.fullname" .) }}
{{- end }}

{{/* The Secret holding tls.crt and tls.key, whoever writes it. */}}
{{- define "wfe-admission.certSecretName" -}}
{{- $c := .Values.certificates }}
{{- if eq $c.mode "provided" }}
{{- required "certificates.provided.secretName is required when certificates.mode is provided" $c.provided.secretName }}
{{- else if eq $c.mode "self-managed" }}
{{- default (printf "%s-tls" (include "wfe-admission.fullname" .)) $c.selfManaged.secretName }}
{{- else }}
{{- printf "%s-tls" (include "wfe-admission.fullname" .) }}
{{- end }}
{{- end }}

{{/* The cert-manager Certificate whose CA cert-manager injects (cert-manager mode). */}}
{{- define "wfe-admission.servingCertificateName" -}}
{{- printf "%s-serving" (include "wfe-admission.fullname" .) }}
{{- end }}

{{- define "wfe-admission.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The status manager writes the guarded resources' status (rejection condition, repair). */}}
{{- define "wfe-admission.statusWrites" -}}
{{- if or .Values.policy.events.rejectionCondition .Values.statusManager.enabled }}true{{- end }}
{{- end }}

{{/*
The guarded resources as {group, resource, scope}: WorkflowExecution first, then
policy.extraResources. Rendered as YAML; use `fromYamlArray`.
*/}}
{{- define "wfe-admission.guardedResources" -}}
- group: kubernaut.ai
  resource: workflowexecutions
  scope: Namespaced
{{- range .Values.policy.extraResources }}
- group: {{ .group | quote }}
  resource: {{ .resource | quote }}
  scope: {{ default "*" .scope | quote }}
{{- end }}
{{- end }}

{{/* caBundle for both webhook configurations in provided mode: base64 of the PEM. */}}
{{- define "wfe-admission.providedCaBundle" -}}
{{- $ca := required "certificates.provided.caBundle is required when certificates.mode is provided" .Values.certificates.provided.caBundle | trim }}
{{- if contains "-----BEGIN" $ca }}
{{- $ca | b64enc }}
{{- else }}
{{- if not (contains "-----BEGIN" (b64dec $ca)) }}
{{- fail "certificates.provided.caBundle must be a PEM certificate (or the base64 of one)" }}
{{- end }}
{{- $ca | replace "\n" "" }}
{{- end }}
{{- end }}

{{/*
clientConfig of one webhook: the Service, or webhook.url when set.
Call with (dict "ctx" $ "path" "/mutate").
*/}}
{{- define "wfe-admission.clientConfig" -}}
{{- $ := .ctx }}
{{- if $.Values.webhook.url }}
url: {{ printf "%s%s" (trimSuffix "/" $.Values.webhook.url) .path | quote }}
{{- else }}
service:
  name: {{ include "wfe-admission.fullname" $ }}
  namespace: {{ $.Release.Namespace }}
  path: {{ .path }}
  port: {{ $.Values.service.port }}
{{- end }}
{{- if eq $.Values.certificates.mode "provided" }}
caBundle: {{ include "wfe-admission.providedCaBundle" $ }}
{{- end }}
{{- end }}

{{/* Annotations of both webhook configurations. */}}
{{- define "wfe-admission.webhookAnnotations" -}}
{{- $ann := deepCopy (default dict .Values.webhook.annotations) }}
{{- if eq .Values.certificates.mode "cert-manager" }}
{{- $_ := set $ann "cert-manager.io/inject-ca-from" (printf "%s/%s" .Release.Namespace (include "wfe-admission.servingCertificateName" .)) }}
{{- end }}
{{- if $ann }}
annotations:
  {{- toYaml $ann | nindent 2 }}
{{- end }}
{{- end }}

{{/*
What both webhooks share. Call with (dict "ctx" $ "path" "/validate" "self" true "validate" true),
where self adds the condition that skips the webhook's own service account, mutate the one that
skips controller writes combining leaves as sent, and validate the one that skips updates the
validating webhook cannot deny.
*/}}
{{- define "wfe-admission.webhookCommon" -}}
{{- $ := .ctx }}
{{- $w := $.Values.webhook }}
admissionReviewVersions: ["v1"]
sideEffects: NoneOnDryRun
matchPolicy: Equivalent
failurePolicy: {{ $w.failurePolicy }}
timeoutSeconds: {{ $w.timeoutSeconds }}
clientConfig:
  {{- include "wfe-admission.clientConfig" (dict "ctx" $ "path" .path) | trim | nindent 2 }}
rules:
{{- range (include "wfe-admission.guardedResources" $ | fromYamlArray) }}
  - apiGroups: [{{ .group | quote }}]
    apiVersions: ["*"]
    operations: ["UPDATE"]
    resources: [{{ printf "%s/status" .resource | quote }}]
    scope: {{ .scope | quote }}
{{- end }}
{{- range $key := list "namespaceSelector" "objectSelector" }}
{{- with get $w $key }}
{{ $key }}:
  {{- toYaml . | nindent 2 }}
{{- else }}
{{ $key }}: {}
{{- end }}
{{- end }}
{{- $conditions := list }}
{{- if .self }}
{{- $conditions = append $conditions (dict "name" "not-wfe-admission-itself" "expression" (printf "request.userInfo.username != '%s'" (include "wfe-admission.serviceAccountUser" $))) }}
{{- end }}
{{- if and .mutate $w.mutatingMatchCondition }}
{{- with include "wfe-admission.mutateMatchCondition" $ }}
{{- $conditions = append $conditions (dict "name" "status-may-need-combining" "expression" .) }}
{{- end }}
{{- end }}
{{- if and .validate $w.validatingMatchCondition }}
{{- $conditions = append $conditions (dict "name" "phase-or-block-clearance-may-change" "expression" (include "wfe-admission.validateMatchCondition" $)) }}
{{- end }}
{{- $conditions = concat $conditions (default list $w.matchConditions) }}
{{- with $conditions }}
matchConditions:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* A CEL string literal (single-quoted) for a field name. */}}
{{- define "wfe-admission.celString" -}}
'{{ . | replace "\\" "\\\\" | replace "'" "\\'" | replace "\n" "\\n" | replace "\r" "\\r" | replace "\t" "\\t" }}'
{{- end }}

{{/*
The validating webhook's built-in match condition: call it only when the update may be denied
(a new or non-string phase, a changed blockClearance, a status that is not an object). The
same text as `policy::match_conditions::validate_match_condition` in the webhook; the chart
tests compare the two. The field names are the policy's (the values schema keeps the defaults
today).
*/}}
{{- define "wfe-admission.validateMatchCondition" -}}
{{- $p := include "wfe-admission.celString" (dig "phase" "field" "phase" .Values.policy) }}
{{- $c := include "wfe-admission.celString" (dig "blockClearance" "field" "blockClearance" .Values.policy) -}}
request.operation == 'UPDATE' && has(object.status) && !(type(object.status) == map && (!({{ $p }} in object.status) || (type(object.status[{{ $p }}]) == string && has(oldObject.status) && type(oldObject.status) == map && {{ $p }} in oldObject.status && type(oldObject.status[{{ $p }}]) == string && object.status[{{ $p }}] == oldObject.status[{{ $p }}])) && (!({{ $c }} in object.status) || (has(oldObject.status) && type(oldObject.status) == map && {{ $c }} in oldObject.status && type(object.status[{{ $c }}]) == type(oldObject.status[{{ $c }}]) && object.status[{{ $c }}] == oldObject.status[{{ $c }}])))
{{- end }}

{{/* A CEL list literal of string literals, in the given order. */}}
{{- define "wfe-admission.celList" -}}
{{- $items := list }}
{{- range . }}
{{- $items = append $items (include "wfe-admission.celString" .) }}
{{- end -}}
[{{ join ", " $items }}]
{{- end }}

{{/*
The mutating webhook's built-in match condition: skip a write by the controller (its user
patterns or groups) that combining provably leaves as sent: same status keys, only plain
controller fields changed, each condition the stored one at its index or (a controller type)
with the same type, status and lastTransitionTime, derived fields already coherent. The same
text as `policy::match_conditions::mutate_match_condition`; the chart tests compare the two.
Empty (no condition, every write combined) when the policy has no controller writer with
users or groups, or when a key it depends on was removed from the values (the webhook would
fall back to its built-in default, which this template cannot see).
*/}}
{{- define "wfe-admission.mutateMatchCondition" -}}
{{- $p := .Values.policy }}
{{- $ctl := default dict (dig "writers" "controller" nil $p) }}
{{- $cond := default dict $p.conditions }}
{{- $who := list }}
{{- range $u := default list $ctl.users }}
{{- $re := printf "^%s$" (regexQuoteMeta $u | replace "\\*" "[^:]*") }}
{{- $who = append $who (printf "request.userInfo.username.matches(%s)" (include "wfe-admission.celString" $re)) }}
{{- end }}
{{- with $ctl.groups }}
{{- $who = append $who (printf "request.userInfo.groups.exists(g, g in %s)" (include "wfe-admission.celList" .)) }}
{{- end }}
{{- if and $who (hasKey $p "fields") (hasKey $p "defaultFieldOwners") (hasKey $p "writeOnce") (hasKey $cond "owners") (hasKey $cond "defaultOwners") }}
{{- $cf := dig "conditions" "field" "conditions" $p }}
{{- $st := dig "derived" "startTime" "startTime" $p }}
{{- $ct := dig "derived" "completionTime" "completionTime" $p }}
{{- $fd := dig "derived" "failureDetails" "failureDetails" $p }}
{{- $fdr := dig "derived" "failureDetailsReason" "reason" $p }}
{{- $fr := dig "derived" "failureReason" "failureReason" $p }}
{{- $protected := concat (list (dig "phase" "field" "phase" $p) (dig "blockClearance" "field" "blockClearance" $p) $st $ct (dig "derived" "duration" "duration" $p) $fr) (default list $p.writeOnce) }}
{{- $may := list }}
{{- range $k, $owners := $p.fields }}
{{- if and (has "controller" $owners) (not (has $k $protected)) (ne $k $cf) }}
{{- $may = append $may $k }}
{{- end }}
{{- end }}
{{- $keyMay := printf "k in %s" (include "wfe-admission.celList" $may) }}
{{- if has "controller" $p.defaultFieldOwners }}
{{- $listed := concat (keys $p.fields) $protected (list $cf) | uniq | sortAlpha }}
{{- $keyMay = printf "%s || !(k in %s)" $keyMay (include "wfe-admission.celList" $listed) }}
{{- end }}
{{- $types := list }}
{{- range $t, $owners := $cond.owners }}
{{- if has "controller" $owners }}
{{- $types = append $types $t }}
{{- end }}
{{- end }}
{{- $typeOwned := printf "c['type'] in %s" (include "wfe-admission.celList" $types) }}
{{- if has "controller" $cond.defaultOwners }}
{{- $typeOwned = printf "%s || !(c['type'] in %s)" $typeOwned (include "wfe-admission.celList" (keys $cond.owners | sortAlpha)) }}
{{- end }}
{{- $c := include "wfe-admission.celString" $cf }}
{{- $nc := printf "object.status[%s]" $c }}
{{- $oc := printf "oldObject.status[%s]" $c }}
{{- $o := printf "%s[i]" $oc }}
{{- $same := list }}
{{- range $key := list "status" "lastTransitionTime" }}
{{- $same = append $same (printf "('%s' in c ? '%s' in %s && %s['%s'] == c['%s'] : !('%s' in %s))" $key $key $o $o $key $key $key $o) }}
{{- end }}
{{- $entries := printf "%s.all(i, c, type(c) == map && 'type' in c && type(c['type']) == string && (%s == c || (type(%s) == map && 'type' in %s && %s['type'] == c['type'] && %s && %s && (%s))))" $nc $o $o $o $o (index $same 0) (index $same 1) $typeOwned }}
{{- $unique := printf "%s.all(i, c, %s.all(j, d, j <= i || d['type'] != c['type']))" $nc $nc }}
{{- $start := include "wfe-admission.celString" $st }}
{{- $end := include "wfe-admission.celString" $ct }}
{{- $fdq := include "wfe-admission.celString" $fd }}
{{- $fdrq := include "wfe-admission.celString" $fdr }}
{{- $frq := include "wfe-admission.celString" $fr -}}
!(request.operation == 'UPDATE' && ({{ join " || " $who }}) && has(object.status) && type(object.status) == map && has(oldObject.status) && type(oldObject.status) == map && size(object.status) == size(oldObject.status) && object.status.all(k, k in oldObject.status && (k == {{ $c }} || (type(object.status[k]) == type(oldObject.status[k]) && object.status[k] == oldObject.status[k]) || {{ $keyMay }})) && (!({{ $c }} in object.status) || ({{ $c }} in oldObject.status && type({{ $nc }}) == list && type({{ $oc }}) == list && size({{ $nc }}) == size({{ $oc }}) && {{ $entries }} && {{ $unique }})) && !({{ $start }} in object.status && {{ $end }} in object.status) && (!({{ $fdq }} in object.status) || type(object.status[{{ $fdq }}]) != map || !({{ $fdrq }} in object.status[{{ $fdq }}]) || type(object.status[{{ $fdq }}][{{ $fdrq }}]) != string || ({{ $frq }} in object.status && type(object.status[{{ $frq }}]) == string && object.status[{{ $frq }}] == object.status[{{ $fdq }}][{{ $fdrq }}])))
{{- end }}
{{- end }}

{{/*
"true" when the WorkflowExecution CRD is already in the cluster and this release does not own it
(kubernaut's chart installs it from its crds/ folder, without Helm's ownership annotations).
Empty during `helm template`, which sees no cluster.
*/}}
{{- define "wfe-admission.crdOwnedElsewhere" -}}
{{- $existing := lookup "apiextensions.k8s.io/v1" "CustomResourceDefinition" "" "workflowexecutions.kubernaut.ai" -}}
{{- if $existing -}}
{{- $annotations := dig "metadata" "annotations" dict $existing -}}
{{- $ours := and (eq (get $annotations "meta.helm.sh/release-name") .Release.Name) (eq (get $annotations "meta.helm.sh/release-namespace") .Release.Namespace) -}}
{{- if not $ours }}true{{ end -}}
{{- end -}}
{{- end }}
