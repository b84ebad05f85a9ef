#!/usr/bin/env bash
# Build the tools of the expiring and minted credential tests into the version-keyed cache, as
# build-release-tools.sh does for the release tools:
#   ecr-credential-provider  k8s.io/cloud-provider-aws/cmd/ecr-credential-provider at
#                            ECR_PROVIDER_VERSION: the kubelet's ECR credential provider plugin
#   moto_server              moto[server]==MOTO_VERSION from PyPI, in a Python venv: a local AWS
#                            endpoint (STS AssumeRoleWithWebIdentity, ECR GetAuthorizationToken)
# Versions: versions.env. Each tool is cached on its own (bin/expiry-ecr-credential-provider-
# <version>/, bin/expiry-moto-<version>-py<python version>/ holding the venv), so bumping one
# rebuilds only that one; the directory printed holds symlinks to both. A cached run does no Go
# and no pip work.
#
# The plugin's module replaces github.com/google/cel-go with another module, so `go install
# module@version` refuses it: it is built from a generated module that requires it, carries its
# replace directives over (read from its go.mod as the proxy serves it, never hand-written) and
# blank-imports the command in a `//go:build tools` file.
# The venv is made with `python3 -m venv` (the python3 on PATH; its version is in the cache key).
# When that fails for want of Debian's venv module, python3-venv is installed with apt-get first.
#
# Usage: tests/cluster/build-expiry-tools.sh      (prints the tools directory on stdout)
#        tools="$(tests/cluster/build-expiry-tools.sh)"; "$tools/moto_server" -H 127.0.0.1 -p 5005
# Env:   REGCRED_CACHE (default ~/.cache/regcred-operator)
set -euo pipefail

# shellcheck source=SCRIPTDIR/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
# shellcheck source=SCRIPTDIR/gobuild.sh
. "$CLUSTER_SCRIPTS_DIR/gobuild.sh"

ECR_MODULE=k8s.io/cloud-provider-aws
ECR_CMD="$ECR_MODULE/cmd/ecr-credential-provider"

command -v python3 >/dev/null || { log "FAILED: build-expiry-tools: python3 not found on PATH"; exit 1; }
PY_VERSION="$(python3 -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
MOTO_KEY="$MOTO_VERSION-py$PY_VERSION"

# --- ecr-credential-provider ------------------------------------------------------------
# gen_ecr_module DIR: go.mod requiring the plugin's module (with its go line, godebug settings
# and replace directives) and tools.go importing the command.
gen_ecr_module() {
  local dir="$1" json gomod edits=() line
  if ! json="$(cd "$WORK_ROOT" && GOWORK=off go mod download -json "$ECR_MODULE@$ECR_PROVIDER_VERSION")"; then
    printf '%s\n' "$json"
    return 1
  fi
  gomod="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])' <<<"$json")"
  echo "upstream go.mod: $gomod"
  while IFS= read -r line; do
    edits+=("$line")
  done < <(go mod edit -json "$gomod" | python3 -c '
import json, sys
m = json.load(sys.stdin)
if m.get("Go"):
    print("-go=" + m["Go"])
for g in m.get("GoDebug") or m.get("Godebug") or []:
    print("-godebug=%s=%s" % (g["Key"], g["Value"]))
for r in m.get("Replace") or []:
    old, new = r["Old"], r["New"]
    if "Version" not in new:
        sys.exit("upstream replaces %s with the directory %s: not usable from another module"
                 % (old["Path"], new["Path"]))
    lhs = old["Path"] + ("@" + old["Version"] if old.get("Version") else "")
    print("-replace=%s=%s@%s" % (lhs, new["Path"], new["Version"]))
')
  ((${#edits[@]})) || { echo "could not read $gomod"; return 1; }
  rm -rf "$dir"
  mkdir -p "$dir"
  cd "$dir"
  GOWORK=off go mod init regcred-operator.test/tools/ecr-credential-provider
  GOWORK=off go mod edit "${edits[@]}" "-require=$ECR_MODULE@$ECR_PROVIDER_VERSION"
  cat >tools.go <<EOF
//go:build tools

// Package tools names the command that tests/cluster/build-expiry-tools.sh builds.
package tools

import _ "$ECR_CMD"
EOF
  cat go.mod
  GOWORK=off go mod tidy
}

build_ecr_provider() {
  local dir="$WORK_ROOT/ecr-credential-provider-$ECR_PROVIDER_VERSION"
  timed ecr-credential-provider-modules "$WORK_ROOT/ecr-credential-provider-$ECR_PROVIDER_VERSION-modules.log" \
    gen_ecr_module "$dir"
  # The stamps of upstream's Makefile (LDFLAGS): `--version` and the component-base version.
  timed ecr-credential-provider "$WORK_ROOT/ecr-credential-provider-$ECR_PROVIDER_VERSION-build.log" \
    build_bin "$dir" ecr-credential-provider "$ECR_CMD" \
    "-s -w -X main.gitVersion=$ECR_PROVIDER_VERSION -X k8s.io/component-base/version.gitVersion=$ECR_PROVIDER_VERSION" \
    --version
}

# --- moto_server ----------------------------------------------------------------------------
# Debian's python3 makes a venv only with python3-venv installed (ensurepip).
install_python3_venv() {
  local sudo=()
  command -v apt-get >/dev/null || { echo "python3 -m venv fails and there is no apt-get"; return 1; }
  if ((EUID != 0)); then
    command -v sudo >/dev/null || { echo "need root or sudo to install python3-venv"; return 1; }
    sudo=(sudo)
  fi
  # Another apt-get (a parallel job, unattended-upgrades) may hold the dpkg lock: wait for it.
  "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends python3-venv
}

# install_moto: the venv in OUT_DIR/venv, then OUT_DIR/moto_server (a relative symlink into it)
# last, so that only a complete install looks cached.
install_moto() {
  local venv="$OUT_DIR/venv" tmp="$OUT_DIR/.moto_server.tmp.$$"
  rm -rf "$venv" "$OUT_DIR/moto_server"
  if ! python3 -m venv "$venv"; then
    rm -rf "$venv"
    install_python3_venv
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    "moto[server]==$MOTO_VERSION"
  "$venv/bin/python" -c 'import moto, moto.server; print("moto", moto.__version__)'
  [[ -x "$venv/bin/moto_server" ]] || { echo "no moto_server in $venv/bin"; return 1; }
  ln -sfn venv/bin/moto_server "$tmp"
  mv -fT "$tmp" "$OUT_DIR/moto_server"
}

build_moto() {
  timed moto "$WORK_ROOT/moto-$MOTO_KEY.log" install_moto
}

# A cached venv whose interpreter has gone (python upgraded or removed in place) is rebuilt.
moto_dir="$REGCRED_CACHE/bin/expiry-moto-$MOTO_KEY"
if [[ -L "$moto_dir/moto_server" ]] && ! "$moto_dir/venv/bin/python" -c '' 2>/dev/null; then
  log "moto: the venv in $moto_dir no longer runs: rebuilding it"
  rm -f "$moto_dir/moto_server"
fi

link_tools() {
  go_tool_link expiry-ecr-credential-provider "$ECR_PROVIDER_VERSION" ecr-credential-provider build_ecr_provider
  go_tool_link expiry-moto "$MOTO_KEY" moto_server build_moto
}

go_tool_cached expiry-tools "ecr-$ECR_PROVIDER_VERSION-moto-$MOTO_KEY" \
  "ecr-credential-provider moto_server" link_tools
