// Fuzzes cluster config files: Cluster::FromJson (JSON parse, then every
// validation of the config). A config that loads must survive a round trip
// through ClusterConfigToJson unchanged.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/check.h"
#include "common/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string json(reinterpret_cast<const char*>(data), size);
  auto cluster = pbft::Cluster::FromJson(json, "fuzz.json");
  if (!cluster.ok()) {
    CHECK(!cluster.status().message().empty());
    return 0;
  }
  const std::string again = pbft::ClusterConfigToJson(cluster->config());
  auto reloaded = pbft::Cluster::FromJson(again, "fuzz-again.json");
  CHECK(reloaded.ok());
  CHECK_EQ(pbft::ClusterConfigToJson(reloaded->config()), again);
  return 0;
}
