#!/usr/bin/env bash
# Starts a minimal but real control plane (etcd + kube-apiserver) on loopback,
# owned by one work directory, for end-to-end tests of the admission webhook.
#
# Usage: start.sh <workdir>
#
# Binaries: $WFE_K8S_BIN_DIR if set, otherwise whatever build.sh prints (cached).
# Extra kube-apiserver flags: $WFE_KUBE_APISERVER_EXTRA_ARGS (word-split).
# Audit log: with $WFE_AUDIT=1, every create, update, patch and delete of WorkflowExecutions
# and their status is logged at RequestResponse level to logs/audit.log (KUBE_AUDIT_LOG).
# Owner: with $WFE_OWNER_PID set, a detached watchdog runs stop.sh once that pid is gone (the
# test process was killed before it could stop the plane); its log is logs/watchdog.log.
#
# Writes into <workdir>:
#   env          shell-sourceable exports (see the end of this file for the names)
#   kubeconfig   admin (wfe-admin, system:masters) via client certificate
#   pids         one pid per line: kube-apiserver first, then etcd
#   pki/         CA, serving cert, service-account keys, tokens.csv, client certs
#                (client-admin.*, client-operator.*), and the client pair and CA the API
#                server presents to webhooks (webhook-client*, admission-config.yaml)
#   logs/        etcd.log, kube-apiserver.log, audit.log (with WFE_AUDIT=1)
#   etcd-data/   etcd's data dir
# Stop with stop.sh <workdir>. Needs: openssl, curl, python3 (free ports) or bash.
set -euo pipefail
# Everything here talks to loopback; never route it through a configured proxy.
export no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}" NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"

die() { printf 'start.sh: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'start.sh: %s\n' "$*" >&2; }

[[ $# -eq 1 && -n "$1" ]] || die "usage: start.sh <workdir>"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
mkdir -p "$1"
WD="$(cd "$1" && pwd -P)"

for tool in openssl curl; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done

# Refuse to start twice over a live control plane: its ports/data would clash.
if [[ -f "$WD/pids" ]]; then
  while read -r pid; do
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null &&
      tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$WD/"; then
      die "a control plane is already running from $WD (pid $pid); run stop.sh first"
    fi
  done <"$WD/pids"
fi

BIN_DIR="${WFE_K8S_BIN_DIR:-}"
if [[ -z "$BIN_DIR" ]]; then
  BIN_DIR="$("$here/build.sh" | tail -n 1)"
fi
[[ -x "$BIN_DIR/kube-apiserver" && -x "$BIN_DIR/etcd" ]] ||
  die "no kube-apiserver/etcd in $BIN_DIR"

PKI="$WD/pki"
LOGS="$WD/logs"
# Only our own subdirectories are reset; anything else in <workdir> is left alone.
rm -rf "$PKI" "$LOGS" "$WD/etcd-data"
rm -f "$WD/env" "$WD/kubeconfig" "$WD/pids"
mkdir -p "$PKI" "$LOGS"
chmod 700 "$PKI"

# If anything below fails, do not leave half a control plane running.
started=0
cleanup_on_failure() {
  local rc=$?
  if ((rc != 0)); then
    if [[ -s "$LOGS/kube-apiserver.log" ]]; then
      log "kube-apiserver log tail:"
      tail -n 40 "$LOGS/kube-apiserver.log" >&2 || true
    fi
    if ((started)); then "$here/stop.sh" "$WD" >&2 || true; fi
  fi
}
trap cleanup_on_failure EXIT

# --- free loopback ports --------------------------------------------------
# Ask the kernel for distinct free ports (python3), or probe random ones.
# There is a small window between choosing and binding; acceptable for tests.
free_ports() {
  local n=$1
  if command -v python3 >/dev/null 2>&1; then
    python3 - "$n" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
PY
    return
  fi
  local -a got=()
  local p tries=0
  while ((${#got[@]} < n && tries < 500)); do
    tries=$((tries + 1))
    p=$((20000 + RANDOM % 30000))
    [[ " ${got[*]} " == *" $p "* ]] && continue
    # A refused connection means nobody listens there.
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then got+=("$p"); fi
  done
  ((${#got[@]} == n)) || return 1
  printf '%s\n' "${got[@]}"
}
mapfile -t ports < <(free_ports 3)
((${#ports[@]} == 3)) || die "could not find free loopback ports"
ETCD_PORT=${ports[0]}
ETCD_PEER_PORT=${ports[1]}
APISERVER_PORT=${ports[2]}

# --- certificates -----------------------------------------------------------
# One CA signs the serving certificate and all client certificates, so a
# client only needs ca.crt and the apiserver only needs one --client-ca-file.
log "generating certificates in $PKI"
# Quiet unless it fails, then show why.
openssl_q() {
  local err
  if ! err="$(openssl "$@" 2>&1 >/dev/null)"; then
    printf 'openssl %s failed:\n%s\n' "$1" "$err" >&2
    return 1
  fi
}
openssl_q req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
  -keyout "$PKI/ca.key" -out "$PKI/ca.crt" -subj "/CN=wfe-e2e-ca" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"

# sign <name> <subject> <extfile-content>
sign() {
  local name=$1 subj=$2 ext=$3
  openssl_q req -newkey rsa:2048 -nodes -sha256 \
    -keyout "$PKI/$name.key" -out "$PKI/$name.csr" -subj "$subj"
  printf '%s\n' "$ext" >"$PKI/$name.ext"
  openssl_q x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt"
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

# Serving cert: loopback plus the in-cluster names a real apiserver carries.
sign apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"

# The client certificate kube-apiserver presents to admission webhooks, from a CA of its own:
# a webhook that trusts only this CA (serve --client-ca) answers nobody else, not even a
# holder of an admin's client certificate. The AdmissionConfiguration hands the pair to both
# webhook admission plugins for every webhook host ("*").
openssl_q req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
  -keyout "$PKI/webhook-client-ca.key" -out "$PKI/webhook-client-ca.crt" \
  -subj "/CN=wfe-e2e-webhook-client-ca" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
openssl_q req -newkey rsa:2048 -nodes -sha256 -keyout "$PKI/webhook-client.key" \
  -out "$PKI/webhook-client.csr" -subj "/CN=kube-apiserver-webhook-client"
printf '%s\n' "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth" >"$PKI/webhook-client.ext"
openssl_q x509 -req -in "$PKI/webhook-client.csr" -CA "$PKI/webhook-client-ca.crt" \
  -CAkey "$PKI/webhook-client-ca.key" -CAcreateserial -days 3650 -sha256 \
  -extfile "$PKI/webhook-client.ext" -out "$PKI/webhook-client.crt"
rm -f "$PKI/webhook-client.csr" "$PKI/webhook-client.ext"
cat >"$PKI/webhook-kubeconfig.yaml" <<EOF
apiVersion: v1
kind: Config
users:
- name: "*"
  user:
    client-certificate: $PKI/webhook-client.crt
    client-key: $PKI/webhook-client.key
EOF
cat >"$PKI/admission-config.yaml" <<EOF
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: ValidatingAdmissionWebhook
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: $PKI/webhook-kubeconfig.yaml
- name: MutatingAdmissionWebhook
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: $PKI/webhook-kubeconfig.yaml
EOF

# Service-account token signing key pair.
openssl_q genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key"
openssl_q pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"

# --- identities -------------------------------------------------------------
# id | user | groups (comma separated). Each gets a bearer token (tokens.csv), as
# service accounts do in a real cluster. The human identities (admin, operator) also
# get a client certificate (CN=user, O=group...). Service-account names do not fit:
# X.509 limits a CN to 64 characters and the controller's name has 68.
identities=(
  "admin|wfe-admin|system:masters"
  "controller|system:serviceaccount:kubernaut-system:workflowexecution-controller|system:serviceaccounts,system:serviceaccounts:kubernaut-system,system:authenticated"
  "executor|system:serviceaccount:kubernaut-system:workflowexecution-executor|system:serviceaccounts,system:serviceaccounts:kubernaut-system,system:authenticated"
  "operator|alice@example.com|sre"
  "webhook|system:serviceaccount:wfe-system:wfe-admission|system:serviceaccounts,system:serviceaccounts:wfe-system,system:authenticated"
  "orchestrator|system:serviceaccount:kubernaut-system:remediationorchestrator-controller|system:serviceaccounts,system:serviceaccounts:kubernaut-system,system:authenticated"
  "kubernaut|system:serviceaccount:kubernaut:workflowexecution-controller|system:serviceaccounts,system:serviceaccounts:kubernaut,system:authenticated"
)
declare -A TOKEN USERNAME
: >"$PKI/tokens.csv"
chmod 600 "$PKI/tokens.csv"
for entry in "${identities[@]}"; do
  IFS='|' read -r id user groups <<<"$entry"
  TOKEN[$id]="wfe-$id-$(openssl rand -hex 16)"
  USERNAME[$id]="$user"
  # token,user,uid,"group1,group2"
  printf '%s,%s,%s,"%s"\n' "${TOKEN[$id]}" "$user" "wfe-e2e-$id" "$groups" >>"$PKI/tokens.csv"
  [[ "$id" == admin || "$id" == operator ]] || continue
  subj="/CN=$user"
  IFS=',' read -r -a gs <<<"$groups"
  for g in "${gs[@]}"; do subj+="/O=$g"; done
  sign "client-$id" "$subj" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
done

# --- etcd -------------------------------------------------------------------
# Plain HTTP on loopback: nothing else can reach it, and TLS would only cost CPU.
# --unsafe-no-fsync: throwaway data, and fsync dominates latency on CI disks.
log "starting etcd on 127.0.0.1:$ETCD_PORT"
ETCD_URL="http://127.0.0.1:$ETCD_PORT"
"$BIN_DIR/etcd" \
  --name=wfe-e2e \
  --data-dir="$WD/etcd-data" \
  --listen-client-urls="$ETCD_URL" \
  --advertise-client-urls="$ETCD_URL" \
  --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster="wfe-e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
  --unsafe-no-fsync \
  --log-level=warn \
  </dev/null >"$LOGS/etcd.log" 2>&1 &
ETCD_PID=$!
started=1
echo "$ETCD_PID" >"$WD/pids"

# Owner watchdog: when $WFE_OWNER_PID (e.g. the test process) disappears without running
# stop.sh (killed, crashed), stop the control plane instead of leaving it orphaned. It ends by
# itself once stop.sh has run (no pids file). Detached from our stdout/stderr so that a caller
# reading our output to EOF does not wait for it.
if [[ -n "${WFE_OWNER_PID:-}" ]]; then
  [[ "$WFE_OWNER_PID" =~ ^[0-9]+$ ]] || die "WFE_OWNER_PID must be a pid, got $WFE_OWNER_PID"
  kill -0 "$WFE_OWNER_PID" 2>/dev/null || die "WFE_OWNER_PID $WFE_OWNER_PID is not running"
  (
    trap '' INT HUP
    while [[ -f "$WD/pids" ]] && kill -0 "$WFE_OWNER_PID" 2>/dev/null; do sleep 1; done
    if [[ -f "$WD/pids" ]]; then
      echo "watchdog: owner pid $WFE_OWNER_PID is gone; stopping the control plane"
      "$here/stop.sh" "$WD"
    fi
  ) </dev/null >>"$LOGS/watchdog.log" 2>&1 &
  log "watchdog: the control plane stops when pid $WFE_OWNER_PID exits"
fi

deadline=$((SECONDS + 30))
until curl -fsS "$ETCD_URL/health" 2>/dev/null | grep -q '"health":"true"'; do
  kill -0 "$ETCD_PID" 2>/dev/null || { tail -n 40 "$LOGS/etcd.log" >&2; die "etcd exited"; }
  ((SECONDS < deadline)) || { tail -n 40 "$LOGS/etcd.log" >&2; die "etcd not healthy after 30 s"; }
  sleep 0.2
done

# --- kube-apiserver -----------------------------------------------------------
log "starting kube-apiserver on https://127.0.0.1:$APISERVER_PORT"
extra=()
if [[ -n "${WFE_KUBE_APISERVER_EXTRA_ARGS:-}" ]]; then
  read -r -a extra <<<"$WFE_KUBE_APISERVER_EXTRA_ARGS"
fi
AUDIT_LOG=""
if [[ "${WFE_AUDIT:-}" == 1 ]]; then
  AUDIT_LOG="$LOGS/audit.log"
  # What `wfe-admission replay` reads: the guarded resource's writes with their bodies and
  # answers, nothing else.
  cat >"$PKI/audit-policy.yaml" <<'EOF_POLICY'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: RequestResponse
  verbs: [create, update, patch, delete]
  resources:
  - group: kubernaut.ai
    resources: [workflowexecutions, workflowexecutions/status]
- level: None
EOF_POLICY
  extra+=(--audit-policy-file="$PKI/audit-policy.yaml" --audit-log-path="$AUDIT_LOG"
    --audit-log-format=json --audit-log-mode=blocking)
fi
# Flags mirror a kubeadm-style cluster where it matters to a webhook: RBAC,
# the admission webhook plugins, service-account issuance, real TLS.
# --endpoint-reconciler-type=none: the lease reconciler refuses a loopback
# --advertise-address; it only maintains the `kubernetes` Service's endpoints,
# which nothing here uses.
"$BIN_DIR/kube-apiserver" \
  --etcd-servers="$ETCD_URL" \
  --bind-address=127.0.0.1 \
  --advertise-address=127.0.0.1 \
  --secure-port="$APISERVER_PORT" \
  --cert-dir="$PKI/generated" \
  --tls-cert-file="$PKI/apiserver.crt" \
  --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" \
  --token-auth-file="$PKI/tokens.csv" \
  --authorization-mode=Node,RBAC \
  --admission-control-config-file="$PKI/admission-config.yaml" \
  --enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultStorageClass,DefaultTolerationSeconds,ResourceQuota,MutatingAdmissionWebhook,ValidatingAdmissionWebhook \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" \
  --service-account-signing-key-file="$PKI/sa.key" \
  --service-cluster-ip-range=10.0.0.0/24 \
  --endpoint-reconciler-type=none \
  --allow-privileged=true \
  --profiling=false \
  ${extra[@]+"${extra[@]}"} \
  </dev/null >"$LOGS/kube-apiserver.log" 2>&1 &
APISERVER_PID=$!
# kube-apiserver first so stop.sh stops it before its storage.
printf '%s\n%s\n' "$APISERVER_PID" "$ETCD_PID" >"$WD/pids"

URL="https://127.0.0.1:$APISERVER_PORT"
admin_curl() {
  curl -sS --cacert "$PKI/ca.crt" --cert "$PKI/client-admin.crt" --key "$PKI/client-admin.key" "$@"
}

deadline=$((SECONDS + 90))
until [[ "$(admin_curl -m 5 "$URL/readyz" 2>/dev/null || true)" == "ok" ]]; do
  kill -0 "$APISERVER_PID" 2>/dev/null || die "kube-apiserver exited"
  if ((SECONDS >= deadline)); then
    admin_curl -m 5 "$URL/readyz?verbose" >&2 2>&1 || true
    die "kube-apiserver not ready after 90 s"
  fi
  sleep 0.5
done
# /readyz can be ok a moment before the bootstrap controller creates "default".
deadline=$((SECONDS + 30))
until admin_curl -f -o /dev/null "$URL/api/v1/namespaces/default" 2>/dev/null; do
  ((SECONDS < deadline)) || die "namespace default does not exist after 30 s"
  sleep 0.5
done

# --- kubeconfig and env -------------------------------------------------------
cat >"$WD/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: wfe-e2e
  cluster:
    server: $URL
    certificate-authority: $PKI/ca.crt
users:
- name: wfe-admin
  user:
    client-certificate: $PKI/client-admin.crt
    client-key: $PKI/client-admin.key
contexts:
- name: wfe-e2e
  context:
    cluster: wfe-e2e
    user: wfe-admin
    namespace: default
current-context: wfe-e2e
EOF
chmod 600 "$WD/kubeconfig"

{
  printf '# Written by start.sh; source it: . %s\n' "$WD/env"
  kv() { printf 'export %s=%q\n' "$1" "$2"; }
  kv WFE_E2E_WORKDIR "$WD"
  kv KUBE_APISERVER_URL "$URL"
  kv KUBE_APISERVER_PORT "$APISERVER_PORT"
  kv KUBE_CA_FILE "$PKI/ca.crt"
  kv WFE_WEBHOOK_CLIENT_CA "$PKI/webhook-client-ca.crt"
  kv KUBECONFIG "$WD/kubeconfig"
  kv KUBE_APISERVER_PID "$APISERVER_PID"
  kv ETCD_PID "$ETCD_PID"
  kv ETCD_URL "$ETCD_URL"
  kv KUBE_APISERVER_LOG "$LOGS/kube-apiserver.log"
  kv ETCD_LOG "$LOGS/etcd.log"
  kv KUBE_AUDIT_LOG "$AUDIT_LOG"
  kv WFE_K8S_BIN_DIR "$BIN_DIR"
  for entry in "${identities[@]}"; do
    IFS='|' read -r id _ _ <<<"$entry"
    ID="${id^^}"
    kv "WFE_TOKEN_$ID" "${TOKEN[$id]}"
    kv "WFE_USER_$ID" "${USERNAME[$id]}"
    if [[ -f "$PKI/client-$id.crt" ]]; then
      kv "WFE_CLIENT_CERT_$ID" "$PKI/client-$id.crt"
      kv "WFE_CLIENT_KEY_$ID" "$PKI/client-$id.key"
    fi
  done
} >"$WD/env"
chmod 600 "$WD/env"

"$here/bootstrap.sh" "$WD"

trap - EXIT
log "ready: $URL (pids $APISERVER_PID $ETCD_PID); source $WD/env"
