#!/usr/bin/env bash
# Start a test node beside a control plane started by up.sh: an authenticated image registry
# (distribution v3, htpasswd) holding a private test image, and one or more kubelets, each
# with its own containerd v2 (runc and CNI plugins from Debian), registered with the cluster.
# No container engine, no internet: every image is built here (tests/node/ocimage).
# Needs root (containerd, runc, mounts, cgroups). Loopback only: the registry listens on
# 127.0.0.1, each kubelet on its own 127.x.y.z (its node name and InternalIP), pods get
# 127.88.x.y on an isolated bridge. A kube-scheduler places Pods that have no nodeName, and a
# second kube-controller-manager runs those of the workload controllers (deployment,
# replicaset, disruption, podgc) that the control plane of up.sh does not run.
#
# Usage: tests/cluster/node-up.sh DIR CLUSTER_DIR
#   DIR must not exist or be empty; CLUSTER_DIR is the directory given to up.sh (its env,
#   pki and kubeconfig are used). Progress goes to stderr; the only line on stdout is
#   `. DIR/env`-able: `export REGCRED_NODE_ENV=DIR/env`.
# DIR/env (sourceable) exports:
#   REGCRED_NODE_DIR, REGCRED_NODE_NAME (first node; its name is its IP), REGCRED_NODE_NAMES,
#   REGCRED_REGISTRY (127.0.0.1:PORT), REGCRED_REGISTRY_USER, REGCRED_REGISTRY_PASSWORD,
#   REGCRED_REGISTRY_LOG (access log: 401s show there), REGCRED_REGISTRY_HTPASSWD,
#   REGCRED_NODE_IMAGE (private image; prints "hello from the private image", then sleeps),
#   REGCRED_NODE_IMAGE_OTHER (same content, another repository), REGCRED_NODE_PAUSE_IMAGE,
#   REGCRED_NODE_DOCKERCONFIGJSON (a .dockerconfigjson file with the registry's credentials),
#   REGCRED_NODE_KUBELET_LOG, REGCRED_NODE_CONTAINERD_LOG (first node), REGCRED_NODE_SCHEDULER_LOG,
#   REGCRED_NODE_STATIC_POD_DIR (the first kubelet's staticPodPath),
#   REGCRED_NODE_CONTAINERD_SOCK (first node), REGCRED_NODE_BIN_DIR (ctr, ocimage, ...),
#   REGCRED_NODE_CGROUP_ROOTS, REGCRED_NODE_APISERVER_HOST/_PORT (what a hostNetwork Pod sets as
#   KUBERNETES_SERVICE_HOST/_PORT: there is no kube-proxy for the kubernetes Service).
# Env:
#   REGCRED_NODE_COUNT     kubelets to start (default 1); each is a Node named after its IP
#   REGCRED_CP_WATCH_PID   if set, a detached watchdog runs node-down.sh DIR once that
#                          process exits (as up.sh does for the control plane)
#   REGCRED_NODE_NO_SCHEDULER=1   start neither kube-scheduler nor the workload controllers
#   REGCRED_CP_READY_TIMEOUT (120), REGCRED_CP_STOP_GRACE (10), REGCRED_CACHE.
# Stop with tests/cluster/node-down.sh DIR (before or after down.sh CLUSTER_DIR).
set -euo pipefail

# shellcheck source=SCRIPTDIR/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
# shellcheck source=SCRIPTDIR/node-lib.sh
. "$CLUSTER_SCRIPTS_DIR/node-lib.sh"

if [[ $# -ne 2 || -z "$1" || ! -f "$2/env" ]]; then
  echo "usage: $0 DIR CLUSTER_DIR   (CLUSTER_DIR as given to up.sh, with CLUSTER_DIR/env)" >&2
  exit 2
fi
if [[ "$(id -u)" != 0 ]]; then
  log "FAILED: node-up: needs root (containerd, runc, mounts, cgroups)"
  exit 1
fi
for tool in openssl python3 curl setsid sha256sum ip htpasswd busybox; do
  command -v "$tool" >/dev/null || { log "FAILED: node-up: '$tool' not found on PATH (build-node.sh installs it)"; exit 1; }
done
if [[ -e "$1" && -n "$(ls -A -- "$1")" ]]; then
  log "FAILED: node-up: $1 exists and is not empty (already running? use node-down.sh $1 first)"
  exit 1
fi
NODE_COUNT="${REGCRED_NODE_COUNT:-1}"
[[ "$NODE_COUNT" =~ ^[1-9]$ ]] || { log "FAILED: node-up: REGCRED_NODE_COUNT must be 1-9"; exit 1; }

CP="$(cd "$2" && pwd)"
# shellcheck source=/dev/null
. "$CP/env"
T0=$SECONDS
NODE_BIN_DIR="$(bash "$CLUSTER_SCRIPTS_DIR/build-node.sh")"
T_BUILD=$((SECONDS - T0))

mkdir -p "$1"
DIR="$(cd "$1" && pwd)"
# Marks DIR as ours, so that node-down.sh never deletes a directory it did not make.
printf '%s\n' "$CP" >"$DIR/.regcred-node"
printf '%s\n' "$NODE_BIN_DIR" >"$DIR/bin-dir"
ID="$(node_id "$DIR")"
mkdir -p "$NODE_REGISTRATIONS"
printf '%s\n' "$DIR" >"$NODE_REGISTRATIONS/$ID"

UP_OK=0
exec 3>&2
on_exit() {
  if ((UP_OK == 0)); then
    exec 2>&3
    log "node-up.sh did not finish: tearing down what it started (logs kept in $DIR)"
    REGCRED_NODE_KEEP_DIR=1 bash "$CLUSTER_SCRIPTS_DIR/node-down.sh" "$DIR" || true
  fi
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

write_cmd() {
  local dir="$1" name="$2"
  shift 2
  printf '%s\n' "$@" >"$dir/$name.cmd"
}

# --- addresses ----------------------------------------------------------------------
# Free ports, all bound at once so they are distinct: the registry, then per node the
# kubelet's API and healthz ports.
read -r -a PORTS < <(python3 -c '
import socket, sys
socks = []
for _ in range(1 + 2 * int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
' "$NODE_COUNT")
REGISTRY_PORT="${PORTS[0]}"
REGISTRY="127.0.0.1:$REGISTRY_PORT"
# Node IPs: 127.<a>.<b>.<i>, a/b from this dir's id, so that parallel runs (and the
# operator's hostNetwork Pods binding <podIP>:8080 on each) do not collide. The kubelet
# refuses a loopback --node-ip but takes an IP given as --hostname-override as the node's
# name and InternalIP.
IP_A=$((16#${ID:0:2} % 200 + 20))
IP_B=$((16#${ID:2:2}))
POD_NET_B=$((16#${ID:4:2}))

# --- registry -------------------------------------------------------------------------
REG="$DIR/registry"
mkdir -p "$REG/data"
REGISTRY_USER=regcred-test
REGISTRY_PASSWORD="pw-$(openssl rand -hex 12)"
htpasswd -Bbn "$REGISTRY_USER" "$REGISTRY_PASSWORD" >"$REG/htpasswd" 2>/dev/null
cat >"$REG/config.yml" <<EOF
version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $REG/data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $REGISTRY
  secret: regcred-test-not-secret
auth:
  htpasswd:
    realm: regcred-test-registry
    path: $REG/htpasswd
EOF
write_cmd "$DIR" registry "$NODE_BIN_DIR/registry" serve "$REG/config.yml"
log "starting registry on $REGISTRY"
OTEL_TRACES_EXPORTER=none OTEL_METRICS_EXPORTER=none start_piece "$DIR" registry
registry_ready() { [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$REGISTRY/v2/")" == 401 ]]; }
wait_until "$DIR" registry registry_ready

# --- images -----------------------------------------------------------------------------
# pause: the repo's static pause program. app: the host's static busybox with a few applets.
IMG="$DIR/images"
mkdir -p "$IMG/pause-rootfs" "$IMG/app-rootfs/bin" "$IMG/app-rootfs/tmp"
cp -L "$NODE_BIN_DIR/pause" "$IMG/pause-rootfs/pause"
cp -L "$(command -v busybox)" "$IMG/app-rootfs/bin/busybox"
for applet in sh sleep echo cat ls env id true false wget; do
  ln -s busybox "$IMG/app-rootfs/bin/$applet"
done
chmod 1777 "$IMG/app-rootfs/tmp"
PAUSE_IMAGE="$REGISTRY/test/pause:1"
APP_IMAGE="$REGISTRY/private/app:1"
APP_IMAGE_OTHER="$REGISTRY/private/other:1"
build_images() {
  local ocimage="$NODE_BIN_DIR/ocimage"
  "$ocimage" build -rootfs "$IMG/pause-rootfs" -o "$IMG/pause" -ref "$PAUSE_IMAGE" \
    -entrypoint '["/pause"]' -user 65535:65535
  "$ocimage" build -rootfs "$IMG/app-rootfs" -o "$IMG/app" -ref "$APP_IMAGE" \
    -env PATH=/bin -entrypoint '["/bin/sh","-c"]' \
    -cmd '["echo hello from the private image; exec sleep 3600"]'
  "$ocimage" archive -layout "$IMG/pause" -ref "$PAUSE_IMAGE" -o "$IMG/pause.tar"
  local ref
  REGCRED_REGISTRY_PASSWORD="$REGISTRY_PASSWORD" "$ocimage" push -layout "$IMG/pause" \
    -ref "$PAUSE_IMAGE" -username "$REGISTRY_USER" -password-env REGCRED_REGISTRY_PASSWORD
  for ref in "$APP_IMAGE" "$APP_IMAGE_OTHER"; do
    REGCRED_REGISTRY_PASSWORD="$REGISTRY_PASSWORD" "$ocimage" push -layout "$IMG/app" \
      -ref "$ref" -username "$REGISTRY_USER" -password-env REGCRED_REGISTRY_PASSWORD
  done
}
log "building and pushing the test images"
if ! build_images >"$DIR/images.log" 2>&1; then
  fail images "$DIR/images.log" "building or pushing the test images failed"
fi
AUTH_B64="$(printf '%s:%s' "$REGISTRY_USER" "$REGISTRY_PASSWORD" | base64 -w0)"
printf '{"auths":{"%s":{"username":"%s","password":"%s","auth":"%s"}}}\n' \
  "$REGISTRY" "$REGISTRY_USER" "$REGISTRY_PASSWORD" "$AUTH_B64" >"$REG/dockerconfig.json"

# --- RBAC for kubelets (no Node authorizer on the test control plane) -----------------------
crb='{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding",
  "metadata":{"name":"regcred-test-system-nodes"},
  "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"system:node"},
  "subjects":[{"apiGroup":"rbac.authorization.k8s.io","kind":"Group","name":"system:nodes"}]}'
code="$(node_api "$CP" -o "$DIR/crb.json" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
  --data "$crb" "$APISERVER_URL/apis/rbac.authorization.k8s.io/v1/clusterrolebindings" 2>"$DIR/crb.err")" ||
  fail rbac "$DIR/crb.err" "the API server at $APISERVER_URL did not answer (is the control plane up?)"
[[ "$code" == 201 || "$code" == 409 ]] ||
  fail rbac "$DIR/crb.json" "creating ClusterRoleBinding regcred-test-system-nodes: HTTP $code"

# --- nodes --------------------------------------------------------------------------------
export PATH="$NODE_BIN_DIR:$PATH"
NODE_NAMES=()
CGROUP_ROOTS=()

# start_node I: containerd + kubelet number I (1-based), in DIR/node-I.
start_node() {
  local i="$1"
  local N="$DIR/node-$i"
  local ip="127.$IP_A.$IP_B.$i"
  local kubelet_port="${PORTS[$((2 * i - 1))]}" healthz_port="${PORTS[$((2 * i))]}"
  local bridge="rcbr$ID$i"          # <= 15 characters
  local network="regcred-$ID-$i"    # names the CNI result cache entries
  local subnet="127.88.$(((POD_NET_B + i) % 256)).0/24"
  local cgroot="regcred-node-$ID-$i"
  local sock="$N/containerd/containerd.sock"
  NODE_NAMES+=("$ip")
  CGROUP_ROOTS+=("/$cgroot")
  mkdir -p "$N"/{containerd/certs.d/"$REGISTRY",cni/net.d,cni/ipam,kubelet/root,kubelet/certs,kubelet/podlogs,kubelet/volume-plugins,pki}
  printf '%s\n' "$bridge" >"$N/bridge"
  printf '%s\n' "$cgroot" >"$N/cgroup-root"

  # The kubelet insists that its cgroup root exists in every hierarchy. Its own: two kubelets
  # sharing /kubepods would kill each other's Pods as orphans.
  local h
  for h in $(cgroup_hierarchies); do
    mkdir -p "$h/$cgroot"
    if [[ -f "$h/cpuset.cpus" ]]; then
      cat "$h/cpuset.cpus" >"$h/$cgroot/cpuset.cpus"
      cat "$h/cpuset.mems" >"$h/$cgroot/cpuset.mems"
    fi
  done

  # containerd (v2; this version-2 config is migrated by containerd on load).
  cat >"$N/containerd/config.toml" <<EOF
version = 2
root = "$N/containerd/root"
state = "$N/containerd/state"
oom_score = 0
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$N/containerd/opt"
[plugins."io.containerd.nri.v1.nri"]
  disable = true
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "$ip"
  stream_server_port = "0"
  # No CAP_SYS_RESOURCE in some VMs: runc cannot lower oom_score_adj (pause wants -998).
  restrict_oom_score_adj = true
  # Keeps network namespace mounts inside DIR instead of /run/netns.
  netns_mounts_under_state_dir = true
  enable_cdi = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"
        Root = "$N/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$N/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$N/containerd/certs.d"
EOF
  cat >"$N/containerd/certs.d/$REGISTRY/hosts.toml" <<EOF
server = "http://$REGISTRY"
[host."http://$REGISTRY"]
  capabilities = ["pull", "resolve"]
EOF
  # An isolated bridge without a host address: non-hostNetwork Pods get 127.88.x.y and can
  # talk among themselves only (use hostNetwork to reach the API server or be probed).
  cat >"$N/cni/net.d/10-regcred-test.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "$network", "plugins": [
  {"type": "bridge", "bridge": "$bridge", "isGateway": false, "ipMasq": false,
   "ipam": {"type": "host-local", "dataDir": "$N/cni/ipam", "ranges": [[{"subnet": "$subnet"}]]}}]}
EOF
  write_cmd "$N" containerd "$NODE_BIN_DIR/containerd" --config "$N/containerd/config.toml"
  log "node $i: starting containerd ($sock)"
  start_piece "$N" containerd
  containerd_ready() { "$NODE_BIN_DIR/ctr" -a "$1" version; }
  wait_until "$N" containerd containerd_ready "$sock"
  # The sandbox image is imported, never pulled: the registry would want credentials.
  if ! "$NODE_BIN_DIR/ctr" -a "$sock" -n k8s.io images import "$IMG/pause.tar" >"$N/import.log" 2>&1; then
    fail containerd "$N/import.log" "importing the pause image"
  fi

  # kubelet credentials: a client certificate for system:node:<ip> from the cluster's CA.
  local subj="/O=system:nodes/CN=system:node:$ip"
  {
    openssl req -new -newkey rsa:2048 -nodes -subj "$subj" -keyout "$N/pki/kubelet.key" -out "$N/pki/kubelet.csr"
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >"$N/pki/kubelet.ext"
    openssl x509 -req -in "$N/pki/kubelet.csr" -CA "$CP/pki/ca.crt" -CAkey "$CP/pki/ca.key" \
      -CAserial "$N/pki/ca.srl" -CAcreateserial -days 3650 -sha256 -extfile "$N/pki/kubelet.ext" -out "$N/pki/kubelet.crt"
  } >"$N/openssl.log" 2>&1 || fail kubelet "$N/openssl.log" "issuing the kubelet's client certificate"
  cat >"$N/kubelet/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: regcred-test
  cluster:
    server: $APISERVER_URL
    certificate-authority: $CP/pki/ca.crt
users:
- name: kubelet
  user:
    client-certificate: $N/pki/kubelet.crt
    client-key: $N/pki/kubelet.key
contexts:
- name: regcred-test
  context: {cluster: regcred-test, user: kubelet}
current-context: regcred-test
EOF
  cat >"$N/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$cgroot
containerRuntimeEndpoint: unix://$sock
address: $ip
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: $ip
healthzPort: $healthz_port
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
  x509: {clientCAFile: $CP/pki/ca.crt}
authorization: {mode: AlwaysAllow}
failSwapOn: false
registerNode: true
# No CAP_SYS_RESOURCE in some VMs: negative oom_score_adj values are refused.
oomScoreAdj: 0
clusterDomain: cluster.local
# No DNS server here; without any the kubelet puts a MissingClusterDNS Warning on every Pod
# (noise for tests reading Events). Nothing answers on this loopback address.
clusterDNS: ["127.0.0.53"]
resolvConf: /etc/resolv.conf
podLogsDir: $N/kubelet/podlogs
volumePluginDir: $N/kubelet/volume-plugins
serializeImagePulls: false
imageGCHighThresholdPercent: 100
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
# Static Pods: their mirror Pods in the API go through admission like any Pod.
staticPodPath: $N/kubelet/manifests
EOF
  mkdir -p "$N/kubelet/manifests"
  write_cmd "$N" kubelet "$NODE_BIN_DIR/kubelet" \
    --config="$N/kubelet/config.yaml" \
    --kubeconfig="$N/kubelet/kubeconfig" \
    --root-dir="$N/kubelet/root" \
    --cert-dir="$N/kubelet/certs" \
    --hostname-override="$ip" \
    --v=2
  log "node $i: starting kubelet as node $ip (port $kubelet_port)"
  start_piece "$N" kubelet
}

node_ready() {
  node_api "$CP" --fail "$APISERVER_URL/api/v1/nodes/$1" | python3 -c '
import json, sys
n = json.load(sys.stdin)
ok = any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))
sys.exit(0 if ok else 1)'
}

# untaint NAME: with no node-lifecycle controller the not-ready taint of registration stays;
# drop it once Ready so that the scheduler places Pods here.
untaint() {
  local name="$1" taints
  taints="$(node_api "$CP" --fail "$APISERVER_URL/api/v1/nodes/$name" | python3 -c '
import json, sys
n = json.load(sys.stdin)
t = [x for x in n["spec"].get("taints") or [] if x["key"] != "node.kubernetes.io/not-ready"]
print(json.dumps({"spec": {"taints": t or None}}))')"
  node_api "$CP" --fail -o /dev/null -X PATCH -H 'Content-Type: application/merge-patch+json' \
    --data "$taints" "$APISERVER_URL/api/v1/nodes/$name"
}

for ((i = 1; i <= NODE_COUNT; i++)); do start_node "$i"; done
for ((i = 1; i <= NODE_COUNT; i++)); do
  wait_until "$DIR/node-$i" kubelet node_ready "${NODE_NAMES[$((i - 1))]}"
  untaint "${NODE_NAMES[$((i - 1))]}" || fail kubelet "$DIR/node-$i/kubelet.log" "removing the not-ready taint"
done

# --- scheduler and workload controllers ------------------------------------------------------
# What a Deployment needs beyond the control plane's own controllers (up.sh runs only those the
# operator relies on): the scheduler, and a second controller-manager running the workload
# controllers (disjoint from the first's, so both can run without leader election).
if [[ -z "${REGCRED_NODE_NO_SCHEDULER:-}" ]]; then
  write_cmd "$DIR" kube-scheduler "$NODE_BIN_DIR/kube-scheduler" \
    --kubeconfig="$CP/kubeconfig" \
    --leader-elect=false \
    --secure-port=0
  log "starting kube-scheduler"
  start_piece "$DIR" kube-scheduler
  # Only those the control plane's controller-manager does not run already: two instances of
  # one controller without leader election would both act (e.g. two ReplicaSet controllers
  # creating Pods for the same ReplicaSet).
  cp_controllers="$(sed -n 's/^--controllers=//p' "$CP/kube-controller-manager.cmd" 2>/dev/null || true)"
  controllers=()
  for c in deployment replicaset disruption podgc; do
    [[ ",$cp_controllers," == *",$c,"* ]] || controllers+=("$c")
  done
  if ((${#controllers[@]})); then
    write_cmd "$DIR" kube-controller-manager "$REGCRED_CP_BIN_DIR/kube-controller-manager" \
      --kubeconfig="$CP/kubeconfig" \
      --controllers="$(IFS=,; printf '%s' "${controllers[*]}")" \
      --leader-elect=false \
      --secure-port=0 \
      --kube-api-qps=100 \
      --kube-api-burst=200
    log "starting kube-controller-manager (${controllers[*]})"
    start_piece "$DIR" kube-controller-manager
  fi
  # Running is enough: they act as soon as their informers have synced.
  sleep 0.5
  pid_of "$DIR" kube-scheduler >/dev/null || fail kube-scheduler "$DIR/kube-scheduler.log" "exited"
  if ((${#controllers[@]})) && ! pid_of "$DIR" kube-controller-manager >/dev/null; then
    fail kube-controller-manager "$DIR/kube-controller-manager.log" "exited"
  fi
fi

# --- optional watchdog ---------------------------------------------------------------------
if [[ -n "${REGCRED_CP_WATCH_PID:-}" ]]; then
  write_cmd "$DIR" node-watchdog bash "$CLUSTER_SCRIPTS_DIR/node-watchdog.sh" "$DIR" "$REGCRED_CP_WATCH_PID"
  start_piece "$DIR" node-watchdog
  log "watchdog: node-down.sh $DIR will run when pid $REGCRED_CP_WATCH_PID exits"
fi

{
  printf 'export %s=%q\n' \
    REGCRED_NODE_DIR "$DIR" \
    REGCRED_NODE_APISERVER_HOST 127.0.0.1 \
    REGCRED_NODE_APISERVER_PORT "$APISERVER_PORT" \
    REGCRED_NODE_NAME "${NODE_NAMES[0]}" \
    REGCRED_NODE_NAMES "${NODE_NAMES[*]}" \
    REGCRED_REGISTRY "$REGISTRY" \
    REGCRED_REGISTRY_USER "$REGISTRY_USER" \
    REGCRED_REGISTRY_PASSWORD "$REGISTRY_PASSWORD" \
    REGCRED_REGISTRY_LOG "$DIR/registry.log" \
    REGCRED_REGISTRY_HTPASSWD "$REG/htpasswd" \
    REGCRED_NODE_IMAGE "$APP_IMAGE" \
    REGCRED_NODE_IMAGE_OTHER "$APP_IMAGE_OTHER" \
    REGCRED_NODE_PAUSE_IMAGE "$PAUSE_IMAGE" \
    REGCRED_NODE_DOCKERCONFIGJSON "$REG/dockerconfig.json" \
    REGCRED_NODE_KUBELET_LOG "$DIR/node-1/kubelet.log" \
    REGCRED_NODE_STATIC_POD_DIR "$DIR/node-1/kubelet/manifests" \
    REGCRED_NODE_CONTAINERD_LOG "$DIR/node-1/containerd.log" \
    REGCRED_NODE_SCHEDULER_LOG "$DIR/kube-scheduler.log" \
    REGCRED_NODE_CONTROLLER_MANAGER_LOG "$DIR/kube-controller-manager.log" \
    REGCRED_NODE_CONTAINERD_SOCK "$DIR/node-1/containerd/containerd.sock" \
    REGCRED_NODE_BIN_DIR "$NODE_BIN_DIR" \
    REGCRED_NODE_CGROUP_ROOTS "${CGROUP_ROOTS[*]}"
} >"$DIR/env"

UP_OK=1
log "node up in $((SECONDS - T0))s (build check ${T_BUILD}s): ${NODE_NAMES[*]}; registry $REGISTRY"
log "source $DIR/env; stop with $CLUSTER_SCRIPTS_DIR/node-down.sh $DIR"
printf 'export REGCRED_NODE_ENV=%q\n' "$DIR/env"
