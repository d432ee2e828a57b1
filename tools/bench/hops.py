#!/usr/bin/env python3
"""Where a hop's time goes: reads the event files of a local cluster's
ledgerd processes run with PBFT_TRACE_EVENTS=PREFIX (common/trace.h) and
prints one JSON line per segment with its p50, p90 and mean in µs.

    tools/bench/hops.py PREFIX.*        (one file per ledgerd process)

Events (what a b):
  submit    client request-number    client request admitted (client service)
  in        type sender              envelope handed to the core (core thread)
  persist   entries 0                protocol-store append starts (core thread)
  persisted entries 0                ... returned (synced)
  send      type to|2^64-1           core hands a message to the transport
  write     type peer                a stream write carrying it starts
  read      type sender              read from a peer's stream (its thread)
  verified  type sender              verified, into the core's inbox
  execute   seq 0 / executed seq 0   a block's execution (synced write)
  reply     client 0                 a reply handed to the client service

A peer message's hop from replica S to replica R is matched as the latest
`send` of its type at S, then the latest `write` to R, `read` and
`verified` at R from S, and the `in` at R: an approximation that is exact
when one message of a type is in flight between two replicas at a time
(one client), which is what it is meant for. Segments:
  queued        send -> write      (sender: the send queue, a write in flight)
  transport     write -> read      (gRPC, TCP, the receiver's stream thread)
  verify        read -> verified   (signature and encoding checks)
  inbox         verified -> in     (waiting for the core thread)
  hop           send -> in
  intake        submit -> the next in of that client's REQUEST at the
                same replica (the client service to the core thread)
  persist       persist -> persisted
  execute       execute -> executed
Files are matched to replicas by order of their names' pids (a local
cluster starts replica 0 first); only relative figures matter here.
"""
import collections
import json
import sys


def load(paths):
    events = []
    for index, path in enumerate(sorted(paths, key=lambda p: int(p.rsplit('.', 1)[1]))):
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) != 4:
                    continue
                events.append((int(parts[0]), index, parts[1], int(parts[2]), int(parts[3])))
    events.sort()
    return events


def segments(events):
    last = {}
    seg = collections.defaultdict(list)
    started = {}
    for t, r, what, a, b in events:
        if what == 'send':
            last[(r, 'send', a)] = t
        elif what == 'write':
            last[(r, 'write', a, b)] = t
        elif what in ('read', 'verified'):
            last[(r, what, a, b)] = t
        elif what == 'submit':
            last[(r, 'submit_client', a)] = t
        elif what in ('persist', 'execute'):
            started[(r, what)] = t
        elif what in ('persisted', 'executed'):
            begin = started.pop((r, 'persist' if what == 'persisted' else 'execute'), None)
            if begin is not None:
                seg['persist' if what == 'persisted' else 'execute'].append(t - begin)
        elif what == 'in':
            if a == 1:  # REQUEST: the first after this replica's Submit
                # (later ones are copies forwarded by peers).
                s = last.pop((r, 'submit_client', b), None)
                if s is not None and s <= t:
                    seg['intake'].append(t - s)
                continue
            sender = b
            try:
                read = last[(r, 'read', a, sender)]
                verified = last[(r, 'verified', a, sender)]
                write = last[(sender, 'write', a, r)]
                send = last[(sender, 'send', a)]
            except KeyError:
                continue
            if not send <= write <= read <= verified <= t:
                continue
            seg['queued'].append(write - send)
            seg['transport'].append(read - write)
            seg['verify'].append(verified - read)
            seg['inbox'].append(t - verified)
            seg['hop'].append(t - send)
    return seg


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    seg = segments(load(argv[1:]))
    order = ['queued', 'transport', 'verify', 'inbox', 'hop', 'intake', 'persist', 'execute']
    for name in order:
        values = sorted(seg.get(name, []))
        if not values:
            continue
        print(json.dumps({
            'segment': name, 'n': len(values),
            'p50_us': values[len(values) // 2],
            'p90_us': values[int(len(values) * 0.9)],
            'mean_us': round(sum(values) / len(values), 1)}))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
