#!/usr/bin/env python3
"""Reads a callgrind profile of the server (scripts/profile.sh) and splits its instructions by
layer, per booking; or lists what one function spends its instructions in.

  scripts/callgrind-layers.py PROFILE BOOKINGS            the layers, per booking
  scripts/callgrind-layers.py PROFILE BOOKINGS --callees NAME [--depth N]
                                                          NAME's callees (substring match)

Functions are counted by name whatever file callgrind attributes them to (inlined code is
reported under the file it came from, which splits one function into many entries otherwise).
A layer's figure is the inclusive cost of its root functions: a call from one root into another
root of the same layer is not counted twice.
"""
import re
import sys
from collections import defaultdict

# Layer -> regexes of root function names; the first layer that matches a function owns it.
LAYERS = [
    ("writer (group commit, diesel, SQLite)", [r"^reservation::actors::booking_store::commit(::\{\{closure\}\})?$"]),
    ("  of which SQLite", [r"^sqlite3_(step|prepare_v2|prepare_v3|exec|finalize|reset)$"]),
    ("HTTP: requests in, answers out (actix-http, actix-web, handlers)",
     [r"^<actix_http::h1::dispatcher::Dispatcher<.*> as core::future::future::Future>::poll$"]),
    ("  of which tokens (sign, check, keyed hash)", [r"^reservation::domain::tokens::Signer::"]),
    ("  of which JSON (serde_json)", [r"^serde_json::", r"^<serde_json::"]),
    ("actors (queues, inventories, identity pool)",
     [r"^<actix::context_impl::ContextFut<.*> as core::future::future::Future>::poll$"]),
    ("memory (malloc, free, realloc)", [r"^(malloc|free|realloc|calloc|_int_malloc|_int_free|cfree)$", r"^_?mi_"]),
]


def demangle(name):
    # Drop the trailing hash of a legacy-mangled name and recursion marks ('2).
    name = re.sub(r"'\d+$", "", name)
    return name


def parse(path):
    names = {}  # compressed id -> name
    self_cost = defaultdict(int)
    calls = defaultdict(lambda: defaultdict(int))  # caller -> callee -> inclusive
    fn = None
    cfn = None
    pending_call = False
    total = 0

    def resolve(spec):
        m = re.match(r"\((\d+)\)(?:\s+(.*))?$", spec)
        if m:
            if m.group(2):
                names[m.group(1)] = demangle(m.group(2))
            return names[m.group(1)]
        return demangle(spec)

    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                cost = int(parts[1]) if len(parts) > 1 else 0
                if pending_call:
                    if cfn != fn:
                        calls[fn][cfn] += cost
                    pending_call = False
                else:
                    self_cost[fn] += cost
                    total += cost
                continue
            if line.startswith("fn="):
                fn = resolve(line[3:])
            elif line.startswith("cfn="):
                cfn = resolve(line[4:])
            elif line.startswith("calls="):
                pending_call = True
            elif line.startswith("summary:") or line.startswith("totals:"):
                pass
    return self_cost, calls, total


def inclusive(fns, self_cost, calls):
    """Cost of the functions in `fns`, with their callees, each call into `fns` counted once."""
    cost = 0
    for f in fns:
        cost += self_cost.get(f, 0)
        for callee, c in calls.get(f, {}).items():
            if callee not in fns:
                cost += c
    return cost


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        sys.exit(2)
    path, bookings = sys.argv[1], int(sys.argv[2])
    self_cost, calls, total = parse(path)
    every = set(self_cost) | set(calls) | {c for v in calls.values() for c in v}
    if "--callees" in sys.argv:
        pat = sys.argv[sys.argv.index("--callees") + 1]
        fns = {f for f in every if pat in f}
        inc = inclusive(fns, self_cost, calls)
        print(f"{inc / bookings:12,.0f} per booking  {pat} (inclusive; {len(fns)} names)")
        print(f"{sum(self_cost.get(f, 0) for f in fns) / bookings:12,.0f} per booking  (self)")
        out = defaultdict(int)
        for f in fns:
            for callee, c in calls.get(f, {}).items():
                if callee not in fns:
                    out[callee] += c
        for callee, c in sorted(out.items(), key=lambda kv: -kv[1])[:25]:
            print(f"{c / bookings:12,.0f}  {callee[:150]}")
        return
    print(f"instructions per booking, {bookings} bookings, {total:,} in all\n")
    print("| layer | instructions per booking | share |")
    print("|---|---:|---:|")
    print(f"| everything the server ran | {total / bookings:,.0f} | 100 % |")
    for label, pats in LAYERS:
        fns = {f for f in every if any(re.search(p, f) for p in pats)}
        if label.startswith("memory"):
            cost = sum(self_cost.get(f, 0) for f in fns)
        else:
            cost = inclusive(fns, self_cost, calls)
        print(f"| {label.strip()} | {cost / bookings:,.0f} | {100 * cost / total:.1f} % |")
        if label.startswith("writer"):
            writer = cost
        elif label.strip() == "of which SQLite":
            rest = writer - cost
            print(f"| of which diesel and the writer's own code | {rest / bookings:,.0f} | "
                  f"{100 * rest / total:.1f} % |")


if __name__ == "__main__":
    main()
