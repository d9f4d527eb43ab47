"""A Ray cluster of simulated nodes on this one machine (ray.cluster_utils.Cluster), for the
tests, `python -m server bench --ray` and the node-loss demo. Kept small: this machine's CPUs
are shared. A head with no CPU to give (so it gets no agent, as `ray start --head --num-cpus 0`
on a real cluster) and `nodes` nodes with `cpus` each."""
from __future__ import annotations

import contextlib
import os

from ray.cluster_utils import Cluster

STORE_BYTES = 100 * 2**20     # each node's object store: batches travel inline anyway


@contextlib.contextmanager
def local_cluster(nodes: int = 2, cpus: int = 1):
    """Yields (cluster, [node handles]); every node and the head are shut down after."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False, "object_store_memory": STORE_BYTES})
    try:
        handles = [add_node(cluster, cpus) for _ in range(nodes)]
        cluster.wait_for_nodes()
        yield cluster, handles
    finally:
        cluster.shutdown()


def add_node(cluster: Cluster, cpus: int = 1):
    return cluster.add_node(num_cpus=cpus, object_store_memory=STORE_BYTES)
