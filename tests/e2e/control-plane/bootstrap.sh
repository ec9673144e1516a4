#!/usr/bin/env bash
# Creates what a plain install would find: the writers' namespaces, and RBAC that
# grants the test identities what they need. As the admin, through the REST API
# (no kubectl here). Server-side apply makes it idempotent: re-run at will.
# start.sh calls it; it needs <workdir>/env written by start.sh.
#
# Usage: bootstrap.sh <workdir>
set -euo pipefail
# Everything here talks to loopback; never route it through a configured proxy.
export no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}" NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"

[[ $# -eq 1 && -f "$1/env" ]] || { echo "usage: bootstrap.sh <workdir> (after start.sh)" >&2; exit 2; }
# shellcheck source=/dev/null
. "$1/env"

# apply <api path of the named object> <json body>
apply() {
  local path=$1 body=$2 out
  out="$(mktemp)"
  local code
  code="$(curl -sS -o "$out" -w '%{http_code}' -X PATCH \
    --cacert "$KUBE_CA_FILE" -H "Authorization: Bearer $WFE_TOKEN_ADMIN" \
    -H 'Content-Type: application/apply-patch+yaml' \
    --data-binary "$body" \
    "$KUBE_APISERVER_URL$path?fieldManager=wfe-e2e-bootstrap&force=true")"
  if [[ "$code" != 2* ]]; then
    echo "bootstrap.sh: PATCH $path -> HTTP $code" >&2
    cat "$out" >&2
    rm -f "$out"
    return 1
  fi
  rm -f "$out"
}

# Namespaces of the service-account identities (the token file does not need
# them, but webhook configurations, Events and tests may refer to them).
for ns in kubernaut-system wfe-system; do
  apply "/api/v1/namespaces/$ns" "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"$ns\"}}"
done

RBAC=/apis/rbac.authorization.k8s.io/v1

# Status writers: controller, executor, operator, orchestrator, kubernaut's controller as the
# default policy sees it (controller and executor in one), and the webhook's own status manager.
apply "$RBAC/clusterroles/wfe-e2e:workflowexecution-writer" '{
  "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
  "metadata": {"name": "wfe-e2e:workflowexecution-writer"},
  "rules": [{
    "apiGroups": ["kubernaut.ai", "loose.kubernaut.ai", "unguarded.kubernaut.ai"],
    "resources": ["workflowexecutions", "workflowexecutions/status"],
    "verbs": ["get", "list", "watch", "update", "patch"]
  }]
}'
# ServiceAccount subjects match the token users system:serviceaccount:<ns>:<name>.
apply "$RBAC/clusterrolebindings/wfe-e2e:workflowexecution-writer" '{
  "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
  "metadata": {"name": "wfe-e2e:workflowexecution-writer"},
  "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "wfe-e2e:workflowexecution-writer"},
  "subjects": [
    {"kind": "ServiceAccount", "namespace": "kubernaut-system", "name": "workflowexecution-controller"},
    {"kind": "ServiceAccount", "namespace": "kubernaut-system", "name": "workflowexecution-executor"},
    {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice@example.com"},
    {"kind": "ServiceAccount", "namespace": "wfe-system", "name": "wfe-admission"},
    {"kind": "ServiceAccount", "namespace": "kubernaut-system", "name": "remediationorchestrator-controller"},
    {"kind": "ServiceAccount", "namespace": "kubernaut", "name": "workflowexecution-controller"}
  ]
}'

# The webhook: records Events (both APIs) and injects its CA into its configurations.
apply "$RBAC/clusterroles/wfe-e2e:wfe-admission" '{
  "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
  "metadata": {"name": "wfe-e2e:wfe-admission"},
  "rules": [
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": ["admissionregistration.k8s.io"],
     "resources": ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"],
     "verbs": ["get", "list", "patch"]}
  ]
}'
apply "$RBAC/clusterrolebindings/wfe-e2e:wfe-admission" '{
  "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
  "metadata": {"name": "wfe-e2e:wfe-admission"},
  "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "wfe-e2e:wfe-admission"},
  "subjects": [{"kind": "ServiceAccount", "namespace": "wfe-system", "name": "wfe-admission"}]
}'
echo "bootstrap.sh: namespaces and RBAC applied" >&2
