#!/usr/bin/env python3
"""A kubelet image credential provider plugin for tests: it speaks the real exec protocol
(credentialprovider.kubelet.k8s.io/v1) and mints a new, short-lived password on every call.

Plugin mode (no arguments; what the operator or a kubelet runs): reads a CredentialProviderRequest
on stdin and answers a CredentialProviderResponse on stdout with one auth entry for MINT_REGISTRY:
user `mint-N` (N counts the calls) and a password shaped like a JWT whose `exp` is the time of the
call plus MINT_LIFETIME seconds; cacheDuration is MINT_LIFETIME too. With MINT_AUDIENCE set, the
request must carry a ServiceAccount token whose `aud` holds it and whose `sub` is MINT_SUBJECT,
and the ServiceAccount annotations must equal MINT_ANNOTATIONS (JSON), or the plugin exits 1.
With MINT_HTPASSWD set, the registry's htpasswd file is rewritten at once (atomically: the
registry re-reads it when its mtime changes) to hold the lines it held before the first call plus
every minted password not yet expired, so the registry accepts each password only while it is
valid. A file MINT_STATE/fail makes the call exit 1 (a refresh that fails).

Reaper mode (`minting-plugin.py reap`): every 200 ms, drops the expired passwords from
MINT_HTPASSWD; stops when MINT_STATE/stop exists or its parent process ends.

Environment: MINT_STATE (a directory the test owns), MINT_REGISTRY, MINT_LIFETIME (seconds,
default 8), MINT_AUDIENCE, MINT_SUBJECT, MINT_ANNOTATIONS, MINT_HTPASSWD, PATH (for htpasswd).
MINT_STATE/calls.jsonl gets one line per call: its time, N, exp, and what was checked. No
password or token is written anywhere but stdout and (hashed) the htpasswd file.
"""

import base64
import fcntl
import json
import os
import secrets
import subprocess
import sys
import time

API_VERSION = "credentialprovider.kubelet.k8s.io/v1"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def fail(message):
    sys.stderr.write(message + "\n")
    sys.exit(1)


class Locked:
    """An exclusive lock on MINT_STATE/lock: the plugin and the reaper share the state."""

    def __init__(self, state):
        self.path = os.path.join(state, "lock")

    def __enter__(self):
        self.file = open(self.path, "w")
        fcntl.flock(self.file, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        self.file.close()


def load_entries(state):
    path = os.path.join(state, "entries.json")
    return json.load(open(path)) if os.path.exists(path) else []


def write_htpasswd(state, htpasswd, entries):
    """The lines the file held before the first call, plus the passwords still valid."""
    base_path = os.path.join(state, "htpasswd.base")
    if not os.path.exists(base_path):
        with open(htpasswd) as current, open(base_path, "w") as base:
            base.write("".join(line for line in current if line.strip()))
    now = time.time()
    lines = open(base_path).read().splitlines()
    lines += [e["line"] for e in entries if e["exp"] > now]
    tmp = f"{htpasswd}.tmp.{os.getpid()}"
    with open(tmp, "w") as out:
        out.write("\n".join(lines) + "\n")
    os.replace(tmp, htpasswd)


def check_request(request):
    if request.get("apiVersion") != API_VERSION or request.get("kind") != "CredentialProviderRequest":
        fail("not a credentialprovider.kubelet.k8s.io/v1 CredentialProviderRequest")
    if not request.get("image"):
        fail("the request names no image")
    audience = os.environ.get("MINT_AUDIENCE")
    if not audience:
        return {"token": "token" in request}
    token = request.get("serviceAccountToken")
    if not token:
        fail("no serviceAccountToken")
    got = claims(token)
    aud = got.get("aud")
    aud = aud if isinstance(aud, list) else [aud]
    if audience not in aud:
        fail("token audience rejected")
    if got.get("sub") != os.environ.get("MINT_SUBJECT"):
        fail("token subject rejected")
    wanted = json.loads(os.environ.get("MINT_ANNOTATIONS", "{}"))
    if request.get("serviceAccountAnnotations", {}) != wanted:
        fail("serviceAccountAnnotations are not the ones the provider lists")
    return {"token": True, "audience": True, "subject": True, "annotations": sorted(wanted)}


def mint():
    state = os.environ["MINT_STATE"]
    request = json.load(sys.stdin)
    checked = check_request(request)
    if os.path.exists(os.path.join(state, "fail")):
        fail("refusing to mint: the test asked for a failure")
    lifetime = int(os.environ.get("MINT_LIFETIME", "8"))
    now = time.time()
    exp = int(now) + lifetime
    htpasswd = os.environ.get("MINT_HTPASSWD")
    with Locked(state):
        entries = load_entries(state)
        n = len(entries) + 1
        user = f"mint-{n}"
        header = b64url(b'{"alg":"none","typ":"JWT"}')
        body = b64url(json.dumps({"exp": exp, "n": n, "nonce": secrets.token_hex(8)}).encode())
        password = f"{header}.{body}.{b64url(secrets.token_bytes(16))}"
        line = ""
        if htpasswd:
            hashed = subprocess.run(["htpasswd", "-Bbn", user, password], check=True, capture_output=True, text=True)
            line = hashed.stdout.strip()
        entries.append({"user": user, "exp": exp, "line": line})
        json.dump(entries, open(os.path.join(state, "entries.json.tmp"), "w"))
        os.replace(os.path.join(state, "entries.json.tmp"), os.path.join(state, "entries.json"))
        if htpasswd:
            write_htpasswd(state, htpasswd, entries)
        with open(os.path.join(state, "calls.jsonl"), "a") as calls:
            calls.write(json.dumps({"at": now, "n": n, "exp": exp, "image": request["image"], **checked}) + "\n")
    json.dump(
        {
            "apiVersion": API_VERSION,
            "kind": "CredentialProviderResponse",
            "cacheKeyType": "Registry",
            "cacheDuration": f"{lifetime}s",
            "auth": {os.environ["MINT_REGISTRY"]: {"username": user, "password": password}},
        },
        sys.stdout,
    )


def reap():
    state, htpasswd = os.environ["MINT_STATE"], os.environ["MINT_HTPASSWD"]
    shown = None
    parent = os.getppid()
    # Stops when asked, or when the test that started it is gone.
    while not os.path.exists(os.path.join(state, "stop")) and os.getppid() == parent:
        with Locked(state):
            entries = load_entries(state)
            valid = [e["user"] for e in entries if e["exp"] > time.time()]
            if entries and valid != shown:
                write_htpasswd(state, htpasswd, entries)
                shown = valid
        time.sleep(0.2)


if __name__ == "__main__":
    reap() if sys.argv[1:] == ["reap"] else mint()
