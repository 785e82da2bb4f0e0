#!/usr/bin/env python3
"""Runs schemathesis against a fresh release server, with every check and every phase.

    python3 tests/schemathesis/run.py [--binary target/release/reservation] [--max-examples N]

Starts the server on a free loopback port with a throw-away database, creates a cohort that is
open now, a center with slots, and takes from it what a citizen holds at each step (a ticket,
a pass, a session, a leftover sign-up), so that schemathesis reaches the operations behind each bearer scheme; then
runs `schemathesis run` on `/api-docs/openapi.json` and exits with its status. The server is
stopped in every case.
"""

import argparse
import datetime
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    def __init__(self, base):
        self.base = base

    def call(self, method, path, body=None, token=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as res:
                return res.status, json.loads(res.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def expect(self, status, method, path, body=None, token=None):
        got, answer = self.call(method, path, body, token)
        if got != status:
            sys.exit(f"setup: {method} {path} answered {got} {answer}, expected {status}")
        return answer


def seed(c, admin):
    now = datetime.datetime.now(datetime.timezone.utc)
    cohort = c.expect(201, "POST", "/api/v1/admin/cohorts", {
        "name": "everyone", "birth_year_from": 1900, "birth_year_to": 2100,
        "opens_at": (now - datetime.timedelta(minutes=1)).isoformat(),
        "closes_at": (now + datetime.timedelta(days=1)).isoformat(),
        "vaccine": "Moderna", "dose_interval_days": 28, "admission_rate_per_s": 1000,
    }, admin)
    center = c.expect(201, "POST", "/api/v1/admin/centers",
                      {"name": "Jongno", "region": "Seoul", "address": "1 Sejong-daero"}, admin)
    today = now.date()
    slots = []
    for d in range(1, 50):
        for start in ("09:00", "10:00"):
            day = (today + datetime.timedelta(days=d)).isoformat()
            end = start.replace(":00", ":30")
            slots.append({"date": day, "start_time": start, "end_time": end,
                          "capacity": 50, "vaccine": "Moderna"})
    c.expect(201, "POST", f"/api/v1/admin/centers/{center['id']}/slots", {"slots": slots}, admin)

    def admitted_pass():
        ticket = c.expect(201, "POST", f"/api/v1/cohorts/{cohort['id']}/queue")["ticket"]
        for _ in range(200):
            answer = c.expect(200, "GET", "/api/v1/queue", token=ticket)
            if answer.get("pass"):
                return ticket, answer["pass"]
            time.sleep(0.05)
        sys.exit("setup: no admission within 10 s")

    ticket, _ = admitted_pass()
    _, fresh_pass = admitted_pass()
    _, used_pass = admitted_pass()
    session = c.expect(201, "POST", "/api/v1/verifications", {
        "name": "김민영", "birth_date": "1968-03-01", "phone": "010-1234-5678",
    }, used_pass)["session"]
    # A second citizen signed up for leftovers, so that the operations behind an entry are
    # reached with a live one (the first citizen stays free to sign up).
    _, entry_pass = admitted_pass()
    other = c.expect(201, "POST", "/api/v1/verifications", {
        "name": "박서준", "birth_date": "1969-05-02", "phone": "010-2345-6789",
    }, entry_pass)["session"]
    entry = c.expect(201, "POST", "/api/v1/leftovers/waitlist",
                     {"center_ids": [center["id"]]}, other)["entry"]
    return ticket, fresh_pass, session, entry


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "reservation"))
    ap.add_argument("--max-examples", default="100")
    ap.add_argument("extra", nargs="*", help="more arguments for `schemathesis run`")
    args = ap.parse_args()

    port = free_port()
    admin = secrets.token_hex(16)
    data = tempfile.mkdtemp(prefix="schemathesis-")
    env = dict(os.environ, BIND_ADDR=f"127.0.0.1:{port}", ADMIN_TOKEN=admin,
               DATABASE_URL=os.path.join(data, "db.sqlite"), RUST_LOG="warn",
               IDENTITY_LATENCY_MS="5")
    log = open(os.path.join(data, "server.log"), "w")
    server = subprocess.Popen([args.binary], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        c = Client(f"http://127.0.0.1:{port}")
        for _ in range(100):
            try:
                if c.call("GET", "/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            sys.exit("setup: the server did not start")
        ticket, fresh_pass, session, entry = seed(c, admin)
        run_env = dict(os.environ, ST_ADMIN_TOKEN=admin, ST_TICKET=ticket, ST_PASS=fresh_pass,
                       ST_SESSION=session, ST_ENTRY=entry)
        cmd = ["schemathesis", "--config-file", os.path.join(HERE, "schemathesis.toml"), "run",
               f"http://127.0.0.1:{port}/api-docs/openapi.json",
               "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful",
               "--max-examples", args.max_examples, "--seed", "20210712",
               "--report", "junit", "--report-dir", os.path.join(data, "report"),
               *args.extra]
        print("$", " ".join(cmd), flush=True)
        code = subprocess.call(cmd, env=run_env)
        if server.poll() is not None:
            print(f"the server exited during the run ({server.returncode})", file=sys.stderr)
            code = code or 1
        print(f"server log and report: {data}")
        return code
    finally:
        server.terminate()
        server.wait(timeout=15)


if __name__ == "__main__":
    sys.exit(main())
