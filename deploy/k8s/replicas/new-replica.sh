#!/usr/bin/env bash
# Writes deploy/k8s/replicas/replica-<I>/kustomization.yaml: replica I's
# StatefulSet and headless Service (both "ledger-<I>"), made from
# deploy/k8s/replica. replica-0..3 were written by this script; run it for
# more replicas (n = 7: 4, 5, 6).
#   deploy/k8s/replicas/new-replica.sh I
set -euo pipefail
i=${1:?usage: new-replica.sh REPLICA_ID}
[[ "$i" =~ ^(0|[1-9][0-9]*)$ ]] || { echo "new-replica.sh: '$i' is not a replica id" >&2; exit 2; }
dir="$(cd "$(dirname "$0")" && pwd)/replica-$i"
mkdir -p "$dir"
cat > "$dir/kustomization.yaml" <<YAML
# Replica $i: StatefulSet + headless Service "ledger-$i" (pod ledger-$i-0),
# labelled pbft-ledger/replica=$i, mounting only the Secrets ledger-$i-key and
# ledger-$i-tls. The label is added to the StatefulSet's and the Service's
# selectors by the patches below, not by includeSelectors: that would also
# narrow the anti-affinity and topology-spread selectors to this one pod.
# ledgerd's --id comes from the label.
# Written by deploy/k8s/replicas/new-replica.sh.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- ../../replica
nameSuffix: "-$i"
labels:
- pairs:
    pbft-ledger/replica: "$i"
  includeSelectors: false
  includeTemplates: true
patches:
- patch: |-
    apiVersion: v1
    kind: Service
    metadata:
      name: ledger
    spec:
      selector:
        pbft-ledger/replica: "$i"
- patch: |-
    apiVersion: apps/v1
    kind: StatefulSet
    metadata:
      name: ledger
    spec:
      selector:
        matchLabels:
          pbft-ledger/replica: "$i"
      template:
        spec:
          volumes:
          - name: key-secret
            secret:
              secretName: ledger-$i-key
          - name: tls
            secret:
              secretName: ledger-$i-tls
YAML
echo "wrote $dir/kustomization.yaml"
