#!/usr/bin/env bash
# Start a throwaway control plane (etcd, kube-apiserver, kube-controller-manager)
# on loopback for the operator's integration tests and benchmarks.
#
# Usage: tests/cluster/up.sh DIR
#   DIR must not exist or be empty; it receives certificates, data, logs
#   (DIR/<name>.log), pids (DIR/<name>.pid), exact command lines
#   (DIR/<name>.cmd, one argument per line), DIR/kubeconfig (admin, self-
#   contained), DIR/env (sourceable) and DIR/audit.log (the writes of the
#   operator's ServiceAccounts). Progress goes to stderr; the last
#   (and only) line on stdout is `export KUBECONFIG=DIR/kubeconfig`.
# Env:
#   REGCRED_CP_WATCH_PID  if set, a detached watchdog runs down.sh DIR once that
#                         process exits (for test binaries that may die without
#                         cleaning up, e.g. a cluster shared through a static).
#   REGCRED_K8S_VERSION   the Kubernetes release to run (versions.env: K8S_NEWEST, the
#                         default, or one of K8S_MATRIX); built on first use.
#   REGCRED_APISERVER_FLAGS  extra kube-apiserver flags, separated by spaces, e.g. the two that
#                         make 1.34 / 1.35 serve MutatingAdmissionPolicy v1beta1:
#                         --feature-gates=MutatingAdmissionPolicy=true
#                         --runtime-config=admissionregistration.k8s.io/v1beta1=true
#                         (restart-apiserver.sh keeps them: it reuses the saved command).
#   REGCRED_CP_READY_TIMEOUT (120), REGCRED_CP_STOP_GRACE (10), REGCRED_CACHE.
# Stop with tests/cluster/down.sh DIR.
set -euo pipefail

# shellcheck source=SCRIPTDIR/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

if [[ $# -ne 1 || -z "$1" ]]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
for tool in openssl python3 curl setsid base64; do
  command -v "$tool" >/dev/null || { log "FAILED: up: '$tool' not found on PATH"; exit 1; }
done
if [[ -e "$1" && -n "$(ls -A -- "$1")" ]]; then
  log "FAILED: up: $1 exists and is not empty (already running? use down.sh $1 first)"
  exit 1
fi

T0=$SECONDS
# Builds only on a cold cache; its stdout (the bin dir) is not ours to print.
bash "$CLUSTER_SCRIPTS_DIR/build.sh" >/dev/null

mkdir -p "$1"
DIR="$(cd "$1" && pwd)"
# Marks DIR as ours, so that down.sh never deletes a directory it did not make.
: >"$DIR/.regcred-cluster"
PKI="$DIR/pki"

# Until the end is reached, any exit (failure, Ctrl-C) stops what was started.
# DIR is kept so its logs can be read; down.sh DIR removes it.
UP_OK=0
# A signal can land while a ready check runs with stderr sent to /dev/null;
# keep a handle on the real stderr so the cleanup messages are seen.
exec 3>&2
on_exit() {
  if ((UP_OK == 0)); then
    exec 2>&3
    log "up.sh did not finish: stopping what it started (logs kept in $DIR)"
    stop_pieces "$DIR" watchdog kube-controller-manager kube-apiserver
    stop_pieces "$DIR" etcd
  fi
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- certificates -----------------------------------------------------------
# issue NAME SUBJECT EXTENSIONS: key + certificate signed by our CA.
issue() {
  local name="$1" subj="$2" ext="$3"
  openssl req -new -newkey rsa:2048 -nodes -subj "$subj" \
    -keyout "$PKI/$name.key" -out "$PKI/$name.csr"
  printf '%s\n' "$ext" >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt"
}

gen_pki() {
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 -subj "/CN=regcred-test-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -keyout "$PKI/ca.key" -out "$PKI/ca.crt"
  # rustls ignores the CN: the SAN must name what clients dial.
  issue serving "/CN=kube-apiserver" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost"
  # O=system:masters: bound to cluster-admin by the default RBAC policy.
  issue admin "/O=system:masters/CN=admin" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  # ServiceAccount token signing pair (apiserver signs/verifies, KCM signs legacy tokens).
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key"
  openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
}
log "generating certificates in $PKI"
if ! gen_pki >"$DIR/openssl.log" 2>&1; then
  fail pki "$DIR/openssl.log" "openssl failed"
fi

# --- ports --------------------------------------------------------------------
# Bind all at once so they are distinct; the kernel won't hand them out again
# right away, and each process below binds its own within a second or two.
read -r ETCD_PORT ETCD_PEER_PORT APISERVER_PORT < <(python3 -c '
import socket
socks = []
for _ in range(3):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
')
APISERVER_URL="https://127.0.0.1:$APISERVER_PORT"
ETCD_URL="http://127.0.0.1:$ETCD_PORT"

# write_cmd NAME ARG...: the exact command line, one argument per line, so
# restart-apiserver.sh (and a curious human) can reuse it verbatim.
write_cmd() {
  local name="$1"
  shift
  printf '%s\n' "$@" >"$DIR/$name.cmd"
}

# --- etcd -----------------------------------------------------------------------
# An 8 GiB backend quota (the default is 2): the benchmark's runs at 30,000 namespaces write
# millions of revisions between two compactions.
write_cmd etcd "$BIN_DIR/etcd" \
  --name=regcred-test \
  --data-dir="$DIR/etcd-data" \
  --listen-client-urls="$ETCD_URL" \
  --advertise-client-urls="$ETCD_URL" \
  --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster="regcred-test=http://127.0.0.1:$ETCD_PEER_PORT" \
  --quota-backend-bytes=8589934592 \
  --unsafe-no-fsync
log "starting etcd on $ETCD_URL"
start_piece "$DIR" etcd
wait_until "$DIR" etcd etcd_ready

# --- kube-apiserver ---------------------------------------------------------------
# Load headroom: a benchmark creates 10,000 namespaces, and the defaults
# (400 / 200, which API Priority and Fairness splits among priority levels)
# throttle a bulk client long before the apiserver or etcd is the limit.
# REGCRED_APISERVER_DEFAULT_LIMITS=true keeps the defaults (the benchmark's run
# against an API server as it ships).
APISERVER_LOAD_FLAGS=(
  --max-requests-inflight=2000
  --max-mutating-requests-inflight=1000
)
if [[ "${REGCRED_APISERVER_DEFAULT_LIMITS:-}" == "true" ]]; then
  APISERVER_LOAD_FLAGS=()
fi
# Fast SIGTERM: by default the apiserver's HTTP shutdown waits up to
# --request-timeout (60 s) for open watches; with this it answers 429 +
# Retry-After while it drains and then closes connections after 2 s, so
# restart-apiserver.sh and down.sh take seconds.
APISERVER_SHUTDOWN_FLAGS=(--shutdown-send-retry-after=true)
read -r -a APISERVER_EXTRA_FLAGS <<<"${REGCRED_APISERVER_FLAGS:-}"
# An audit log of every write by the operator's ServiceAccounts (DIR/audit.log): the witness of
# the test that a replica which lost its Lease writes nothing after.
cat >"$DIR/audit-policy.yaml" <<'POLICY'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  userGroups: ["system:serviceaccounts:regcred-system"]
  verbs: [create, update, patch, delete, deletecollection]
- level: None
POLICY
write_cmd kube-apiserver "$BIN_DIR/kube-apiserver" \
  --etcd-servers="$ETCD_URL" \
  --bind-address=127.0.0.1 \
  --secure-port="$APISERVER_PORT" \
  --advertise-address=127.0.0.1 \
  --endpoint-reconciler-type=none \
  --cert-dir="$DIR/apiserver-certs" \
  --tls-cert-file="$PKI/serving.crt" \
  --tls-private-key-file="$PKI/serving.key" \
  --client-ca-file="$PKI/ca.crt" \
  --authorization-mode=RBAC \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" \
  --service-account-signing-key-file="$PKI/sa.key" \
  --service-cluster-ip-range=10.0.0.0/24 \
  --audit-policy-file="$DIR/audit-policy.yaml" \
  --audit-log-path="$DIR/audit.log" \
  "${APISERVER_LOAD_FLAGS[@]}" \
  "${APISERVER_SHUTDOWN_FLAGS[@]}" \
  "${APISERVER_EXTRA_FLAGS[@]}"
log "starting kube-apiserver $K8S_VERSION on $APISERVER_URL"
start_piece "$DIR" kube-apiserver
wait_until "$DIR" kube-apiserver apiserver_ready "$DIR"

# --- admin kubeconfig and env (before KCM, which uses the kubeconfig) -----------
b64() { base64 -w0 <"$1"; }
cat >"$DIR/kubeconfig.tmp" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: regcred-test
  cluster:
    server: $APISERVER_URL
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(b64 "$PKI/admin.crt")
    client-key-data: $(b64 "$PKI/admin.key")
contexts:
- name: regcred-test
  context:
    cluster: regcred-test
    user: admin
current-context: regcred-test
KUBECONFIG
chmod 600 "$DIR/kubeconfig.tmp"
mv -f "$DIR/kubeconfig.tmp" "$DIR/kubeconfig"

{
  printf 'export %s=%q\n' \
    KUBECONFIG "$DIR/kubeconfig" \
    REGCRED_CP_DIR "$DIR" \
    APISERVER_URL "$APISERVER_URL" \
    APISERVER_PORT "$APISERVER_PORT" \
    ETCD_URL "$ETCD_URL" \
    ETCD_PORT "$ETCD_PORT" \
    ETCD_PEER_PORT "$ETCD_PEER_PORT" \
    CA_CERT "$PKI/ca.crt" \
    ADMIN_CERT "$PKI/admin.crt" \
    ADMIN_KEY "$PKI/admin.key" \
    K8S_VERSION "$K8S_VERSION" \
    ETCD_VERSION "$ETCD_VERSION" \
    REGCRED_CP_BIN_DIR "$BIN_DIR"
} >"$DIR/env"

# --- kube-controller-manager --------------------------------------------------------
# Only the controllers the operator relies on or the tests need: default
# ServiceAccounts (and their tokens), namespace deletion, ownerReference garbage
# collection, aggregated ClusterRoles, the kube-root-ca.crt ConfigMap, quota
# usage (a namespace at its Secret quota), ReplicaSets recreating evicted Pods,
# and PodDisruptionBudget status (which the Eviction API honours).
KCM_CONTROLLERS=serviceaccount,serviceaccount-token,namespace,garbagecollector,clusterrole-aggregation,root-ca-cert-publisher,resourcequota,replicaset,disruption
# Load headroom: with the client default (20 QPS, burst 30) the serviceaccount
# controller alone would need over 8 minutes to give 10,000 new namespaces
# their default ServiceAccount; with these, 2,000 namespaces take ~4 s here.
KCM_LOAD_FLAGS=(
  --kube-api-qps=500
  --kube-api-burst=1000
)
write_cmd kube-controller-manager "$BIN_DIR/kube-controller-manager" \
  --kubeconfig="$DIR/kubeconfig" \
  --controllers="$KCM_CONTROLLERS" \
  --service-account-private-key-file="$PKI/sa.key" \
  --root-ca-file="$PKI/ca.crt" \
  --leader-elect=false \
  --secure-port=0 \
  "${KCM_LOAD_FLAGS[@]}"
log "starting kube-controller-manager"
start_piece "$DIR" kube-controller-manager
default_sa_exists() {
  curl_admin "$DIR" --fail -o /dev/null "$APISERVER_URL/api/v1/namespaces/default/serviceaccounts/default"
}
wait_until "$DIR" kube-controller-manager default_sa_exists

# --- optional watchdog ------------------------------------------------------------
if [[ -n "${REGCRED_CP_WATCH_PID:-}" ]]; then
  write_cmd watchdog bash "$CLUSTER_SCRIPTS_DIR/watchdog.sh" "$DIR" "$REGCRED_CP_WATCH_PID"
  start_piece "$DIR" watchdog
  log "watchdog: down.sh $DIR will run when pid $REGCRED_CP_WATCH_PID exits"
fi

UP_OK=1
log "control plane up in $((SECONDS - T0))s: $APISERVER_URL (k8s $K8S_VERSION, etcd $ETCD_VERSION)"
log "source $DIR/env for ports and cert paths; stop with $CLUSTER_SCRIPTS_DIR/down.sh $DIR"
printf 'export KUBECONFIG=%q\n' "$DIR/kubeconfig"
