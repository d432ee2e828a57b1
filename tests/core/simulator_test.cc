// The deterministic simulator (docs/simulator.md) in a few seeds: the same
// seed gives the same trace, and every scenario passes.
#include "tests/core/scenario.h"
#include "tests/sim/sim.h"

namespace pbft::core::test {
namespace {

// --- The simulator
// ------------------------------------------------------------

TEST(Simulator, SameSeedGivesTheSameTrace) {
  sim::SimOptions o;
  o.seed = 42;
  o.replicas = 4;
  o.scenario = "byzantine";
  const sim::SimResult a = sim::RunSimulation(o);
  const sim::SimResult b = sim::RunSimulation(o);
  ASSERT_TRUE(a.ok) << a.failure;
  EXPECT_EQ(a.trace_digest, b.trace_digest);
  EXPECT_EQ(a.ticks, b.ticks);
  o.seed = 43;
  EXPECT_NE(sim::RunSimulation(o).trace_digest, a.trace_digest);
}

TEST(Simulator, EveryScenarioPassesAFewSeeds) {
  for (const std::string& scenario : sim::ScenarioNames()) {
    for (uint32_t n : {4u, 7u}) {
      for (uint64_t seed = 1; seed <= 3; ++seed) {
        sim::SimOptions o;
        o.seed = seed;
        o.replicas = n;
        o.scenario = scenario;
        const sim::SimResult r = sim::RunSimulation(o);
        EXPECT_TRUE(r.ok) << scenario << " n=" << n << " seed=" << seed << ": "
                          << r.failure;
        EXPECT_EQ(r.requests_completed, r.requests_submitted);
        EXPECT_GT(r.requests_completed, 0u);
      }
    }
  }
}

TEST(Simulator, RealEd25519SignaturesWork) {
  sim::SimOptions o;
  o.seed = 7;
  o.replicas = 4;
  o.scenario = "lossy";
  o.real_crypto = true;
  const sim::SimResult r = sim::RunSimulation(o);
  EXPECT_TRUE(r.ok) << r.failure;
  EXPECT_GT(r.requests_completed, 0u);
}

}  // namespace
}  // namespace pbft::core::test
