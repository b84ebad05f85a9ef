"""Watches what an upgrade must never break, from the moment it starts until SIGTERM, through
the API server's own watch streams (kubectl --watch: every change, not samples):

  - a copy (Secret NAME in a selected namespace) is never deleted and never loses its payload;
  - a selected ServiceAccount never lacks the copy's entry, nor any of the user's own entries;
  - the RegistryCredential keeps its status and is Ready=True throughout, or Progressing while
    the operator adds a namespace (never a failure reason).

Usage: watch.py KUBECTL NAME CREDENTIAL OWN_ENTRY NAMESPACE...   (prints a JSON summary on SIGTERM:
the violations, and the writes seen on objects that existed when it started, per kind)
"""

import json
import signal
import subprocess
import sys
import threading
import time

kubectl, name, credential, own_entry, *namespaces = sys.argv[1:]
selected = set(namespaces)
violations = []
writes = {"Secret": 0, "ServiceAccount": 0, "RegistryCredential": 0}
lock = threading.Lock()
processes = []


def violation(text):
    with lock:
        violations.append(f"{time.strftime('%H:%M:%S')} {text}")


def check_secret(kind, obj):
    where = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
    if kind == "DELETED":
        violation(f"copy {where} deleted")
    elif ".dockerconfigjson" not in (obj.get("data") or {}):
        violation(f"copy {where} without its payload")


def check_account(kind, obj):
    where = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
    entries = {e.get("name") for e in obj.get("imagePullSecrets") or []}
    if kind == "DELETED":
        violation(f"ServiceAccount {where} deleted")
    for wanted in (name, own_entry):
        if wanted not in entries:
            violation(f"ServiceAccount {where} without the entry {wanted}")


def check_credential(kind, obj):
    conditions = (obj.get("status") or {}).get("conditions") or []
    ready = [c for c in conditions if c.get("type") == "Ready"]
    # Progressing is an operator at work (a namespace the test adds, say); anything else that is
    # not Ready, or a status gone, is what an upgrade must not cause.
    if kind == "DELETED" or not ready or (ready[0].get("status") != "True" and ready[0].get("reason") != "Progressing"):
        state = ready[0].get("reason") if ready else "no Ready condition"
        violation(f"RegistryCredential {credential} {kind.lower()}: {state}")


def follow(resource, selector, kind_name, check, in_scope):
    seen = set()
    args = [kubectl, "get", resource, "--watch", "--output-watch-events", "-o", "json"]
    args += ["--field-selector", selector] if selector else []
    args += ["-A"] if in_scope is not None else []
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    processes.append(process)
    decoder, buffer = json.JSONDecoder(), ""
    for line in process.stdout:
        buffer += line
        while buffer.strip():
            try:
                event, end = decoder.raw_decode(buffer.lstrip())
            except json.JSONDecodeError:
                break  # the rest of this event is still on its way
            buffer = buffer.lstrip()[end:]
            record(event, seen, kind_name, check, in_scope)
    # Unwatched from here on: what happens next would go unseen.
    violation(f"the watch of {resource} ended before the upgrade did")


def record(event, seen, kind_name, check, in_scope):
    kind, obj = event["type"], event["object"]
    key = (obj["metadata"].get("namespace"), obj["metadata"]["name"])
    if in_scope is not None and key[0] not in in_scope:
        return
    if key in seen:
        with lock:
            writes[kind_name] += 1
    seen.add(key)
    check(kind, obj)


threads = [
    ("secrets", f"metadata.name={name}", "Secret", check_secret, selected),
    ("serviceaccounts", "metadata.name=default", "ServiceAccount", check_account, selected),
    ("registrycredentials", f"metadata.name={credential}", "RegistryCredential", check_credential, None),
]
for args in threads:
    threading.Thread(target=follow, args=args, daemon=True).start()


def report(*_):
    with lock:
        for process in processes:
            process.terminate()
        print(json.dumps({"violations": violations, "writes": writes}))
    sys.stdout.flush()
    sys.exit(0)


signal.signal(signal.SIGTERM, report)
print("watching", file=sys.stderr, flush=True)
while True:
    time.sleep(1)
