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
{{- define "wfe-admission.clientCaConfigMapName" -}}
{{- printf "%s-client-ca" (include "wfe-admission.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

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

{{/*
Whether the webhooks arm themselves: installed failing open, they get failurePolicy Fail from
the webhook once it answers where the API server calls it (self-managed mode only: the webhook
may edit its configurations there).
*/}}
{{- define "wfe-admission.armsItself" -}}
{{- if and (eq .Values.certificates.mode "self-managed") .Values.webhook.armWhenReady (eq .Values.webhook.failurePolicy "Fail") }}true{{- end }}
{{- end }}

{{/*
failurePolicy of one configuration. Arming: Ignore until the live configuration is armed, then
Fail, so that an upgrade never disarms it (a value the chart changed would be patched back).
`helm template` has no live objects and renders Ignore. Call with (dict "ctx" $ "kind" Kind
"name" name).
*/}}
{{- define "wfe-admission.failurePolicy" -}}
{{- $ := .ctx }}
{{- if include "wfe-admission.armsItself" $ }}
{{- $live := lookup "admissionregistration.k8s.io/v1" .kind "" .name }}
{{- $armed := false }}
{{- range (dig "webhooks" list $live) }}
{{- if eq (default "" .failurePolicy) "Fail" }}{{ $armed = true }}{{ end }}
{{- end }}
{{- ternary "Fail" "Ignore" $armed }}
{{- else }}
{{- $.Values.webhook.failurePolicy }}
{{- end }}
{{- end }}

{{/* Annotations of both webhook configurations. */}}
{{- define "wfe-admission.webhookAnnotations" -}}
{{- $ann := deepCopy (default dict .Values.webhook.annotations) }}
{{- if include "wfe-admission.armsItself" . }}
{{- $_ := set $ann "wfe-admission.kubernaut.ai/failure-policy" .Values.webhook.failurePolicy }}
{{- end }}
{{- if eq .Values.certificates.mode "cert-manager" }}
{{- $_ := set $ann "cert-manager.io/inject-ca-from" (printf "%s/%s" .Release.Namespace (include "wfe-admission.servingCertificateName" .)) }}
{{- end }}
{{- if $ann }}
annotations:
  {{- toYaml $ann | nindent 2 }}
{{- end }}
{{- end }}

{{/*
What both webhooks share. Call with (dict "ctx" $ "kind" Kind "name" name "path" "/validate" "self"
true "validate" true),
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
failurePolicy: {{ include "wfe-admission.failurePolicy" (dict "ctx" $ "kind" .kind "name" .name) }}
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
{{- /* It compares condition lists index by index (two-variable comprehensions), which an API
server accepts in a new configuration from Kubernetes 1.33 on. */}}
{{- if and .mutate $w.mutatingMatchCondition (semverCompare ">=1.33.0-0" $.Capabilities.KubeVersion.Version) }}
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

{{/* A CEL list literal of string literals, in the given order. */}}
{{- define "wfe-admission.celList" -}}
{{- $items := list }}
{{- range . }}
{{- $items = append $items (include "wfe-admission.celString" .) }}
{{- end -}}
[{{ join ", " $items }}]
{{- end }}

{{/* CEL that is true when the request's user is one of a writer's users or groups; empty
when it names neither. `policy::match_conditions::cel::who`. */}}
{{- define "wfe-admission.celWho" -}}
{{- $who := list }}
{{- range $u := default list .users }}
{{- $re := printf "^%s$" (regexQuoteMeta $u | replace "\\*" "[^:]*") }}
{{- $who = append $who (printf "request.userInfo.username.matches(%s)" (include "wfe-admission.celString" $re)) }}
{{- end }}
{{- with .groups }}
{{- $who = append $who (printf "request.userInfo.groups.exists(g, g in %s)" (include "wfe-admission.celList" .)) }}
{{- end }}
{{- join " || " $who }}
{{- end }}

{{/* The stored phase of (index . 2) as /validate reads it; (list field initial old).
`cel::from_phase`. */}}
{{- define "wfe-admission.celFromPhase" -}}
{{- $p := include "wfe-admission.celString" (index . 0) }}
{{- $old := index . 2 -}}
(has({{ $old }}) && type({{ $old }}) == map && {{ $p }} in {{ $old }} && type({{ $old }}[{{ $p }}]) == string && {{ $old }}[{{ $p }}] != '' ? {{ $old }}[{{ $p }}] : {{ include "wfe-admission.celString" (index . 1) }})
{{- end }}

{{/* A move of the table by an owner of the phase; (dict "phase" "owners" "from" "to").
`cel::table_move`. */}}
{{- define "wfe-admission.celTableMove" -}}
{{- $values := default list .phase.values }}
{{- $rows := list }}
{{- range $f, $targets := default dict .phase.transitions }}
{{- if has $f $values }}
{{- $known := list }}
{{- range $t := default list $targets }}
{{- if has $t $values }}
{{- $known = append $known $t }}
{{- end }}
{{- end }}
{{- if $known }}
{{- $rows = append $rows (printf "%s: %s" (include "wfe-admission.celString" $f) (include "wfe-admission.celList" $known)) }}
{{- end }}
{{- end }}
{{- end }}
{{- if $rows }}
{{- $table := printf "{%s}" (join ", " $rows) -}}
(({{ .owners }}) && {{ .from }} in {{ $table }} && {{ .to }} in {{ $table }}[{{ .from }}])
{{- end }}
{{- end }}

{{/* The moves granted to writers (policy.moves); (dict "policy" "from" "to").
`cel::granted_move`. */}}
{{- define "wfe-admission.celGrantedMove" -}}
{{- $ctx := . }}
{{- $values := default list (dig "phase" "values" nil .policy) }}
{{- $branches := list }}
{{- range $name, $moves := default dict .policy.moves }}
{{- $who := include "wfe-admission.celWho" (default dict (dig "writers" $name nil $ctx.policy)) }}
{{- if $who }}
{{- range $m := default list $moves }}
{{- $froms := list }}
{{- range $f := default list $m.from }}
{{- if has $f $values }}
{{- $froms = append $froms $f }}
{{- end }}
{{- end }}
{{- if and $froms (has $m.to $values) }}
{{- $branches = append $branches (printf "((%s) && %s in %s && %s == %s)" $who $ctx.from (include "wfe-admission.celList" $froms) $ctx.to (include "wfe-admission.celString" $m.to)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- join " || " $branches }}
{{- end }}

{{/*
The validating webhook's built-in match condition: call it only when the update may be denied
(a phase move that is not legal for the user's writer, a changed blockClearance, a status that
is not an object). The same text as `policy::match_conditions::validate_match_condition` in
the webhook; the chart tests compare the two.
*/}}
{{- define "wfe-admission.validateMatchCondition" -}}
{{- $p := .Values.policy }}
{{- $ph := default dict $p.phase }}
{{- $pf := dig "phase" "field" "phase" $p }}
{{- $pq := include "wfe-admission.celString" $pf }}
{{- $c := include "wfe-admission.celString" (dig "blockClearance" "field" "blockClearance" $p) }}
{{- $from := include "wfe-admission.celFromPhase" (list $pf (dig "phase" "initial" "Pending" $p) "oldObject.status") }}
{{- $to := printf "object.status[%s]" $pq }}
{{- $moves := list (printf "%s == %s" $to $from) }}
{{- $ownerNames := dig "fields" $pf nil $p | default $p.defaultFieldOwners | default list }}
{{- $owners := list }}
{{- range $n := $ownerNames }}
{{- with include "wfe-admission.celWho" (default dict (dig "writers" $n nil $p)) }}
{{- $owners = append $owners . }}
{{- end }}
{{- end }}
{{- if $owners }}
{{- with include "wfe-admission.celTableMove" (dict "phase" $ph "owners" (join " || " $owners) "from" $from "to" $to) }}
{{- $moves = append $moves . }}
{{- end }}
{{- end }}
{{- with include "wfe-admission.celGrantedMove" (dict "policy" $p "from" $from "to" $to) }}
{{- $moves = append $moves . }}
{{- end -}}
request.operation == 'UPDATE' && has(object.status) && !(type(object.status) == map && (!({{ $pq }} in object.status) || (type({{ $to }}) == string && ({{ join " || " $moves }}))) && (!({{ $c }} in object.status) || (has(oldObject.status) && type(oldObject.status) == map && {{ $c }} in oldObject.status && type(object.status[{{ $c }}]) == type(oldObject.status[{{ $c }}]) && object.status[{{ $c }}] == oldObject.status[{{ $c }}])))
{{- end }}

{{/*
The mutating webhook's built-in match condition: skip a write by the controller (its user
patterns or groups) that combining provably leaves as sent: the keys it does not own and the
stored write-once fields sent as stored, the phase kept or moved as the table allows with its
time sent, the stored conditions in order with any new ones after them, derived fields already
coherent. The same text as
`policy::match_conditions::mutate_match_condition`; the chart tests compare the two. Empty (no
condition, every write combined) when the policy has no controller writer with users or groups,
or when a key it depends on was removed from the values (the webhook would fall back to its
built-in default, which this template cannot see).
*/}}
{{- define "wfe-admission.mutateMatchCondition" -}}
{{- $p := .Values.policy }}
{{- $ph := default dict $p.phase }}
{{- $cond := default dict $p.conditions }}
{{- $who := include "wfe-admission.celWho" (default dict (dig "writers" "controller" nil $p)) }}
{{- if and $who (hasKey $p "fields") (hasKey $p "defaultFieldOwners") (hasKey $p "writeOnce") (hasKey $cond "owners") (hasKey $cond "defaultOwners") (hasKey $ph "terminal") (hasKey $ph "running") }}
{{- $body := printf "type(o) == map && %s" (include "wfe-admission.mutateBody" $p) }}
{{- $stored := printf "[has(oldObject.status) ? oldObject.status : {}].all(o, %s)" $body -}}
!(request.operation == 'UPDATE' && ({{ $who }}) && has(object.status) && type(object.status) == map && [object.status].all(n, {{ $stored }}))
{{- end }}
{{- end }}

{{/* The mutating condition's checks of the sent status `n` against the stored one `o`; the
policy. `match_conditions::mutate_body`. */}}
{{- define "wfe-admission.mutateBody" -}}
{{- $p := . }}
{{- $ph := default dict $p.phase }}
{{- $cond := default dict $p.conditions }}
{{- $cf := dig "conditions" "field" "conditions" $p }}
{{- $pf := dig "phase" "field" "phase" $p }}
{{- $initial := dig "phase" "initial" "Pending" $p }}
{{- $st := dig "derived" "startTime" "startTime" $p }}
{{- $ct := dig "derived" "completionTime" "completionTime" $p }}
{{- $du := dig "derived" "duration" "duration" $p }}
{{- $fd := dig "derived" "failureDetails" "failureDetails" $p }}
{{- $fdr := dig "derived" "failureDetailsReason" "reason" $p }}
{{- $fr := dig "derived" "failureReason" "failureReason" $p }}
{{- $fixed := list $pf (dig "blockClearance" "field" "blockClearance" $p) $cf }}
{{- $writeOnce := default list $p.writeOnce | uniq | sortAlpha }}
{{- $plain := list }}
{{- range $k, $owners := $p.fields }}
{{- if and (has "controller" $owners) (not (has $k $fixed)) (not (has $k $writeOnce)) }}
{{- $plain = append $plain $k }}
{{- end }}
{{- end }}
{{- $first := list }}
{{- range $k := $writeOnce }}
{{- if has "controller" (dig $k nil $p.fields | default $p.defaultFieldOwners) }}
{{- $first = append $first $k }}
{{- end }}
{{- end }}
{{- $pq := include "wfe-admission.celString" $pf }}
{{- $c := include "wfe-admission.celString" $cf }}
{{- $keys := "" }}
{{- if has "controller" $p.defaultFieldOwners }}
{{- $checked := list }}
{{- range $k, $owners := $p.fields }}
{{- if not (has $k $plain) }}
{{- $checked = append $checked $k }}
{{- end }}
{{- end }}
{{- $checked = without (concat $checked $fixed $writeOnce | uniq | sortAlpha) $pf $cf }}
{{- $each := list }}
{{- range $k := $checked }}
{{- $q := include "wfe-admission.celString" $k }}
{{- $kept := printf "n[?%s] == o[?%s]" $q $q }}
{{- if has $k $first }}
{{- $kept = printf "(%s || o[?%s].orValue(null) == null)" $kept $q }}
{{- end }}
{{- $each = append $each $kept }}
{{- end }}
{{- $keys = join " && " $each | default "true" }}
{{- else }}
{{- $plainList := include "wfe-admission.celList" $plain }}
{{- $keys = printf "o.all(k, k in n || k in %s) && n.all(k, k == %s || k == %s || k in %s || n[?k] == o[?k] || (k in %s && o[?k].orValue(null) == null))" $plainList $pq $c $plainList (include "wfe-admission.celList" $first) }}
{{- end }}
{{- $to := printf "n[%s]" $pq }}
{{- $table := "" }}
{{- if has "controller" (dig $pf nil $p.fields | default $p.defaultFieldOwners) }}
{{- $table = include "wfe-admission.celTableMove" (dict "phase" $ph "owners" "true" "from" "f" "to" $to) }}
{{- end }}
{{- $from := printf "(%s in o && type(o[%s]) == string && o[%s] != '' ? o[%s] : %s)" $pq $pq $pq $pq (include "wfe-admission.celString" $initial) }}
{{- $stq := include "wfe-admission.celString" $st }}
{{- $ctq := include "wfe-admission.celString" $ct }}
{{- $sentStart := printf "(%s in n && type(n[%s]) == string)" $stq $stq }}
{{- $sentEnd := printf "(%s in n && type(n[%s]) == string)" $ctq $ctq }}
{{- $moved := printf "%s == %s" $to $from }}
{{- if $table }}
{{- $moved = printf "[%s].all(f, %s == f || (%s && (%s != %s || %s) && (!(%s in %s) || %s)))" $from $to $table $to (include "wfe-admission.celString" $ph.running) $sentStart $to (include "wfe-admission.celList" $ph.terminal) $sentEnd }}
{{- end }}
{{- $phase := printf "(%s in n ? type(%s) == string && (n[?%s] == o[?%s] && %s != '' || %s) : o[?%s].orValue(null) == null)" $pq $to $pq $pq $to $moved $pq }}
{{- $nc := printf "n[%s]" $c }}
{{- $typeOwned := "" }}
{{- if has "controller" $cond.defaultOwners }}
{{- $others := list }}
{{- range $t, $owners := $cond.owners }}
{{- if not (has "controller" $owners) }}
{{- $others = append $others $t }}
{{- end }}
{{- end }}
{{- $typeOwned = "true" }}
{{- if $others }}
{{- $typeOwned = printf "!(c['type'] in %s)" (include "wfe-admission.celList" $others) }}
{{- end }}
{{- else }}
{{- $mine := list }}
{{- range $t, $owners := $cond.owners }}
{{- if has "controller" $owners }}
{{- $mine = append $mine $t }}
{{- end }}
{{- end }}
{{- $typeOwned = printf "c['type'] in %s" (include "wfe-admission.celList" $mine) }}
{{- end }}
{{- $o := "oc[i]" }}
{{- $same := list }}
{{- range $key := list "status" "lastTransitionTime" }}
{{- $same = append $same (printf "('%s' in c ? '%s' in %s && %s['%s'] == c['%s'] : !('%s' in %s))" $key $key $o $o $key $key $key $o) }}
{{- end }}
{{- $entries := printf "%s.all(i, c, type(ts[i]) == string && ts.indexOf(ts[i]) == i && (i < size(oc) ? (%s == c || (type(%s) == map && 'type' in %s && %s['type'] == c['type'] && %s && %s && (%s))) : ((%s) && 'lastTransitionTime' in c && type(c['lastTransitionTime']) == string)))" $nc $o $o $o $o (index $same 0) (index $same 1) $typeOwned $typeOwned }}
{{- $types := printf "%s.map(c, type(c) == map && 'type' in c ? c['type'] : 0)" $nc }}
{{- $lists := printf "[%s in o ? o[%s] : []].all(oc, size(%s) >= size(oc) && [%s].all(ts, %s))" $c $c $nc $types $entries }}
{{- $conditions := printf "(%s in n ? type(%s) == list && (!(%s in o) || type(o[%s]) == list) && %s : !(%s in o))" $c $nc $c $c $lists $c }}
{{- $duq := include "wfe-admission.celString" $du }}
{{- $timeRe := include "wfe-admission.celString" "^20([0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|[0-9]{2}-(0[13-9]|1[0-2])-(29|30)|[0-9]{2}-(0[13578]|1[02])-31|(0[048]|[2468][048]|[13579][26])-02-29)T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z$" }}
{{- $durRe := include "wfe-admission.celString" "^([0-9]{1,6}h)?([0-9]{1,2}m)?[0-9]{1,2}s$" }}
{{- $duration := printf "(!(%s in n && %s in n) || (%s && n[%s].matches(%s) && %s && n[%s].matches(%s) && (%s in n && type(n[%s]) == string) && n[%s].matches(%s) && timestamp(n[%s]) - timestamp(n[%s]) - duration(n[%s]) in [duration('-1s'), duration('0s'), duration('1s')]))" $stq $ctq $sentStart $stq $timeRe $sentEnd $ctq $timeRe $duq $duq $duq $durRe $ctq $stq $duq }}
{{- $fdq := include "wfe-admission.celString" $fd }}
{{- $fdrq := include "wfe-admission.celString" $fdr }}
{{- $frq := include "wfe-admission.celString" $fr -}}
{{- $mirror := printf "(!(%s in n) || type(n[%s]) != map || !(%s in n[%s]) || type(n[%s][%s]) != string || (%s in n && type(n[%s]) == string && n[%s] == n[%s][%s]))" $fdq $fdq $fdrq $fdq $fdq $fdrq $frq $frq $frq $fdq $fdrq -}}
{{ $keys }} && {{ $phase }} && {{ $conditions }} && {{ $duration }} && {{ $mirror }}
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

{{/* The policy file the webhook reads, rendered from the values under `policy`: the policy
ConfigMap's, and the upgrade lint hook's candidate. */}}
{{- define "wfe-admission.policyFile" -}}
{{- $p := .Values.policy }}
{{- $writers := deepCopy (default dict $p.writers) }}
{{- $webhook := default dict (get $writers "webhook") }}
{{- if not (or $webhook.users $webhook.groups $webhook.anyOtherUser) }}
{{- $_ := set $writers "webhook" (dict "users" (list (include "wfe-admission.serviceAccountUser" .))) }}
{{- end }}
{{- /* The maps are rendered whole from the values (which hold the defaults), so that a key
removed in the values stays removed instead of merging back in from the webhook's defaults. */ -}}
{{- $policy := dict "writers" $writers "replaceMaps" true }}
{{- with $p.extraResources }}
{{- $extra := list }}
{{- range . }}
{{- $extra = append $extra (omit . "scope") }}
{{- end }}
{{- $_ := set $policy "extraResources" $extra }}
{{- end }}
{{- range $key := list "phase" "moves" "fields" "defaultFieldOwners" "conditions" "writeOnce" "blockClearance" "events" }}
{{- if hasKey $p $key }}
{{- $_ := set $policy $key (get $p $key) }}
{{- end }}
{{- end -}}
# wfe-admission policy, rendered by the Helm chart from the values under `policy`.
# Keys left out keep the webhook's built-in defaults; the maps here are whole (replaceMaps).
{{ toYaml $policy }}
{{- end }}
