#!/usr/bin/env python3
"""Watches what an upgrade must never break, from the moment it starts until SIGTERM, through
the API server's own watch streams (kubectl --watch: every change, not samples):

  - a copy (Secret NAME in a selected namespace) is never deleted and never loses its payload;
  - a selected ServiceAccount never lacks the copy's entry, nor any of the user's own entries;
  - the RegistryCredential keeps its status and is Ready=True throughout, or Progressing while
    the operator adds a namespace (never a failure reason).

A watch the API server closes (it does so for a custom resource whenever its CRD changes, as an
upgrade does) is opened again; the objects it lists again are checked again, and a write is
counted only where an object's resourceVersion moved.

Usage: watch.py KUBECTL NAME CREDENTIAL OWN_ENTRY READY_FILE NAMESPACE...
  READY_FILE is written once every watched object has been seen (the initial lists are in);
  on SIGTERM it prints a JSON summary: the violations, the writes seen per object on what
  existed when it started, and how often a watch was opened again.
"""

import json
import signal
import subprocess
import sys
import threading
import time

kubectl, name, credential, own_entry, ready_file, *namespaces = sys.argv[1:]
selected = set(namespaces)
violations = []
writes = {}  # "Kind namespace/name" -> writes seen after its first sighting
reconnects = {}
versions = {}  # "Kind namespace/name" -> last resourceVersion seen
lock = threading.Lock()
processes = []
stopping = threading.Event()


def violation(text):
    with lock:
        violations.append(f"{time.strftime('%H:%M:%S')} {text}")


def check_secret(kind, obj, where):
    if kind == "DELETED":
        violation(f"copy {where} deleted")
    elif ".dockerconfigjson" not in (obj.get("data") or {}):
        violation(f"copy {where} without its payload")


def check_account(kind, obj, where):
    entries = {e.get("name") for e in obj.get("imagePullSecrets") or []}
    if kind == "DELETED":
        violation(f"ServiceAccount {where} deleted")
    for wanted in (name, own_entry):
        if wanted not in entries:
            violation(f"ServiceAccount {where} without the entry {wanted}")


def check_credential(kind, obj, where):
    conditions = (obj.get("status") or {}).get("conditions") or []
    ready = [c for c in conditions if c.get("type") == "Ready"]
    failing = ready and ready[0].get("status") != "True" and ready[0].get("reason") != "Progressing"
    if kind == "DELETED" or not ready or failing:
        state = ready[0].get("reason") if ready else "no Ready condition"
        violation(f"RegistryCredential {where} {kind.lower()}: {state}")


def record(event, kind_name, check, in_scope):
    kind, obj = event["type"], event["object"]
    metadata = obj.get("metadata") or {}
    if obj.get("kind") == "Status" or "name" not in metadata:
        violation(f"the {kind_name} watch returned an error: {obj.get('message', '')[:200]}")
        return
    namespace = metadata.get("namespace")
    if in_scope is not None and namespace not in in_scope:
        return
    where = f"{namespace}/{metadata['name']}" if namespace else metadata["name"]
    key = f"{kind_name} {where}"
    with lock:
        before = versions.get(key)
        versions[key] = metadata.get("resourceVersion")
        if before is not None and before != versions[key]:
            writes[key] = writes.get(key, 0) + 1
        elif before is None:
            writes.setdefault(key, 0)
    check(kind, obj, where)


def stream(resource, selector, kind_name, check, in_scope):
    args = [kubectl, "get", resource, "--watch", "--output-watch-events", "-o", "json", "--field-selector", selector]
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
            record(event, kind_name, check, in_scope)
        if len(buffer) > 4 << 20:
            violation(f"the {kind_name} watch printed 4 MiB that never parsed")
            break
    process.wait()


def follow(*args):
    kind_name = args[2]
    try:
        while not stopping.is_set():
            stream(*args)
            if stopping.is_set():
                break
            with lock:
                reconnects[kind_name] = reconnects.get(kind_name, 0) + 1
            time.sleep(0.2)
    except Exception as error:  # an unwatched stretch must not pass silently
        violation(f"the {kind_name} watch failed: {error!r}")


watches = [
    ("secrets", f"metadata.name={name}", "Secret", check_secret, selected),
    ("serviceaccounts", "metadata.name=default", "ServiceAccount", check_account, selected),
    ("registrycredentials", f"metadata.name={credential}", "RegistryCredential", check_credential, None),
]
for args in watches:
    threading.Thread(target=follow, args=args, daemon=True).start()


def report(*_):
    stopping.set()
    with lock:
        for process in processes:
            process.terminate()
        print(json.dumps({"violations": violations, "writes": writes, "reconnects": reconnects}))
    sys.stdout.flush()
    sys.exit(0)


signal.signal(signal.SIGTERM, report)
expected = 2 * len(selected) + 1
while True:
    with lock:
        seen = len(versions)
    if seen >= expected:
        with open(ready_file, "w") as ready:
            ready.write("ready\n")
        break
    time.sleep(0.1)
while True:
    time.sleep(1)
