#!/usr/bin/env python3
"""The open-loop lines' arithmetic (tools/bench/overload.py) on fixed inputs.

  overload_test.py PATH/TO/overload.py
"""
import importlib.util
import sys
import unittest

spec = importlib.util.spec_from_file_location("overload", sys.argv.pop(1))
overload = importlib.util.module_from_spec(spec)
spec.loader.exec_module(overload)

METRICS = """\
# HELP ledger_last_executed_seq x
# TYPE ledger_last_executed_seq gauge
ledger_last_executed_seq 4711
ledger_batch_requests_sum 52000
ledger_batch_requests_count 1300
ledger_view{replica="2"} 3
ledger_view_changes_total 1
ledger_protocol_events_total{event="request_forwarded"} 33
ledger_protocol_events_total{event="batch_committed"} 1300
ledger_store_memory_bytes{store="ledger"} 3000000
ledger_store_memory_bytes{store="protocol"} 145728
ledger_messages_dropped_total{layer="client",reason="resource_exhausted"} 120
ledger_messages_dropped_total{layer="client",reason="invalid_argument"} 2
ledger_messages_dropped_total{layer="client",reason="admission_wait"} 100
ledger_messages_dropped_total{layer="core",reason="queue_full"} 7
ledger_messages_dropped_total{layer="core",reason="wrong_view"} 9
ledger_messages_dropped_total{layer="verify",reason="queue_full"} 5
"""

PEAK = {"requests_per_s": 1000.0}


def result(**kw):
    r = {"offered_per_s": 2000.0, "requests_per_s": 950.0, "refused": 5000,
         "refused_per_s": 50.0, "errors": 0, "dropped_at_cap": 0,
         "dropped_at_cap_per_s": 0.0, "by_status": {"RESOURCE_EXHAUSTED": 5000},
         "outcome_unknown": 0, "p50_ms": 10.0, "p99_ms": 25.0,
         "bench_cores": 0.4, "max_schedule_lag_ms": 3.0, "duration_s": 100.0}
    r.update(kw)
    return r


def interval(t, served, **kw):
    iv = {"t_s": t, "requests_per_s": served, "refused_per_s": 1.0,
          "dropped_at_cap_per_s": 0.0, "p50_ms": 1.0, "p99_ms": 2.0,
          "bench_cores": 0.3}
    iv.update(kw)
    return iv


def scrape(refused, queue_full, views=0, executed=0):
    return {"replicas": [{"client_refused": refused + i, "core_queue_full":
                          queue_full, "view_changes": views,
                          "executed_requests": executed,
                          "admission_wait": refused // 2,
                          "requests_forwarded": 3 * refused}
                         for i in range(4)]}


CAUGHT = {"equal": True, "seconds": 1.5, "spread_at_stop": 3,
          "heights": [9, 9, 9, 9]}


class ParseMetrics(unittest.TestCase):
    def test_fields(self):
        m = overload.parse_metrics(METRICS)
        self.assertEqual(m["executed_seq"], 4711)
        self.assertEqual(m["executed_requests"], 52000)
        self.assertEqual(m["view"], 3)
        self.assertEqual(m["view_changes"], 1)
        self.assertEqual(m["store_memory_bytes"], 3145728)  # Both stores.
        self.assertEqual(m["client_refused"], 120)
        self.assertEqual(m["core_queue_full"], 7)
        self.assertEqual(m["admission_wait"], 100)
        self.assertEqual(m["requests_forwarded"], 33)
        self.assertEqual(m["client_dropped"],
                         {"resource_exhausted": 120, "invalid_argument": 2,
                          "admission_wait": 100})


class Load70(unittest.TestCase):
    def test_met_and_not(self):
        r = result(offered_per_s=700.0, p50_ms=10.0, p99_ms=30.0)
        line = overload.load70_line(PEAK, r)
        self.assertEqual(line["p99_over_p50"], 3.0)
        self.assertTrue(line["met"])
        self.assertEqual(line["offered_share_of_peak"], 0.7)
        line = overload.load70_line(PEAK, result(p50_ms=10.0, p99_ms=30.1))
        self.assertFalse(line["met"])

    def test_nothing_served(self):
        line = overload.load70_line(PEAK, result(p50_ms=0.0, p99_ms=0.0))
        self.assertIsNone(line["p99_over_p50"])
        self.assertFalse(line["met"])


class Rss(unittest.TestCase):
    SAMPLES = overload.parse_rss(
        "0.0 1024 2048 1024 1024\n"
        "5.0 2048 2048 1024 1024\n"
        "10.0 4096 2048 1024 1024\n"
        "15.0 3072 2048 1024 2048\n"
        "20.0 9999 9999 9999 9999\n")

    def test_start_end_max_inside_the_span(self):
        r = overload.rss_figures(self.SAMPLES, 5.0, 15.0)
        self.assertEqual(r["rss_start_mb"], [2.0, 2.0, 1.0, 1.0])
        self.assertEqual(r["rss_end_mb"], [3.0, 2.0, 1.0, 2.0])
        self.assertEqual(r["rss_max_mb"], [4.0, 2.0, 1.0, 2.0])
        self.assertEqual((r["rss_start_s"], r["rss_end_s"]), (5.0, 15.0))

    def test_middle_and_flatness(self):
        r = overload.rss_figures(self.SAMPLES, 5.0, 15.0)
        self.assertEqual(r["rss_mid_mb"], [4.0, 2.0, 1.0, 1.0])
        # Replica 3 doubled in the second half: not flat.
        self.assertFalse(r["rss_flat"])
        flat = overload.rss_figures(self.SAMPLES, 0.0, 10.0)
        self.assertFalse(flat["rss_flat"])  # Replica 0: 2 -> 4 MB.
        steady = overload.parse_rss("0 1000 1000\n5 1050 1000\n10 1100 990\n")
        r = overload.rss_figures(steady, 0.0, 10.0, "anon_rss")
        self.assertTrue(r["anon_rss_flat"])
        self.assertEqual(r["anon_rss_end_mb"], [1.1, 1.0])

    def test_less_the_stores_sample_by_sample(self):
        anon = overload.parse_rss("0 40000 41000\n5 60000 61000\n"
                                  "10 80000 71000\n")
        stores = overload.parse_rss("0 10000 10000\n5 30000 30000\n"
                                    "10.1 49000 31000\n")
        own = overload.less(anon, stores)
        self.assertEqual(own, [[0.0, 30000.0, 31000.0],
                               [5.0, 30000.0, 31000.0],
                               [10.0, 31000.0, 40000.0]])
        r = overload.rss_figures(own, 0.0, 10.0, "anon_rss_less_stores")
        # Replica 1's own memory grew 29% in the second half: not flat,
        # though replica 0's growth was all LevelDB's.
        self.assertFalse(r["anon_rss_less_stores_flat"])
        self.assertTrue(overload.rss_figures(
            [s[:2] for s in own], 0.0, 10.0,
            "anon_rss_less_stores")["anon_rss_less_stores_flat"])
        self.assertEqual(len(overload.less(anon, stores[:2])), 2)

    def test_ceiling_of_each_half_and_tenth(self):
        # Replica 0 swings under a ceiling of 60 MB; replica 1 keeps
        # growing. The last sample alone would call replica 0 grown
        # (30 -> 60) and would not see replica 1's climb if it ended low.
        swing = [30, 60, 35, 58, 32, 60, 31, 59, 40, 60]
        climb = [30, 33, 36, 39, 42, 45, 48, 51, 54, 50]
        samples = [[5.0 * k, swing[k] * 1024.0, climb[k] * 1024.0]
                   for k in range(10)]
        r = overload.rss_figures(samples, 0.0, 45.0, "anon_rss")
        self.assertEqual(r["anon_rss_halves_max_mb"],
                         [[60.0, 60.0], [42.0, 54.0]])
        self.assertFalse(r["anon_rss_flat_max"])  # Replica 1: 42 -> 54.
        self.assertEqual(r["anon_rss_tenths_max_mb"][1],
                         [float(x) for x in climb])
        only_swing = overload.rss_figures([x[:2] for x in samples], 0.0, 45.0,
                                          "anon_rss")
        self.assertTrue(only_swing["anon_rss_flat_max"])
        self.assertEqual(len(only_swing["anon_rss_tenths_max_mb"][0]), 10)
        one = overload.rss_figures(samples[:1], 0.0, 45.0)
        self.assertEqual(one["rss_halves_max_mb"], [[30.0, 30.0], [30.0, 30.0]])
        self.assertTrue(one["rss_flat_max"])

    def test_no_sample_inside(self):
        self.assertIsNone(overload.rss_figures(self.SAMPLES, 30.0, 40.0))


class Overload(unittest.TestCase):
    def line(self, intervals, res=None, catch=CAUGHT):
        return overload.overload_line(PEAK, res or result(), intervals,
                                      scrape(100, 10, 0, 500),
                                      scrape(1100, 60, 1, 120500),
                                      None, catch, 120.0)

    def test_ratios_and_refusals(self):
        line = self.line([interval(60, 950.0), interval(120, 910.0)])
        self.assertEqual(line["offered_over_peak"], 2.0)
        self.assertEqual(line["served_over_peak"], 0.95)
        self.assertEqual([x["ratio"] for x in line["per_interval"]], [0.95, 0.91])
        self.assertEqual(line["min_interval_served_over_peak"], 0.91)
        # (1100 - 100) refusals over 100 s at each replica.
        self.assertEqual(line["cluster_intake_refused_per_s"], [10.0] * 4)
        # Of them (550 - 50) for the expected wait.
        self.assertEqual(line["cluster_admission_wait_per_s"], [5.0] * 4)
        self.assertEqual(line["cluster_core_queue_full_per_s"], [0.5] * 4)
        self.assertEqual(line["view_changes"], [1] * 4)
        # 3 x (1100 - 100) forwards over 100 s at each replica.
        self.assertEqual(line["cluster_forwarded_per_s"], [30.0] * 4)
        self.assertEqual(line["executed_per_s"], 1000.0)  # 120,000 / 120 s.
        t = line["targets"]
        self.assertTrue(t["served_met"])
        self.assertTrue(t["refused_with_resource_exhausted"])
        self.assertTrue(t["caught_up"])

    def test_one_interval_below_90_percent_fails(self):
        line = self.line([interval(60, 950.0), interval(120, 899.0)])
        self.assertFalse(line["targets"]["served_met"])

    def test_other_errors_fail_the_refusal_target(self):
        res = result(errors=3, by_status={"DEADLINE_EXCEEDED": 3})
        line = self.line([interval(60, 950.0)], res)
        self.assertFalse(line["targets"]["refused_with_resource_exhausted"])

    def test_nothing_refused_by_the_sdk_fails_it(self):
        res = result(refused=0, refused_per_s=0.0, by_status={})
        line = self.line([interval(60, 950.0)], res)
        self.assertFalse(line["targets"]["refused_with_resource_exhausted"])

    def test_share_of_the_excess_refused(self):
        # What the cluster refused against what waited at the bench's cap.
        res = result(refused_per_s=90.0, dropped_at_cap_per_s=10.0)
        line = self.line([interval(60, 950.0)], res)
        self.assertEqual(line["excess_refused_share"], 0.9)
        self.assertTrue(line["targets"]["excess_refused_met"])
        res = result(refused_per_s=5.0, dropped_at_cap_per_s=1500.0)
        line = self.line([interval(60, 950.0)], res)
        self.assertEqual(line["excess_refused_share"], 0.003)
        self.assertFalse(line["targets"]["excess_refused_met"])
        # No excess at all: nothing was left to refuse.
        res = result(refused=0, refused_per_s=0.0, dropped_at_cap_per_s=0.0)
        self.assertEqual(self.line([interval(60, 950.0)], res)
                         ["excess_refused_share"], 1.0)

    def test_memory_figures_and_their_targets(self):
        line = self.line([interval(60, 950.0)])
        self.assertIsNone(line["targets"]["anon_rss_less_stores_flat"])
        line = overload.overload_line(
            PEAK, result(), [interval(60, 950.0)], scrape(100, 10),
            scrape(1100, 60), None, CAUGHT, 120.0,
            {"anon_rss_flat": False, "anon_rss_end_mb": [80.0]},
            {"store_mem_end_mb": [40.0], "anon_rss_less_stores_flat": True})
        self.assertFalse(line["targets"]["anon_rss_flat"])
        self.assertTrue(line["targets"]["anon_rss_less_stores_flat"])
        self.assertEqual(line["store_mem_end_mb"], [40.0])

    def test_not_caught_up(self):
        catch = dict(CAUGHT, equal=False, heights=[9, 9, 9, 4])
        line = self.line([interval(60, 950.0)], catch=catch)
        self.assertFalse(line["targets"]["caught_up"])
        self.assertEqual(line["catchup"]["heights"], [9, 9, 9, 4])


class CatchupLine(unittest.TestCase):
    def test_spread(self):
        c = overload.catchup_line([5, 9, 9, 7], [9, 9, 9, 9], 2.345, True, 60)
        self.assertEqual(c["spread_at_stop"], 4)
        self.assertEqual(c["seconds"], 2.35)
        self.assertTrue(c["equal"])


if __name__ == "__main__":
    unittest.main()
