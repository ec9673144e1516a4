#!/usr/bin/env bash
# End-to-end smoke test of the control plane itself (no webhook involved):
# build (cached), start in a temp dir, install the CRD, create the sample object,
# move it to Running as the controller through the status subresource, read it
# back, check identities/RBAC/schema, and stop everything on exit.
#
# Usage: smoke.sh            (WFE_SMOKE_KEEP=1 keeps the temp dir for inspection)
set -euo pipefail
# Everything here talks to loopback; never route it through a configured proxy.
export no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}" NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
manifests="$(cd "$here/../manifests" && pwd -P)"
command -v python3 >/dev/null 2>&1 || { echo "smoke.sh: python3 is required" >&2; exit 1; }

BIN_DIR="$("$here/build.sh" | tail -n 1)"
WD="$(mktemp -d "${TMPDIR:-/tmp}/wfe-e2e-smoke.XXXXXX")"
up=0
finish() {
  local rc=$?
  "$here/stop.sh" "$WD" || true
  if ((rc != 0)); then
    echo "smoke.sh: FAILED (rc=$rc)" >&2
    # start.sh shows the log itself when it is what failed.
    if ((up)); then tail -n 30 "$WD/logs/kube-apiserver.log" >&2 2>/dev/null || true; fi
  fi
  if [[ "${WFE_SMOKE_KEEP:-}" == 1 ]]; then
    echo "smoke.sh: kept $WD" >&2
  else
    rm -rf "$WD"
  fi
  exit "$rc"
}
trap finish EXIT

fail() { echo "smoke.sh: FAIL: $*" >&2; exit 1; }
step() { echo "smoke.sh: $*" >&2; }

started=$SECONDS
up=0
WFE_K8S_BIN_DIR="$BIN_DIR" "$here/start.sh" "$WD"
up=1
step "control plane up in $((SECONDS - started)) s"
# shellcheck source=/dev/null
. "$WD/env"

# api <identity> <method> <path> [body] [content-type]
# Sets CODE and BODY; never fails by itself so callers can assert on CODE.
api() {
  local who=$1 method=$2 path=$3 body=${4:-} ctype=${5:-application/json} var token
  var="WFE_TOKEN_${who^^}"
  token="${!var}"
  local -a args=(-sS -X "$method" --cacert "$KUBE_CA_FILE" -H "Authorization: Bearer $token"
    -H "Accept: application/json" -o "$WD/resp" -w '%{http_code}')
  if [[ -n "$body" ]]; then args+=(-H "Content-Type: $ctype" --data-binary "$body"); fi
  CODE="$(curl "${args[@]}" "$KUBE_APISERVER_URL$path")" || CODE=000
  BODY="$(cat "$WD/resp" 2>/dev/null || true)"
}
expect() {
  local want=$1 what=$2
  [[ "$CODE" == "$want" ]] || fail "$what: HTTP $CODE, want $want: $BODY"
}
# jget <python expression on `o`>: evaluates against BODY (stdlib json only).
jget() { python3 -c 'import json,sys; o=json.loads(sys.stdin.read()); print(eval(sys.argv[1]))' "$1" <<<"$BODY"; }

# --- identities: the token file maps each token to the intended user/groups ------
for id in admin controller executor operator webhook; do
  api "$id" POST /apis/authentication.k8s.io/v1/selfsubjectreviews \
    '{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}'
  expect 201 "selfsubjectreview as $id"
  user="$(jget 'o["status"]["userInfo"]["username"]')"
  var="WFE_USER_${id^^}"
  [[ "$user" == "${!var}" ]] || fail "token $id authenticates as $user, want ${!var}"
done
api operator POST /apis/authentication.k8s.io/v1/selfsubjectreviews \
  '{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}'
[[ "$(jget '"sre" in o["status"]["userInfo"]["groups"]')" == True ]] || fail "operator lacks group sre"
# The client certificates authenticate as the same identities.
user="$(curl -sS --cacert "$KUBE_CA_FILE" --cert "$WFE_CLIENT_CERT_OPERATOR" --key "$WFE_CLIENT_KEY_OPERATOR" \
  -H 'Content-Type: application/json' -X POST \
  --data '{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}' \
  "$KUBE_APISERVER_URL/apis/authentication.k8s.io/v1/selfsubjectreviews" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["userInfo"]["username"])')"
[[ "$user" == "$WFE_USER_OPERATOR" ]] || fail "operator client cert authenticates as $user"
step "identities OK"

# --- CRD ----------------------------------------------------------------------
# The apiserver decodes YAML request bodies itself, so no YAML tooling is needed.
api admin POST /apis/apiextensions.k8s.io/v1/customresourcedefinitions \
  "$(cat "$manifests/crd.yaml")" application/yaml
expect 201 "create CRD"
deadline=$((SECONDS + 30))
while :; do
  api admin GET /apis/apiextensions.k8s.io/v1/customresourcedefinitions/workflowexecutions.kubernaut.ai
  established="$(jget 'any(c["type"]=="Established" and c["status"]=="True" for c in o.get("status",{}).get("conditions",[]))')"
  [[ "$established" == True ]] && break
  ((SECONDS < deadline)) || fail "CRD not Established after 30 s: $BODY"
  sleep 0.5
done
step "CRD established"

# --- create the sample (retry briefly: the new resource can 404 for a moment) ---
WFE=/apis/kubernaut.ai/v1alpha1/namespaces/default/workflowexecutions
deadline=$((SECONDS + 20))
while :; do
  api admin POST "$WFE" "$(cat "$manifests/sample-wfe.yaml")" application/yaml
  if [[ "$CODE" != 404 ]] || ((SECONDS >= deadline)); then break; fi
  sleep 0.5
done
expect 201 "create sample WorkflowExecution"
name="$(jget 'o["metadata"]["name"]')"
step "created $name"

# The operator may not create (only the admin does), and RBAC must say so.
api operator POST "$WFE" "$(cat "$manifests/sample-wfe.yaml")" application/yaml
expect 403 "operator create"

# --- status update as the controller, full PUT with resourceVersion -------------
api controller GET "$WFE/$name"
expect 200 "controller get"
put="$(jget 'json.dumps(dict(o, status={"phase": "Running", "observedGeneration": o["metadata"]["generation"], "conditions": [{"type": "ExecutionRunning", "status": "True", "reason": "Started", "message": "smoke", "lastTransitionTime": "2025-01-01T00:00:00Z"}]}))')"
api controller PUT "$WFE/$name/status" "$put"
expect 200 "controller PUT status"
api operator GET "$WFE/$name"
expect 200 "read back"
[[ "$(jget 'o["status"]["phase"]')" == Running ]] || fail "phase not Running after PUT: $BODY"
step "status PUT as controller: phase=Running"

# A merge patch with a condition that has only type+status is accepted (partial writers).
api executor PATCH "$WFE/$name/status" \
  '{"status":{"ephemeralCredentialIDs":[7],"conditions":[{"type":"AuditRecorded","status":"True"}]}}' \
  application/merge-patch+json
expect 200 "executor merge patch"

# --- schema and immutability (the CRD, not the webhook, rejects these) ---------
api controller PATCH "$WFE/$name/status" '{"status":{"phase":"Bogus"}}' application/merge-patch+json
expect 422 "phase outside the enum"
api admin PATCH "$WFE/$name" '{"spec":{"targetResource":"default/Deployment/other"}}' application/merge-patch+json
expect 422 "spec change"
[[ "$BODY" == *"spec is immutable"* ]] || fail "spec change rejected for the wrong reason: $BODY"

# --- the webhook identity can record events and read its configurations -------
api webhook POST /apis/events.k8s.io/v1/namespaces/default/events "{
  \"apiVersion\":\"events.k8s.io/v1\",\"kind\":\"Event\",
  \"metadata\":{\"name\":\"$name.smoke\"},
  \"eventTime\":\"2025-01-01T00:00:00.000000Z\",\"type\":\"Warning\",\"reason\":\"IllegalPhaseTransition\",
  \"action\":\"Deny\",\"note\":\"smoke\",\"reportingController\":\"wfe-admission\",\"reportingInstance\":\"wfe-admission-smoke\",
  \"regarding\":{\"apiVersion\":\"kubernaut.ai/v1alpha1\",\"kind\":\"WorkflowExecution\",\"namespace\":\"default\",\"name\":\"$name\"}}"
expect 201 "webhook creates events.k8s.io/v1 Event"
api webhook GET /apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations
expect 200 "webhook lists validatingwebhookconfigurations"
api webhook GET /api/v1/namespaces/default/secrets
expect 403 "webhook reads secrets"
step "RBAC OK"

# VmHWM is the peak resident set size of each process so far.
peak="$(awk '/^VmHWM:/ {s += $2} END {print int(s / 1024)}' \
  "/proc/$KUBE_APISERVER_PID/status" "/proc/$ETCD_PID/status" 2>/dev/null || echo '?')"
step "kube-apiserver+etcd peak RSS: ${peak} MiB"
echo "control-plane smoke: OK"
