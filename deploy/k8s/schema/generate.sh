#!/usr/bin/env bash
# Regenerates deploy/k8s/schema/k8s-objects.schema.json: the JSON schema of
# every Kubernetes kind that deploy/k8s renders, made from the TypeScript
# definitions in the npm package kubernetes-types with ts-json-schema-generator
# (both pinned below), then post-processed by postprocess.py. The output is
# committed so the tests need no network; rerun this after changing the pins
# or adding a kind (also add it to KINDS in postprocess.py and to types.ts
# below).
#
#   deploy/k8s/schema/generate.sh        # needs node + npm and the npm registry
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
KUBERNETES_TYPES=1.30.0
TS_JSON_SCHEMA_GENERATOR=2.4.0  # needs node >= 18 (2.9 wants node 22; same output)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm init -y >/dev/null
npm install --no-save --no-package-lock --no-audit --no-fund \
  "kubernetes-types@${KUBERNETES_TYPES}" \
  "ts-json-schema-generator@${TS_JSON_SCHEMA_GENERATOR}" >/dev/null

cat > types.ts <<'TS'
import type * as core from "kubernetes-types/core/v1";
import type * as apps from "kubernetes-types/apps/v1";
import type * as policy from "kubernetes-types/policy/v1";
import type * as networking from "kubernetes-types/networking/v1";
export type V1_ConfigMap = core.ConfigMap;
export type V1_Namespace = core.Namespace;
export type V1_Secret = core.Secret;
export type V1_Service = core.Service;
export type V1_ServiceAccount = core.ServiceAccount;
export type AppsV1_StatefulSet = apps.StatefulSet;
export type PolicyV1_PodDisruptionBudget = policy.PodDisruptionBudget;
export type NetworkingV1_NetworkPolicy = networking.NetworkPolicy;
TS
cat > tsconfig.json <<'JSON'
{"compilerOptions": {"strict": true, "skipLibCheck": true, "moduleResolution": "node"}}
JSON

npx ts-json-schema-generator --path types.ts --tsconfig tsconfig.json \
  --type '*' --expose export --no-type-check --out raw.schema.json
python3 "$HERE/postprocess.py" raw.schema.json \
  "kubernetes-types@${KUBERNETES_TYPES} ts-json-schema-generator@${TS_JSON_SCHEMA_GENERATOR}" \
  > "$HERE/k8s-objects.schema.json"
echo "wrote $HERE/k8s-objects.schema.json"
