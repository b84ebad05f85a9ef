#!/usr/bin/env python3
"""A local stand-in for the two AWS calls of the kubelet's ECR credential provider plugin
(ecr-credential-provider), for tests that control the password and the lifetime it hands out.

Point the plugin at it with AWS_ENDPOINT_URL_ECR and AWS_ENDPOINT_URL_STS (both
http://127.0.0.1:PORT). It answers:
  ECR GetAuthorizationToken (JSON 1.1, header
      X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken) with
      {"authorizationData": [{"authorizationToken": base64("AWS:<password>"),
                              "expiresAt": <now + lifetime, epoch seconds>,
                              "proxyEndpoint": "https://<registry>"}]}
  STS AssumeRoleWithWebIdentity (query protocol: Action=AssumeRoleWithWebIdentity in the form
      body or the query string) with made-up credentials for the RoleArn, whatever the token.
      Their access key id is derived from the RoleArn (ASIA + 16 characters), so the log of the
      ECR call that follows tells which role's credentials signed it.
  GET /healthz with 200 "ok" (a readiness check); anything else with 400.
The requests are not authenticated: signatures and tokens are not checked.

State file (--state), read again on every ECR call, so a test rotates or expires the password
by replacing it (write a new file, then mv it over the old one). One key=value a line; blank
lines and lines starting with # are ignored:
  password=PASSWORD    required
  lifetime=SECONDS     the token's lifetime from the time of the call (default 3600); 0 or
                       negative hands out a token that has already expired
  registry=HOST[:PORT] the host of proxyEndpoint (default localhost; the plugin ignores it)
  error=CODE           answer GetAuthorizationToken with HTTP 400 and this error code instead
                       (e.g. AccessDeniedException)
A missing state file or one without a password is answered with HTTP 500.

Log (--log FILE, appended, default stdout): one JSON object a line per request, with time,
method, path, status, and "target" (X-Amz-Target) or "action" (STS); for STS also roleArn,
roleSessionName and webIdentityToken (true when a token was sent: the token is never logged);
for ECR authorization (the scheme of the Authorization header, null when unsigned), accessKeyId
and region (of the signature's scope).
Passwords are never logged either.

Usage: ecr-stub.py --state FILE [--port PORT] [--host ADDR] [--port-file FILE] [--log FILE]
  --port 0 (the default) binds a free port; --port-file gets the bound port once it listens.
"""

import argparse
import base64
import hashlib
import json
import os
import re
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

ECR_TARGET = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"
STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
SIGNATURE = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/,\s]*)/")


def read_state(path):
    state = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition("=")
            if sep:
                state[key.strip()] = value.strip()
    return state


def iso8601(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ecr-stub"

    def log_message(self, format, *args):  # the JSON log below replaces the access log
        pass

    def record(self, status, **fields):
        entry = {"time": round(time.time(), 3), "method": self.command,
                 "path": self.path, "status": status}
        entry.update(fields)
        line = json.dumps(entry, sort_keys=True)
        with self.server.log_lock:
            self.server.log.write(line + "\n")
            self.server.log.flush()

    def reply(self, status, body, content_type):
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if urllib.parse.urlsplit(self.path).path == "/healthz":
            self.reply(200, "ok\n", "text/plain")
            self.record(200)
        else:
            self.reply(400, "unsupported request\n", "text/plain")
            self.record(400)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        target = self.headers.get("X-Amz-Target", "")
        if target:
            if target == ECR_TARGET:
                self.ecr()
            else:
                self.reply(400, json.dumps({"__type": "UnknownOperationException",
                                            "message": "not served by the stub: " + target}),
                           "application/x-amz-json-1.1")
                self.record(400, target=target)
            return
        params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        if "x-www-form-urlencoded" in self.headers.get("Content-Type", ""):
            params.update(urllib.parse.parse_qsl(body))
        action = params.get("Action", "")
        if action == "AssumeRoleWithWebIdentity":
            self.sts(params)
        else:
            self.sts_error(400, "InvalidAction", "not served by the stub: " + action,
                           action=action)

    # --- ECR -----------------------------------------------------------------------------
    def ecr(self):
        match = SIGNATURE.search(self.headers.get("Authorization", ""))
        fields = {"target": ECR_TARGET,
                  "authorization": (self.headers.get("Authorization") or "").split(" ")[0] or None,
                  "accessKeyId": match.group(1) if match else None,
                  "region": match.group(2) if match else None}
        content_type = "application/x-amz-json-1.1"
        try:
            state = read_state(self.server.state_path)
            password = state["password"]
            lifetime = float(state.get("lifetime", "3600"))
        except (OSError, KeyError, ValueError) as e:
            message = "stub state %s unusable: %s" % (self.server.state_path, type(e).__name__)
            self.reply(500, json.dumps({"__type": "ServerException", "message": message}),
                       content_type)
            self.record(500, error=message, **fields)
            return
        if state.get("error"):
            self.reply(400, json.dumps({"__type": state["error"], "message": "stub error"}),
                       content_type)
            self.record(400, error=state["error"], **fields)
            return
        expires_at = time.time() + lifetime
        token = base64.b64encode(("AWS:" + password).encode("utf-8")).decode("ascii")
        body = {"authorizationData": [{
            "authorizationToken": token,
            "expiresAt": expires_at,
            "proxyEndpoint": "https://" + state.get("registry", "localhost"),
        }]}
        self.reply(200, json.dumps(body), content_type)
        self.record(200, expiresAt=expires_at, lifetime=lifetime, **fields)

    # --- STS -------------------------------------------------------------------------------
    def sts_error(self, status, code, message, **fields):
        body = ('<ErrorResponse xmlns="%s"><Error><Type>Sender</Type><Code>%s</Code>'
                '<Message>%s</Message></Error><RequestId>stub</RequestId></ErrorResponse>'
                % (STS_NS, escape(code), escape(message)))
        self.reply(status, body, "text/xml")
        self.record(status, error=code, **fields)

    def sts(self, params):
        role_arn = params.get("RoleArn", "")
        session = params.get("RoleSessionName", "")
        fields = {"action": "AssumeRoleWithWebIdentity", "roleArn": role_arn,
                  "roleSessionName": session,
                  "webIdentityToken": bool(params.get("WebIdentityToken"))}
        parts = role_arn.split(":", 5)
        if len(parts) != 6 or parts[2] != "iam" or not parts[5].startswith("role/"):
            self.sts_error(400, "ValidationError", "RoleArn is not an IAM role ARN", **fields)
            return
        if not fields["webIdentityToken"]:
            self.sts_error(400, "ValidationError", "WebIdentityToken is missing", **fields)
            return
        account, role = parts[4], parts[5][len("role/"):]
        digest = hashlib.sha256(role_arn.encode("utf-8")).hexdigest().upper()
        key_id = "ASIA" + digest[:16]
        now = time.time()
        body = (
            '<AssumeRoleWithWebIdentityResponse xmlns="%(ns)s">'
            "<AssumeRoleWithWebIdentityResult>"
            "<SubjectFromWebIdentityToken>stub</SubjectFromWebIdentityToken>"
            "<Audience>sts.amazonaws.com</Audience>"
            "<AssumedRoleUser>"
            "<Arn>arn:%(partition)s:sts::%(account)s:assumed-role/%(role)s/%(session)s</Arn>"
            "<AssumedRoleId>AROA%(id)s:%(session)s</AssumedRoleId>"
            "</AssumedRoleUser>"
            "<Credentials>"
            "<AccessKeyId>%(key)s</AccessKeyId>"
            "<SecretAccessKey>stub-secret-%(secret)s</SecretAccessKey>"
            "<SessionToken>stub-session-%(secret)s</SessionToken>"
            "<Expiration>%(expiration)s</Expiration>"
            "</Credentials>"
            "<Provider>stub</Provider>"
            "</AssumeRoleWithWebIdentityResult>"
            "<ResponseMetadata><RequestId>stub</RequestId></ResponseMetadata>"
            "</AssumeRoleWithWebIdentityResponse>"
        ) % {"ns": STS_NS, "partition": escape(parts[1]), "account": escape(account),
             "role": escape(role), "session": escape(session or "stub"), "id": digest[16:33],
             "key": key_id, "secret": digest[33:49], "expiration": iso8601(now + 3600)}
        self.reply(200, body, "text/xml")
        self.record(200, accessKeyId=key_id, **fields)


def main():
    parser = argparse.ArgumentParser(description="Local ECR GetAuthorizationToken and STS "
                                     "AssumeRoleWithWebIdentity for ecr-credential-provider.")
    parser.add_argument("--state", required=True, help="key=value file: password, lifetime, ...")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--port-file", help="written with the bound port once listening")
    parser.add_argument("--log", help="JSON lines, appended (default stdout)")
    args = parser.parse_args()

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    server.state_path = os.path.abspath(args.state)
    server.log = open(args.log, "a", encoding="utf-8") if args.log else sys.stdout
    server.log_lock = threading.Lock()
    port = server.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("%d\n" % port)
        os.replace(tmp, args.port_file)
    print("ecr-stub listening on %s:%d" % (args.host, port), file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
