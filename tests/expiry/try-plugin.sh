#!/usr/bin/env bash
# Self-check of the tools of the expiring and minted credential tests: the kubelet's ECR
# credential provider plugin (ecr-credential-provider) runs end to end, on its service account
# token path, against two local AWS endpoints:
#   moto_server  STS AssumeRoleWithWebIdentity, then ECR GetAuthorizationToken; moto's password
#                is "<account of the assumed role>-auth-token", so the expected one proves that
#                the plugin took the token path with the role of the request's annotation
#   ecr-stub.py  the same two calls with the password and lifetime of its state file: the
#                plugin hands out that password, a cacheDuration of half the lifetime, a new
#                password once the file is replaced, none when the token has already expired
# The plugin runs with a cleared environment but for AWS_ENDPOINT_URL_ECR, AWS_ENDPOINT_URL_STS,
# AWS_EC2_METADATA_DISABLED=true and AWS_REGION=us-east-1: no keys, no ~/.aws, no IMDS.
# It prints only facts that are no secret (auth keys, username, password lengths,
# cacheDuration), one line per check and a closing "N passed, N failed"; exits 1 on a failure.
# The servers it starts are stopped on exit.
#
# Usage: tests/expiry/try-plugin.sh
# Env:   REGCRED_CACHE (default ~/.cache/regcred-operator), as build-expiry-tools.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools="$(bash "$here/../cluster/build-expiry-tools.sh")"
plugin="$tools/ecr-credential-provider"

work="$(mktemp -d)"
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { printf '[try-plugin] %s\n' "$*" >&2; }
die() {
  say "FAILED: $1"
  [[ -z "${2:-}" || ! -f "$2" ]] || tail -n 20 "$2" >&2
  exit 1
}

passed=0 failed=0
result() { # OK? NAME FACTS
  if [[ "$1" == ok ]]; then
    passed=$((passed + 1)); printf 'ok    %s: %s\n' "$2" "$3"
  else
    failed=$((failed + 1)); printf 'FAIL  %s: %s\n' "$2" "$3"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_listening PORT PID NAME LOG: until something accepts on 127.0.0.1:PORT (30 s at most).
wait_listening() {
  local port="$1" pid="$2" name="$3" log="$4" i
  for ((i = 0; i < 300; i++)); do
    if (: <>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    kill -0 "$pid" 2>/dev/null || die "$name exited before listening" "$log"
    sleep 0.1
  done
  die "$name not listening on 127.0.0.1:$port after 30s" "$log"
}

# A service account token in the shape of a JWT (the endpoints here never verify it).
SA_TOKEN="eyJhbGciOiJSUzI1NiIsImtpZCI6InRyeS1wbHVnaW4ifQ.eyJhdWQiOlsic3RzLmFtYXpvbmF3cy5jb20iXSwic3ViIjoic3lzdGVtOnNlcnZpY2VhY2NvdW50OmFwcDpwdWxsZXIifQ.c2lnbmF0dXJl"
ECR_IMAGE=123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1
ROLE_ARN=arn:aws:iam::210987654321:role/puller

# request IMAGE [ROLE_ARN]: a credentialprovider.kubelet.k8s.io/v1 request with the token, and
# the role annotation when ROLE_ARN is given.
request() {
  python3 - "$SA_TOKEN" "$@" <<'EOF'
import json, sys
token, image = sys.argv[1], sys.argv[2]
req = {"apiVersion": "credentialprovider.kubelet.k8s.io/v1", "kind": "CredentialProviderRequest",
       "image": image, "serviceAccountToken": token}
if len(sys.argv) > 3:
    req["serviceAccountAnnotations"] = {"eks.amazonaws.com/ecr-role-arn": sys.argv[3]}
print(json.dumps(req))
EOF
}

# run_plugin ENDPOINT REQUEST-ARGS...: the plugin's stdout in $work/out, stderr in $work/err.
run_plugin() {
  local endpoint="$1"
  shift
  request "$@" >"$work/request.json"
  env -i AWS_ENDPOINT_URL_ECR="$endpoint" AWS_ENDPOINT_URL_STS="$endpoint" \
    AWS_EC2_METADATA_DISABLED=true AWS_REGION=us-east-1 \
    "$plugin" <"$work/request.json" >"$work/out" 2>"$work/err"
}

# check_response WANT_KEY CACHE: $work/out against WANT_KEY (the only auth key), username AWS,
# the password in $WANT_PASSWORD (env, never printed) and CACHE: "absent", or MIN-MAX seconds.
# Prints the facts; exits non-zero naming what differs.
check_response() {
  python3 - "$work/out" "$@" <<'EOF'
import json, os, re, sys
path, want_key, cache = sys.argv[1:4]
want_password = os.environ["WANT_PASSWORD"]
try:
    resp = json.load(open(path))
except ValueError:
    print("response is not JSON (%d bytes)" % os.path.getsize(path)); sys.exit(1)
auth = resp.get("auth") or {}
entry = auth.get(want_key) or {}
password = entry.get("password", "")
duration = resp.get("cacheDuration")
print("apiVersion=%s kind=%s cacheKeyType=%s auth keys=%s username=%s password_length=%d "
      "cacheDuration=%s" % (resp.get("apiVersion"), resp.get("kind"), resp.get("cacheKeyType"),
                            sorted(auth), entry.get("username"), len(password),
                            duration if duration is not None else "absent"))
problems = []
if resp.get("apiVersion") != "credentialprovider.kubelet.k8s.io/v1" or resp.get("kind") != "CredentialProviderResponse":
    problems.append("not a credentialprovider.kubelet.k8s.io/v1 CredentialProviderResponse")
if sorted(auth) != [want_key]:
    problems.append("auth keys are not [%s]" % want_key)
if entry.get("username") != "AWS":
    problems.append("username is not AWS")
if password != want_password:
    problems.append("password differs (length %d, want %d)" % (len(password), len(want_password)))
def seconds(d):
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", d or "")
    if not d or not m:
        return None
    h, mi, s = m.groups()
    return int(h or 0) * 3600 + int(mi or 0) * 60 + float(s or 0)
if cache == "absent":
    if duration is not None:
        problems.append("cacheDuration %s, want none" % duration)
else:
    low, high = (float(x) for x in cache.split("-"))
    got = seconds(duration)
    if got is None or not low <= got <= high:
        problems.append("cacheDuration %s, want %s s" % (duration, cache))
if problems:
    print("; ".join(problems)); sys.exit(1)
EOF
}

# stub_calls: the calls the stub logged since the last truncation, as "what role token key region".
stub_calls() {
  python3 - "$work/stub.log" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e.get("action"):
        print("sts:%s role=%s session=%s token=%s key=%s status=%s" % (
            e["action"], e.get("roleArn"), e.get("roleSessionName"),
            "present" if e.get("webIdentityToken") else "absent", e.get("accessKeyId"), e["status"]))
    elif e.get("target"):
        print("ecr:%s key=%s region=%s status=%s" % (
            e["target"].rsplit(".", 1)[-1], e.get("accessKeyId"), e.get("region"), e["status"]))
EOF
}

# check CHECK-NAME CMD...: run CMD (which prints its facts); ok when it succeeds.
check() {
  local name="$1" facts
  shift
  if facts="$("$@" 2>&1)"; then result ok "$name" "${facts//$'\n'/ | }"; else result FAIL "$name" "${facts//$'\n'/ | }"; fi
}

plugin_then() { # ENDPOINT WANT_KEY CACHE REQUEST-ARGS...
  local endpoint="$1" key="$2" cache="$3"
  shift 3
  if ! run_plugin "$endpoint" "$@"; then
    echo "plugin exit status non-zero: $(tail -n 1 "$work/err")"
    return 1
  fi
  check_response "$key" "$cache"
}

# --- moto ------------------------------------------------------------------------------------
moto_port="$(free_port)"
"$tools/moto_server" -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
pids+=("$!")
wait_listening "$moto_port" "$!" moto_server "$work/moto.log"
say "moto_server listening on 127.0.0.1:$moto_port"
moto="http://127.0.0.1:$moto_port"

WANT_PASSWORD=210987654321-auth-token check "moto: token path, role of the annotation" \
  plugin_then "$moto" "${ECR_IMAGE%%/*}" absent "$ECR_IMAGE" "$ROLE_ARN"

# --- ecr-stub.py -----------------------------------------------------------------------------
# write_state KEY=VALUE...: replace the stub's state file atomically, as a test would.
write_state() {
  printf '%s\n' "$@" >"$work/state.new"
  mv -f "$work/state.new" "$work/state"
}
password_one="stub-$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
password_two="stub-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
write_state "password=$password_one" lifetime=3600 registry=127.0.0.1:5000
: >"$work/stub.log"
python3 "$here/ecr-stub.py" --state "$work/state" --port-file "$work/stub.port" \
  --log "$work/stub.log" 2>"$work/stub.err" &
pids+=("$!")
for ((i = 0; i < 100; i++)); do
  [[ -s "$work/stub.port" ]] && break
  kill -0 "${pids[-1]}" 2>/dev/null || die "ecr-stub.py exited before listening" "$work/stub.err"
  sleep 0.1
done
[[ -s "$work/stub.port" ]] || die "ecr-stub.py did not listen within 10s" "$work/stub.err"
stub="http://127.0.0.1:$(<"$work/stub.port")"
say "ecr-stub.py listening on ${stub#http://}"

WANT_PASSWORD="$password_one" check "stub: token path, the stub's password, cacheDuration half of 1h" \
  plugin_then "$stub" "${ECR_IMAGE%%/*}" 1790-1800 "$ECR_IMAGE" "$ROLE_ARN"
# What the plugin asked: the role of the annotation with the token, then ECR signed with the
# credentials STS gave (the key id the stub derives from the role) in the region of the host.
stub_sequence() {
  local calls want_key
  calls="$(stub_calls)"
  printf '%s\n' "$calls"
  want_key="$(grep -o 'sts:.*key=[^ ]*' <<<"$calls" | sed 's/.*key=//' | head -n 1)"
  [[ "$calls" == "sts:AssumeRoleWithWebIdentity role=$ROLE_ARN session=ecr-credential-provider token=present key=$want_key status=200
ecr:GetAuthorizationToken key=$want_key region=us-east-1 status=200" && -n "$want_key" ]]
}
check "stub: calls seen (STS with the role and a token, then ECR with its credentials)" stub_sequence

: >"$work/stub.log"
WANT_PASSWORD="$password_one" check "stub: a registry with a port (the auth key drops it)" \
  plugin_then "$stub" 127.0.0.1 1790-1800 127.0.0.1:5000/app:1 "$ROLE_ARN"

write_state "password=$password_two" lifetime=120
WANT_PASSWORD="$password_two" check "stub: state replaced: the new password, cacheDuration half of 2m" \
  plugin_then "$stub" "${ECR_IMAGE%%/*}" 50-60 "$ECR_IMAGE" "$ROLE_ARN"

write_state "password=$password_two" lifetime=-60
WANT_PASSWORD="$password_two" check "stub: an expired token: no cacheDuration" \
  plugin_then "$stub" "${ECR_IMAGE%%/*}" absent "$ECR_IMAGE" "$ROLE_ARN"

# Without the annotation (and no AWS_ECR_ROLE_ARN, no keys) the plugin has no credentials.
no_role() {
  : >"$work/stub.log"
  if run_plugin "$stub" "$ECR_IMAGE"; then echo "plugin succeeded without a role"; return 1; fi
  echo "plugin exit non-zero; calls seen by the stub: $(stub_calls | wc -l)"
  [[ -z "$(stub_calls)" ]]
}
check "stub: no role annotation: the plugin fails before any call" no_role

echo "$passed passed, $failed failed"
((failed == 0))
