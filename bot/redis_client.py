"""The Redis client of the dispatcher's stores: one server, or a Redis Cluster.

Every key a conversation uses carries its shard's hash tag (`bot.keys`), so each script,
multi-key command and MULTI stays in one slot and runs unchanged on a cluster; what a cluster
needs is a client that follows its slot map and `MOVED` redirections (`INTAKEBOT_REDIS_CLUSTER`).
Pub/sub (console events, knowledge-base reloads) keeps a plain client on the `REDIS_URL` node:
a cluster broadcasts classic pub/sub to every node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

AnyRedis: TypeAlias = "Redis | RedisCluster"

# Connections per process (per node on a cluster), and the seconds a command waits for one when
# all are busy on a single server (then SessionError: 503 with Retry-After).
CONNECTIONS = 100
POOL_WAIT = 10.0
# A cluster client's socket time-out: longer than the outbound senders' blocking reads (5 s).
CLUSTER_SOCKET_TIMEOUT = 30.0


def connect(url: str, *, cluster: bool = False) -> AnyRedis:
    """A client for `url` (connecting on first use); on a cluster, `url` names any node."""
    if cluster:
        from redis.asyncio.cluster import RedisCluster

        # A pool per node, which refuses (rather than waits) past CONNECTIONS: SessionError.
        return RedisCluster.from_url(url, max_connections=CONNECTIONS,
                                     socket_timeout=CLUSTER_SOCKET_TIMEOUT)
    from redis.asyncio import BlockingConnectionPool, Redis

    # redis-py's default pool fails at once ("Too many connections") past 100 commands in
    # flight, i.e. under a few hundred concurrent conversations: wait for a connection.
    return Redis.from_pool(BlockingConnectionPool.from_url(  # closed with the client
        url, max_connections=CONNECTIONS, timeout=POOL_WAIT))
