#!/usr/bin/env python3
"""The bound's arithmetic (tools/bench/bound.py) on fixed inputs.

  bound_test.py PATH/TO/bound.py
"""
import importlib.util
import sys
import unittest

spec = importlib.util.spec_from_file_location("bound", sys.argv.pop(1))
bound = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bound)

# A machine with round figures: a 100-byte vote, requests and replies of
# 100 bytes at one transfer.
MACHINE = {
    "nproc": 2,
    "ed25519": [
        {"bytes": 100, "sign_us": 20, "verify_us": 50},
        {"bytes": 1100, "sign_us": 30, "verify_us": 60},
    ],
    "sha256_us_per_kb": 1.0,
    "vote_bytes": 100,
    "sizes": [
        {"transfers": 1, "request_bytes": 100, "reply_bytes": 100},
        {"transfers": 101, "request_bytes": 1100, "reply_bytes": 600},
    ],
    "grpc_stream": [
        {"bytes": 100, "send_us": 5, "recv_us": 5, "wall_us": 1},
        {"bytes": 1100, "send_us": 10, "recv_us": 10, "wall_us": 1},
    ],
    "grpc_stream_hop_us": 50,
    "grpc_unary": {"client_us": 20, "server_us": 20, "rtt_us": 100},
    "fdatasync_ms_mean": 1.0,
}
EXEC = {"transfers_per_process_cpu_s": 100000, "transfers_per_cpu_s": 500,
        "block_p50_ms": 9.0}


class Interp(unittest.TestCase):
    def test_between_and_beyond(self):
        pts = [(100, 10), (1100, 20)]
        self.assertAlmostEqual(bound.interp(pts, 600), 15)
        self.assertAlmostEqual(bound.interp(pts, 2100), 30)  # last slope
        self.assertAlmostEqual(bound.interp(pts, 0), 10)  # never below min


class Counts(unittest.TestCase):
    def test_four_replicas_one_request_per_block(self):
        c = bound.counts(4, 1, 128)
        # PRE-PREPARE + 3 PREPAREs + 4 COMMITs, and 4/128 CHECKPOINTs.
        self.assertAlmostEqual(c["sign_vote"], 8 + 4 / 128)
        # 3 PRE-PREPAREs, 9 PREPAREs, 12 COMMITs received; 12/128 CHECKPOINTs.
        self.assertAlmostEqual(c["verify_vote"], 24 + 12 / 128)
        self.assertEqual(c["verify_request"], 4)
        self.assertEqual(c["verify_reply"], 2)
        # The client sends to f+1 = 2 (the primary and one backup), and
        # those two reply; backups forward nothing in the normal case (only
        # what no PRE-PREPARE carried within the forward delay).
        self.assertEqual(c["msg_request"], 2)
        self.assertEqual(c["msg_reply"], 2)
        self.assertEqual(c["msg_forward"], 0)
        self.assertEqual(c["received_per_block"]["REQUEST"], 2)
        self.assertEqual(c["received_per_block"]["COMMIT"], 12)

    def test_per_block_costs_shrink_with_the_batch(self):
        c = bound.counts(4, 10, 128)
        self.assertAlmostEqual(c["sign_vote"], (8 + 4 / 128) / 10)
        # Per request, not per block; only the f+1 the client waits on.
        self.assertEqual(c["sign_reply"], 2)
        self.assertEqual(c["received_per_block"]["REQUEST"], 20)


class Bound(unittest.TestCase):
    def test_cpu_per_request(self):
        cpu = bound.cpu_per_request(MACHINE, EXEC, 4, 1, 1, 128)
        self.assertAlmostEqual(cpu["sign"], 8.03125 * 20 + 20 + 2 * 20, places=2)
        self.assertAlmostEqual(cpu["verify"], 24.09375 * 50 + 4 * 50 + 2 * 50,
                               places=2)
        # PRE-PREPARE of 200 bytes: 11 µs; votes, 2 requests, 2 replies: 10.
        self.assertAlmostEqual(cpu["grpc"], 3 * 11 + 21.09375 * 10 + 20 + 20,
                               places=2)
        # 9 passes over a 100-byte request, one over each vote received.
        self.assertAlmostEqual(cpu["sha256"], (900 + 24.09375 * 100) / 1024,
                               places=2)
        self.assertAlmostEqual(cpu["execute"], 40)
        total = 2162.97 - 30 - 300 / 1024 - 40 - 200 / 1024 - 40
        self.assertAlmostEqual(cpu["total"], total, places=2)
        # Unary calls at 40 µs instead of 2 x 10 µs of stream, 2 replicas.
        self.assertAlmostEqual(cpu["total_unary_client_calls"], total + 40,
                               places=2)

    def test_requests_and_transfers(self):
        b = bound.bound(MACHINE, EXEC, 4, 1, 1, 128, 2)
        self.assertAlmostEqual(b["bound_requests_per_s"], 974.4, places=1)
        self.assertAlmostEqual(b["bound_transfers_per_s"], 974.4, places=1)
        b101 = bound.bound(MACHINE, EXEC, 4, 1, 101, 128, 2)
        # Both are rounded to 0.1 after the product.
        self.assertAlmostEqual(b101["bound_transfers_per_s"],
                               101 * b101["bound_requests_per_s"], delta=101 * 0.1)

    def test_primary_split(self):
        sp = bound.primary_split(MACHINE, EXEC, 4, 1, 1, 128)["us"]
        # PRE-PREPARE, COMMIT, 1/128 CHECKPOINT of 100 bytes; one reply.
        self.assertAlmostEqual(sp["sign"], (2 + 1 / 128) * 20 + 20, places=2)
        # 3 PREPAREs + 3 COMMITs + 3/128 CHECKPOINTs in; the request once.
        self.assertAlmostEqual(sp["verify"], (6 + 3 / 128) * 50 + 50, places=2)
        # The client's request and 6.02 votes received at 5 µs; PRE-PREPARE
        # (200 B, 5.5 µs) to 3 peers, COMMIT+CHECKPOINT to 3, the reply: 5 µs.
        self.assertAlmostEqual(
            sp["grpc"], 5 + (6 + 3 / 128) * 5 + 3 * 5.5
            + 3 * (1 + 1 / 128) * 5 + 5, places=2)
        self.assertAlmostEqual(sp["execute"], 10)

    def test_floor(self):
        fl = bound.floor(MACHINE, EXEC)
        # Four 1 ms syncs, 2 ms of execution CPU (500 transfers per CPU-s).
        self.assertEqual(fl["parts_ms"], {
            "fsync_x4": 4.0, "execute_cpu": 2.0, "sign_x5": 0.1,
            "verify_x6": 0.3, "hops_x5": 0.25})
        self.assertAlmostEqual(fl["latency_floor_ms"], 6.65)

    def test_floor_with_the_runs_own_writes(self):
        fl = bound.floor(MACHINE, EXEC, run_writes_ms=(2.0, 1.0))
        self.assertEqual(fl["parts_ms"]["fsync_x3"], 6.0)
        self.assertEqual(fl["parts_ms"]["execute_block"], 1.0)
        self.assertNotIn("fsync_x4", fl["parts_ms"])
        self.assertAlmostEqual(fl["latency_floor_ms"], 7.65)


class Counters(unittest.TestCase):
    TEXT = """# HELP ledger_messages_received_total x
ledger_messages_received_total{type="MESSAGE_TYPE_COMMIT"} 30
ledger_messages_received_total{type="MESSAGE_TYPE_REQUEST"} 70
ledger_blocks_executed_total 10
ledger_batch_requests_sum 20
ledger_batch_requests_count 10
ledger_storage_write_seconds_bucket{store="protocol",le="0.001"} 3
ledger_storage_write_seconds_sum{store="protocol"} 0.5
ledger_storage_write_seconds_count{store="protocol"} 100
"""

    def test_parse_and_difference(self):
        r = bound.parse_metrics(self.TEXT)
        self.assertEqual(r["received"], {"COMMIT": 30.0, "REQUEST": 70.0})
        self.assertEqual(r["batch_requests_sum"], 20.0)
        zero = {"received": {}, "blocks": 0, "batch_requests_sum": 0,
                "batch_requests_count": 0}
        m = bound.measured_counts({"replicas": [zero, zero]},
                                  {"replicas": [r, r]})
        self.assertEqual(m["requests_per_block"], 2.0)
        self.assertEqual(m["received_per_block"], {"COMMIT": 6.0,
                                                   "REQUEST": 14.0})
        self.assertAlmostEqual(m["protocol_write_ms"], 5.0)  # 1 s / 200
        self.assertIsNone(m["ledger_write_ms"])
        with self.assertRaises(ValueError):
            bound.measured_counts({"replicas": [zero]}, {"replicas": [zero]})


class CellLine(unittest.TestCase):
    def test_ratios(self):
        zero = bound.parse_metrics("")
        after = bound.parse_metrics(
            "ledger_batch_requests_sum 100\nledger_batch_requests_count 100\n"
            'ledger_messages_received_total{type="MESSAGE_TYPE_COMMIT"} 1200\n')
        result = {"requests_per_s": 487.2, "transfers_per_s": 487.2,
                  "p50_ms": 11.3, "batch": 1}
        line = bound.cell_line(MACHINE, EXEC, result, {"replicas": [zero]},
                               {"replicas": [after]}, cpu_s=1.0, wall_s=1.0,
                               nproc=2, load=3.5, n=4, k=128, floor_ms=5.65)
        self.assertEqual(line["requests_per_block"], 1.0)
        self.assertAlmostEqual(line["bound_requests_per_s"], 974.4)
        self.assertAlmostEqual(line["ratio"], 0.5, places=3)
        # One core of two used: the bound at that core is half.
        self.assertEqual(line["cores_used"], 1.0)
        self.assertAlmostEqual(line["ratio_at_cores_used"], 1.0, places=2)
        self.assertEqual(line["cpu_us_per_request_measured"], 10000.0)
        self.assertEqual(line["received_per_block"]["COMMIT"],
                         {"model": 12.0, "measured": 12.0})
        self.assertEqual(line["p50_over_floor"], 2.0)
        self.assertNotIn("latency_floor_in_run_ms", line)  # no writes seen
        self.assertNotIn("context_switches_per_request", line)
        line = bound.cell_line(MACHINE, EXEC, result, {"replicas": [zero]},
                               {"replicas": [after]}, cpu_s=1.0, wall_s=1.0,
                               nproc=2, load=3.5, n=4, k=128, floor_ms=5.65,
                               ctx_switches=2500)
        # 2,500 switches over the 100 requests of the window.
        self.assertEqual(line["context_switches_per_request"], 25.0)

    def test_probed_bound(self):
        zero = bound.parse_metrics("")
        after = bound.parse_metrics(
            "ledger_batch_requests_sum 100\nledger_batch_requests_count 100\n")
        result = {"requests_per_s": 487.2, "p50_ms": 11.3, "batch": 1}
        args = dict(m=MACHINE, exec_json=EXEC, result=result,
                    before={"replicas": [zero]}, after={"replicas": [after]},
                    cpu_s=1.0, wall_s=1.0, nproc=2, load=1.0, n=4, k=128,
                    floor_ms=5.65)
        plain = bound.cell_line(**args)
        self.assertNotIn("ratio_probed", plain)
        # Probes that measured what the machine line did: the same bound.
        same = {"ed25519": MACHINE["ed25519"]}
        line = bound.cell_line(probes=[same, same], **args)
        self.assertEqual(line["bound_requests_per_s_probed"],
                         plain["bound_requests_per_s"])
        self.assertEqual(line["ratio_probed"], plain["ratio"])
        # Slower next to the cell (verify 60/80 µs before, 80/100 after, the
        # mean 70/90 against 50/60): a lower probed bound, the line's own
        # bound unchanged.
        slow0 = {"ed25519": [dict(e, verify_us=e["verify_us"] + d) for e, d in
                             zip(MACHINE["ed25519"], (10, 20))]}
        slow1 = {"ed25519": [dict(e, verify_us=e["verify_us"] + d) for e, d in
                             zip(MACHINE["ed25519"], (30, 40))]}
        line = bound.cell_line(probes=[slow0, slow1], **args)
        self.assertEqual(line["bound_requests_per_s"],
                         plain["bound_requests_per_s"])
        self.assertLess(line["bound_requests_per_s_probed"],
                        plain["bound_requests_per_s"])
        self.assertGreater(line["ratio_probed"], plain["ratio"])
        self.assertEqual(line["verify_us_at_vote"],
                         {"machine": 50.0, "before": 60.0, "after": 80.0})
        # The model's verify share at the probes' mean, from the same counts.
        m = bound.probed(MACHINE, [slow0, slow1])
        self.assertEqual([e["verify_us"] for e in m["ed25519"]], [70, 90])
        self.assertEqual(bound.bound(m, EXEC, 4, 1.0, 1, 128, 2)
                         ["bound_requests_per_s"],
                         line["bound_requests_per_s_probed"])
        with self.assertRaises(ValueError):
            bound.probed(MACHINE, [{"ed25519": MACHINE["ed25519"][:1]}])

    def test_cpu_by_thread_name(self):
        import os
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            before, after = os.path.join(d, "b"), os.path.join(d, "a")
            with open(before, "w") as f:
                f.write("core\t100\nclient-cq\t50\n")
            # A thread started in the window (leveldb-bg) counts from zero;
            # one that did no work is left out; names may hold spaces.
            with open(after, "w") as f:
                f.write("core\t300\nclient-cq\t50\nleveldb-bg\t40\n"
                        "grpc thread\t10\n")
            # 100 ticks a second, 10 requests: a tick is 1,000 µs a request.
            split = bound.thread_split(before, after, 100, 10)
        self.assertEqual(split, {"core": 200000.0, "leveldb-bg": 40000.0,
                                 "grpc thread": 10000.0})
        self.assertEqual(list(split), ["core", "leveldb-bg", "grpc thread"])

    def test_in_run_floor_only_for_one_client(self):
        zero = bound.parse_metrics("")
        after = bound.parse_metrics(
            "ledger_batch_requests_sum 10\nledger_batch_requests_count 10\n"
            'ledger_storage_write_seconds_sum{store="protocol"} 0.02\n'
            'ledger_storage_write_seconds_count{store="protocol"} 10\n'
            'ledger_storage_write_seconds_sum{store="ledger"} 0.01\n'
            'ledger_storage_write_seconds_count{store="ledger"} 10\n')
        args = dict(m=MACHINE, exec_json=EXEC, before={"replicas": [zero]},
                    after={"replicas": [after]}, cpu_s=1.0, wall_s=1.0,
                    nproc=2, load=1.0, n=4, k=128, floor_ms=5.65)
        one = {"requests_per_s": 10, "p50_ms": 7.65, "batch": 1, "clients": 1}
        line = bound.cell_line(result=one, **args)
        # 2 ms writes x 3, 1 ms block, 0.65 ms of signatures and hops.
        self.assertAlmostEqual(line["latency_floor_in_run_ms"], 7.65)
        self.assertEqual(line["p50_over_floor_in_run"], 1.0)
        many = dict(one, clients=64)
        self.assertNotIn("latency_floor_in_run_ms",
                         bound.cell_line(result=many, **args))


class Targets(unittest.TestCase):
    def cell(self, b, c, ratio, probed, rss, **more):
        d = {"batch": b, "clients": c, "ratio": ratio, "ratio_probed": probed,
             "replica_peak_rss_mb": rss, "p50_ms": 4.0,
             "latency_floor_ms": 2.0, "p50_over_floor": 2.0}
        d.update(more)
        return d

    def test_each_target_against_its_cell(self):
        cells = [
            self.cell(1, 1, 0.2, 0.2, 40, p50_over_floor_in_run=1.4,
                      latency_floor_in_run_ms=2.9),
            self.cell(1, 64, 0.71, 0.69, 50),
            self.cell(100, 64, 0.5, 0.6, 301),
            {"kind": "machine"},  # Lines without a ratio are not cells.
        ]
        t = bound.targets(cells)
        self.assertEqual(t["kind"], "targets")
        self.assertTrue(t["ratio_1x64"]["met"])
        self.assertFalse(t["ratio_1x64"]["met_probed"])
        self.assertFalse(t["ratio_100x64"]["met"])
        self.assertEqual(t["replica_peak_rss_mb"]["largest"], 301)
        self.assertFalse(t["replica_peak_rss_mb"]["met"])
        self.assertFalse(t["one_client_p50"]["met"])
        self.assertTrue(t["one_client_p50"]["met_in_run"])
        self.assertEqual(t["one_client_p50"]["p50_over_floor_in_run"], 1.4)

    def test_bounds_are_inclusive_and_absent_cells_left_out(self):
        t = bound.targets([self.cell(100, 64, 0.7, 0.7, 300)])
        self.assertTrue(t["ratio_100x64"]["met"])
        self.assertTrue(t["replica_peak_rss_mb"]["met"])
        self.assertNotIn("ratio_1x64", t)
        self.assertNotIn("one_client_p50", t)


if __name__ == "__main__":
    unittest.main()
