#!/usr/bin/env python3
"""tools/bench/hops.py on fixed event files of two replicas.

  hops_test.py PATH/TO/hops.py
"""
import importlib.util
import os
import sys
import tempfile
import unittest

spec = importlib.util.spec_from_file_location("hops", sys.argv.pop(1))
hops = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hops)

# Replica 0 (pid 100) sends a PRE-PREPARE (type 2) to replica 1 (pid 200),
# which persists it, answers with a PREPARE (type 3), and takes in a client
# request (type 1) from client 7, and a copy of it forwarded by a peer.
R0 = """1000 persist 1 0
1600 persisted 1 0
1610 send 2 18446744073709551615
1620 write 2 1
1700 execute 5 0
2900 executed 5 0
"""
R1 = """1650 read 2 0
1690 verified 2 0
1700 in 2 0
1710 persist 2 0
2710 persisted 2 0
3000 submit 7 42
3150 in 1 7
3400 in 1 7
garbage line
"""


class Hops(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.paths = []
        for pid, text in ((100, R0), (200, R1)):
            path = os.path.join(self.dir.name, "t.%d" % pid)
            with open(path, "w") as f:
                f.write(text)
            self.paths.append(path)

    def tearDown(self):
        self.dir.cleanup()

    def test_segments(self):
        seg = hops.segments(hops.load(self.paths))
        self.assertEqual(seg["queued"], [10])  # send 1610 -> write 1620
        self.assertEqual(seg["transport"], [30])
        self.assertEqual(seg["verify"], [40])
        self.assertEqual(seg["inbox"], [10])
        self.assertEqual(seg["hop"], [90])
        self.assertEqual(sorted(seg["persist"]), [600, 1000])
        self.assertEqual(seg["execute"], [1200])
        self.assertEqual(seg["intake"], [150])

    def test_a_read_before_its_write_is_another_message(self):
        with open(self.paths[1], "w") as f:
            f.write(R1.replace("1650 read", "1615 read"))
        seg = hops.segments(hops.load(self.paths))
        self.assertNotIn("hop", seg)
        self.assertEqual(seg["intake"], [150])


if __name__ == "__main__":
    unittest.main()
