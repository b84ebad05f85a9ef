#!/usr/bin/env bash
# The main job, end to end, on a fresh machine: a local control plane, the CRD and RBAC, the
# operator running under its own ServiceAccount, the sample RegistryCredential, a few
# namespaces, and what a user wants to see afterwards: which namespaces have the pull secret,
# which ServiceAccounts reference it, and the RegistryCredential's status.
#
# Usage: bash scripts/demo.sh           run the demo, then tear everything down
#        bash scripts/demo.sh --keep    leave it running (prints how to reach it and stop it)
#        bash scripts/demo.sh --down    stop a demo left running with --keep
#
# Without KUBECONFIG it starts its own control plane (tests/cluster/up.sh: etcd,
# kube-apiserver and kube-controller-manager built from their Go modules, ~5 min on the first
# run, cached after). With KUBECONFIG set it uses that cluster instead and, when done, removes
# only what it created there (the CRD and RBAC stay).
# The operator runs as a local process (the control plane has no kubelet to run its image),
# authenticated with a TokenRequest token of its ServiceAccount: it can do exactly what
# config/rbac grants.
# Env: REGCRED_DEMO_DIR (default ${TMPDIR:-/tmp}/regcred-demo): state, logs, the control plane.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$PWD"

MODE=run
case "${1:-}" in
  "") ;;
  --keep) MODE=keep ;;
  --down) MODE=down ;;
  -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: bash scripts/demo.sh [--keep | --down]" >&2; exit 2 ;;
esac

DEMO_DIR="${REGCRED_DEMO_DIR:-${TMPDIR:-/tmp}/regcred-demo}"
NS=regcred-system
CREDENTIAL=internal-corp
SOURCE=corp-pull
DEMO_LABEL=regcred.dev/demo
# Two namespaces of team payments before the RegistryCredential, one after it (to see a new
# namespace served on its own), one of payments that the sample's `*-sandbox` glob excludes, and
# one of another team.
NAMESPACES_BEFORE=(demo-payments-api demo-payments-sandbox demo-frontend)
NAMESPACE_AFTER=demo-payments-batch
declare -A TEAM=([demo-payments-api]=payments [demo-payments-sandbox]=payments
  [demo-payments-batch]=payments [demo-frontend]=web)

T0=$SECONDS
BOLD="" PLAIN=""
if [[ -t 2 ]]; then BOLD=$'\033[1m' PLAIN=$'\033[0m'; fi
step() { printf '\n%s==> %s%s  (%ss)\n' "$BOLD" "$*" "$PLAIN" "$((SECONDS - T0))" >&2; }
note() { printf '    %s\n' "$*" >&2; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }

# --- tools: kubectl (and kustomize, helm) built from their Go modules, cached ---------------
tools_bin="$(bash tests/cluster/build-tools.sh)" || die "could not build kubectl (tests/cluster/build-tools.sh)"
kubectl() { "$tools_bin/kubectl" "$@"; }

# --- state of a demo left running --------------------------------------------------------------
# DEMO_DIR/state (sourceable): DEMO_KUBECONFIG, OWN_CLUSTER (1: ours, under DEMO_DIR/cluster),
# OPERATOR_PID.
DEMO_KUBECONFIG="" OWN_CLUSTER=0 OPERATOR_PID=""
save_state() {
  printf 'DEMO_KUBECONFIG=%q\nOWN_CLUSTER=%q\nOPERATOR_PID=%q\n' \
    "$DEMO_KUBECONFIG" "$OWN_CLUSTER" "$OPERATOR_PID" >"$DEMO_DIR/state"
}
operator_alive() {
  [[ -n "$OPERATOR_PID" ]] && kill -0 "$OPERATOR_PID" 2>/dev/null &&
    grep -q regcred-operator "/proc/$OPERATOR_PID/cmdline" 2>/dev/null
}

stop_operator() {
  if operator_alive; then
    # SIGTERM: it finishes in-flight work and releases its Lease.
    kill -TERM "$OPERATOR_PID" 2>/dev/null || true
    for _ in $(seq 100); do operator_alive || break; sleep 0.1; done
    if operator_alive; then kill -KILL "$OPERATOR_PID" 2>/dev/null || true; fi
  fi
  OPERATOR_PID=""
}

# Removes what the demo made. On its own control plane that is the whole control plane; on a
# cluster from KUBECONFIG, the RegistryCredential (while the operator still runs, so that its
# finalizer removes the copies and ServiceAccount entries), the demo namespaces and the source.
teardown() {
  if ((OWN_CLUSTER)); then
    stop_operator
    bash tests/cluster/down.sh "$DEMO_DIR/cluster" 2>/dev/null || true
  elif [[ -n "$DEMO_KUBECONFIG" ]]; then
    export KUBECONFIG="$DEMO_KUBECONFIG"
    if kubectl get regcred "$CREDENTIAL" -o name >/dev/null 2>&1 && operator_alive; then
      kubectl delete regcred "$CREDENTIAL" --wait=true --timeout=60s >/dev/null || true
    fi
    stop_operator
    kubectl delete namespace -l "$DEMO_LABEL=true" --wait=false >/dev/null 2>&1 || true
    kubectl -n "$NS" delete secret "$SOURCE" --ignore-not-found >/dev/null 2>&1 || true
    # Without the operator the finalizer would hold the RegistryCredential forever.
    if kubectl get regcred "$CREDENTIAL" -o name >/dev/null 2>&1; then
      kubectl patch regcred "$CREDENTIAL" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
      kubectl delete regcred "$CREDENTIAL" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    fi
  fi
  rm -rf "$DEMO_DIR"
}

if [[ -f "$DEMO_DIR/state" ]]; then
  # shellcheck source=/dev/null
  . "$DEMO_DIR/state"
  if [[ "$MODE" == down ]]; then
    step "Stopping the demo in $DEMO_DIR"
    teardown
    note "stopped and removed"
    exit 0
  fi
  if operator_alive || { ((OWN_CLUSTER)) && [[ -f "$DEMO_DIR/cluster/kube-apiserver.pid" ]]; }; then
    die "a demo is still running in $DEMO_DIR (started with --keep): stop it with 'bash scripts/demo.sh --down'"
  fi
  # A demo that died without cleaning up: clear what is left of it.
  teardown
elif [[ "$MODE" == down ]]; then
  echo "no demo is running (nothing in $DEMO_DIR)" >&2
  exit 0
elif [[ -e "$DEMO_DIR" ]]; then
  [[ -z "$(ls -A -- "$DEMO_DIR")" ]] || die "$DEMO_DIR exists and is not a demo's: set REGCRED_DEMO_DIR"
fi

SUCCESS=0
on_exit() {
  local rc=$?
  if ((SUCCESS == 0)); then
    if [[ -f "$DEMO_DIR/operator.log" ]]; then
      printf -- '----- last 30 lines of the operator log -----\n' >&2
      tail -n 30 "$DEMO_DIR/operator.log" >&2 || true
    fi
    printf 'demo: failed (exit %s); cleaning up\n' "$rc" >&2
    teardown
  elif [[ "$MODE" != keep ]]; then
    step "Tearing down"
    teardown
    note "done (bash scripts/demo.sh --keep leaves it running)"
  fi
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$DEMO_DIR"
DEMO_DIR="$(cd "$DEMO_DIR" && pwd)"

# --- 1. the cluster ----------------------------------------------------------------------------
if [[ -n "${KUBECONFIG:-}" ]]; then
  step "Using the cluster in KUBECONFIG=$KUBECONFIG"
  DEMO_KUBECONFIG="$KUBECONFIG"
  save_state
  kubectl version 2>/dev/null | sed 's/^/    /' >&2 || die "the cluster in KUBECONFIG does not answer"
  # Never overwrite what the demo did not make.
  if kubectl -n "$NS" get secret "$SOURCE" -o name >/dev/null 2>&1 &&
    [[ "$(kubectl -n "$NS" get secret "$SOURCE" -o "jsonpath={.metadata.labels.regcred\.dev/demo}")" != true ]]; then
    DEMO_KUBECONFIG="" && save_state
    die "Secret $NS/$SOURCE exists and is not the demo's: not touching it"
  fi
  if kubectl get crd registrycredentials.regcred.dev >/dev/null 2>&1 &&
    kubectl get regcred "$CREDENTIAL" -o name >/dev/null 2>&1; then
    DEMO_KUBECONFIG="" && save_state
    die "RegistryCredential $CREDENTIAL exists already: not touching it"
  fi
else
  step "Starting a local control plane in $DEMO_DIR/cluster (first run builds it: ~5 min)"
  OWN_CLUSTER=1
  DEMO_KUBECONFIG="$DEMO_DIR/cluster/kubeconfig"
  save_state
  exported="$(bash tests/cluster/up.sh "$DEMO_DIR/cluster" 2> >(sed -u 's/^/    /' >&2))"
  eval "$exported"
fi
export KUBECONFIG="$DEMO_KUBECONFIG"

# --- 2. the operator binary --------------------------------------------------------------------
step "Building the operator (cargo build --release)"
cargo build --release --locked --bin regcred-operator 2>&1 | tail -n 1 | sed 's/^ */    /' >&2
OPERATOR_BIN="$REPO/target/release/regcred-operator"

# --- 3. CRD and RBAC ---------------------------------------------------------------------------
step "Installing the CRD and config/rbac (server-side apply)"
kubectl apply --server-side -f config/manager/namespace.yaml | sed 's/^/    /' >&2
kubectl apply --server-side -f crds/registrycredentials.regcred.dev.yaml | sed 's/^/    /' >&2
kubectl apply --server-side -k config/rbac | sed 's/^/    /' >&2
kubectl wait --for=condition=Established crd/registrycredentials.regcred.dev --timeout=60s >/dev/null

# --- 4. the source Secret ----------------------------------------------------------------------
step "Creating the source Secret $NS/$SOURCE (obviously fake credentials)"
# A key as people write it: scheme and /v2/ suffix, which the operator normalizes.
kubectl -n "$NS" create secret docker-registry "$SOURCE" \
  --docker-server=https://registry.internal.corp/v2/ \
  --docker-username=demo-user --docker-password=not-a-real-password \
  --dry-run=client -o yaml |
  kubectl label --local -f - "$DEMO_LABEL=true" -o yaml |
  kubectl apply --server-side -f - | sed 's/^/    /' >&2

# --- 5. the operator, as its own ServiceAccount -------------------------------------------------
step "Starting the operator as ServiceAccount $NS/regcred-operator"
server="$(kubectl config view --raw --minify --flatten -o 'jsonpath={.clusters[0].cluster.server}')"
ca_data="$(kubectl config view --raw --minify --flatten -o 'jsonpath={.clusters[0].cluster.certificate-authority-data}')"
token="$(kubectl -n "$NS" create token regcred-operator --duration=24h)"
OP_KUBECONFIG="$DEMO_DIR/operator.kubeconfig"
(
  umask 077
  cat >"$OP_KUBECONFIG" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: demo
    cluster:
      server: $server
      certificate-authority-data: $ca_data
users:
  - name: regcred-operator
    user:
      token: $token
contexts:
  - name: demo
    context: {cluster: demo, user: regcred-operator}
current-context: demo
EOF
)
unset token
# Its own session, so that it outlives this script with --keep. It manages only the demo's
# RegistryCredential (by label) and elects itself on a Lease of its own, so that on a cluster
# where regcred-operator already runs neither gets in the other's way.
KUBECONFIG="$OP_KUBECONFIG" RUST_LOG="${RUST_LOG:-info}" REGCRED_LEASE_NAME=regcred-operator-demo \
  setsid nohup "$OPERATOR_BIN" run --credential-selector "$DEMO_LABEL=true" \
  --source-namespace "$NS" --http-addr 127.0.0.1:0 --log-format text \
  >"$DEMO_DIR/operator.log" 2>&1 </dev/null &
OPERATOR_PID=$!
save_state
addr=""
for _ in $(seq 300); do
  addr="$(sed -n 's/.*serving \/metrics, \/healthz, \/readyz addr=\([0-9.:]*\).*/\1/p' "$DEMO_DIR/operator.log" | head -n 1)"
  [[ -n "$addr" ]] && break
  operator_alive || die "the operator exited (log: $DEMO_DIR/operator.log)"
  sleep 0.1
done
[[ -n "$addr" ]] || die "the operator did not start serving in 30 s"
for _ in $(seq 300); do
  curl -sf "http://$addr/readyz" >/dev/null && break
  operator_alive || die "the operator exited (log: $DEMO_DIR/operator.log)"
  sleep 0.1
done
note "pid $OPERATOR_PID, metrics and probes on http://$addr, log $DEMO_DIR/operator.log"

# --- 6. namespaces and the sample --------------------------------------------------------------
create_namespace() {
  kubectl create namespace "$1" --dry-run=client -o yaml |
    kubectl label --local -f - "$DEMO_LABEL=true" "team=${TEAM[$1]}" -o yaml |
    kubectl apply --server-side -f - | sed 's/^/    /' >&2
}
step "Creating namespaces (team=payments: api, sandbox; team=web: frontend)"
for ns in "${NAMESPACES_BEFORE[@]}"; do create_namespace "$ns"; done

step "Applying config/samples/registrycredential.yaml"
sed -n '/^apiVersion/,$p' config/samples/registrycredential.yaml | sed 's/^/    | /' >&2
t="$(now_ms)"
# Labelled for the demo operator's --credential-selector.
kubectl label --local -f config/samples/registrycredential.yaml "$DEMO_LABEL=true" -o yaml |
  kubectl apply --server-side -f - | sed 's/^/    /' >&2
kubectl wait --for=condition=Ready "regcred/$CREDENTIAL" --timeout=60s >/dev/null ||
  die "the RegistryCredential did not become Ready"
kubectl -n demo-payments-api wait --for=jsonpath='{.imagePullSecrets[0].name}'=regcred \
  serviceaccount/default --timeout=60s >/dev/null
note "Ready, copies in place and the default ServiceAccount patched $(($(now_ms) - t)) ms after the apply"

step "Creating namespace $NAMESPACE_AFTER (team=payments) after the fact"
t="$(now_ms)"
create_namespace "$NAMESPACE_AFTER"
kubectl -n "$NAMESPACE_AFTER" wait --for=jsonpath='{.imagePullSecrets[0].name}'=regcred \
  serviceaccount/default --timeout=60s >/dev/null
note "its default ServiceAccount references the copy $(($(now_ms) - t)) ms after kubectl created the namespace"

step "Deleting the copy in demo-payments-api by hand (drift)"
t="$(now_ms)"
kubectl -n demo-payments-api delete secret regcred | sed 's/^/    /' >&2
kubectl -n demo-payments-api wait --for=create secret/regcred --timeout=60s >/dev/null
note "restored $(($(now_ms) - t)) ms later"

# --- 7. the outcome ----------------------------------------------------------------------------
step "Outcome"
echo
echo "\$ kubectl get regcred"
kubectl get regcred
echo
echo "Namespaces, the copy of the pull secret, and the ServiceAccounts that reference it:"
printf '%-24s %-9s %-16s %s\n' NAMESPACE TEAM "SECRET regcred" "SERVICEACCOUNTS WITH regcred"
for ns in demo-frontend demo-payments-api demo-payments-batch demo-payments-sandbox; do
  secret="-"
  if kubectl -n "$ns" get secret regcred -o name >/dev/null 2>&1; then
    secret="$(kubectl -n "$ns" get secret regcred -o 'jsonpath={.type}' | sed 's#kubernetes.io/##')"
  fi
  accounts="$(kubectl -n "$ns" get serviceaccounts -o \
    'jsonpath={range .items[*]}{.metadata.name}{"="}{.imagePullSecrets[*].name}{"\n"}{end}' |
    awk -F= '$2 ~ /(^| )regcred( |$)/ {print $1}' | paste -sd, -)"
  printf '%-24s %-9s %-16s %s\n' "$ns" "${TEAM[$ns]}" "$secret" "${accounts:--}"
done
echo
echo "\$ kubectl get secrets -A -l app.kubernetes.io/managed-by=regcred-operator -L regcred.dev/credential"
kubectl get secrets -A -l app.kubernetes.io/managed-by=regcred-operator -L regcred.dev/credential
echo
echo "Registries in the copy (keys only; the source said https://registry.internal.corp/v2/):"
kubectl -n demo-payments-api get secret regcred -o 'jsonpath={.data.\.dockerconfigjson}' | base64 -d |
  python3 -c 'import json,sys; print("  " + ", ".join(sorted(json.load(sys.stdin)["auths"])))'
echo
echo "\$ kubectl get regcred $CREDENTIAL -o jsonpath='{.status}'"
kubectl get regcred "$CREDENTIAL" -o 'jsonpath={.status}' |
  python3 -c 'import json,sys; s=json.load(sys.stdin); [s.get("conditions") and [c.pop("lastTransitionTime", None) for c in s["conditions"]]]; print(json.dumps(s, indent=2, sort_keys=True))'

SUCCESS=1
if [[ "$MODE" == keep ]]; then
  cat <<EOF

The demo is left running ($((SECONDS - T0))s so far).
  export KUBECONFIG=$DEMO_KUBECONFIG
  export PATH=$tools_bin:\$PATH      # kubectl $(kubectl version --client 2>/dev/null | sed -n 's/Client Version: //p') built from its Go module
  kubectl get regcred
  kubectl create namespace shop && kubectl label namespace shop team=payments
  kubectl get serviceaccount default -n shop -o jsonpath='{.imagePullSecrets}'   # [{"name":"regcred"}]
Operator: pid $OPERATOR_PID, log $DEMO_DIR/operator.log, metrics http://$addr/metrics
Stop it all: bash scripts/demo.sh --down
EOF
else
  echo
  echo "Demo finished in $((SECONDS - T0))s."
  # Deleting the RegistryCredential removes what the operator made (its finalizer), before the
  # control plane goes: show it.
  step "Deleting the RegistryCredential: the operator removes its copies and SA entries"
  kubectl delete regcred "$CREDENTIAL" --timeout=60s | sed 's/^/    /' >&2
  left="$(kubectl get secrets -A -l app.kubernetes.io/managed-by=regcred-operator -o name | wc -l)"
  entry="$(kubectl -n demo-payments-api get sa default -o 'jsonpath={.imagePullSecrets}')"
  note "managed copies left: $left; demo-payments-api default SA imagePullSecrets: ${entry:-none}"
fi
