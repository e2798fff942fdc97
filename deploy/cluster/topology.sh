#!/usr/bin/env bash
# deploy/cluster/topology.sh — the names and addresses of the one-machine cluster, sourced by up.sh
# and down.sh (one place, so down.sh removes exactly what up.sh made and nothing else).
#
# Every node is a network namespace wh-NAME joined to the bridge whbr0 by a veth pair (whv-NAME on
# the bridge, eth0 inside), with an address in 10.77.0.0/24; the root namespace is 10.77.0.1 on the
# bridge, so the tools run from it reach every node and a partition (cutting one veth) is real.
# shellcheck disable=SC2034  # sourced: up.sh and down.sh use these

WHISTLE_CLUSTER_BRIDGE=whbr0
WHISTLE_CLUSTER_NET=10.77.0
WHISTLE_CLUSTER_HOST_IP=$WHISTLE_CLUSTER_NET.1

# name address: the NATS nodes, PostgreSQL's primary and standby, dispatch and query replicas, the
# load balancer.
WHISTLE_CLUSTER_NODES=(
    "nats1 $WHISTLE_CLUSTER_NET.11"
    "nats2 $WHISTLE_CLUSTER_NET.12"
    "nats3 $WHISTLE_CLUSTER_NET.13"
    "pg1 $WHISTLE_CLUSTER_NET.21"
    "pg2 $WHISTLE_CLUSTER_NET.22"
    "dispatch1 $WHISTLE_CLUSTER_NET.31"
    "dispatch2 $WHISTLE_CLUSTER_NET.32"
    "query1 $WHISTLE_CLUSTER_NET.41"
    "query2 $WHISTLE_CLUSTER_NET.42"
    "lb $WHISTLE_CLUSTER_NET.50"
)

# The address of node $1.
whistle_cluster_ip() {
    local entry
    for entry in "${WHISTLE_CLUSTER_NODES[@]}"; do
        if [[ ${entry%% *} == "$1" ]]; then
            printf '%s' "${entry#* }"
            return 0
        fi
    done
    return 1
}

# The namespace of node $1 and the host side of its veth (at most 15 characters).
whistle_cluster_ns() { printf 'wh-%s' "$1"; }
whistle_cluster_veth() { printf 'whv-%s' "$1"; }

# Where the cluster keeps its state: configurations, secrets, data, logs, pid files.
WHISTLE_CLUSTER_HOME=${WHISTLE_CLUSTER_HOME:-${WHISTLE_HOME:-$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)/.whistle}/cluster}
