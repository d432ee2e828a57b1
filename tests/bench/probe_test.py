#!/usr/bin/env python3
"""machine-bench --probe: the line deploy/local/bench.sh takes next to each
cell, and tools/bench/bound.py's use of it; and the shape of the whole
machine line at a small scale.

  probe_test.py PATH/TO/machine-bench PATH/TO/bound.py
"""
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import unittest

MACHINE_BENCH = sys.argv.pop(1)
spec = importlib.util.spec_from_file_location("bound", sys.argv.pop(1))
bound = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bound)


def probe(transfers):
    out = subprocess.run(
        [MACHINE_BENCH, "--probe", "--transfers", transfers, "--scale", "0.1"],
        check=True, capture_output=True, text=True, timeout=60).stdout
    lines = out.splitlines()
    assert len(lines) == 1, out
    return json.loads(lines[0])


class Probe(unittest.TestCase):
    def test_line(self):
        p = probe("1,100")
        self.assertEqual(p["kind"], "probe")
        self.assertEqual(set(p), {"kind", "ed25519"})
        # A vote, then a request and a reply at each transfer count, by size.
        sizes = [e["bytes"] for e in p["ed25519"]]
        self.assertEqual(len(sizes), 5)
        self.assertEqual(sizes, sorted(sizes))
        for e in p["ed25519"]:
            self.assertGreater(e["sign_us"], 0)
            self.assertGreater(e["verify_us"], 0)
        # The same --transfers give the same sizes, which is what lets
        # bound.py put the probes in place of the machine line's figures.
        again = probe("1,100")
        self.assertEqual([e["bytes"] for e in again["ed25519"]], sizes)
        m = {"ed25519": p["ed25519"], "vote_bytes": sizes[0]}
        mean = bound.probed(m, [p, again])
        self.assertEqual([e["bytes"] for e in mean["ed25519"]], sizes)
        for e, a, b in zip(mean["ed25519"], p["ed25519"], again["ed25519"]):
            self.assertAlmostEqual(e["verify_us"],
                                   (a["verify_us"] + b["verify_us"]) / 2)
        # Other transfer counts: other sizes, refused.
        with self.assertRaises(ValueError):
            bound.probed(m, [probe("1,10")])


class MachineLine(unittest.TestCase):
    def test_line(self):
        with tempfile.TemporaryDirectory() as d:
            out = subprocess.run(
                [MACHINE_BENCH, "--scale", "0.02", "--dir", d],
                check=True, capture_output=True, text=True,
                timeout=120).stdout
        lines = out.splitlines()
        self.assertEqual(len(lines), 1, out)
        m = json.loads(lines[0])
        self.assertEqual(m["kind"], "machine")
        for key in ("ed25519", "grpc_stream", "grpc_unary",
                    "fdatasync_ms_mean", "fdatasync_cpu_us", "handoff_us"):
            self.assertIn(key, m)
        # A hand-off costs CPU on one CPU, and on two when there are two
        # (null when the process may run on one only).
        h = m["handoff_us"]
        self.assertGreater(h["same_cpu"], 0)
        if len(os.sched_getaffinity(0)) > 1:
            self.assertGreater(h["other_cpu"], 0)
        else:
            self.assertIsNone(h["other_cpu"])
        # A round trip alone on a stream (a vote, an empty answer) costs
        # both sides CPU, and more than the same vote among thousands back
        # to back.
        idle = m["grpc_stream_idle_cpu_us"]
        vote = min(m["grpc_stream"], key=lambda s: s["bytes"])
        self.assertGreater(idle["client"], 0)
        self.assertGreater(idle["server"], 0)
        self.assertGreater(idle["client"] + idle["server"],
                           vote["send_us"] + vote["recv_us"])


if __name__ == "__main__":
    unittest.main()
