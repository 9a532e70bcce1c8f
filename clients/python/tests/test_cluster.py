"""The client against a Redis Cluster (PRESENCE_CLUSTER names one node, `host:port`): single-user
calls reach the owning master directly, multi-user and node-wide reads cover every master."""

import contextlib
import os
import signal
import subprocess
import time
import unittest
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis.asyncio.cluster
from redis.cluster import RedisCluster

from redis_presence import Event, Presence, Subscription, key_slot, user_channel
from redis_presence.asyncio import AsyncPresence

NODE = os.environ.get("PRESENCE_CLUSTER")
# The cluster's directory (scripts/cluster.sh --dir), to move slots and kill nodes.
CLUSTER_DIR = os.environ.get("PRESENCE_CLUSTER_DIR")
ROOT = Path(__file__).resolve().parents[3]


def moved(rc: Any) -> int:
    """MOVED replies given so far, over every node."""
    total = 0
    for node in rc.get_nodes():
        stats = rc.get_redis_connection(node).info("errorstats")
        total += int(stats.get("errorstat_MOVED", {}).get("count", 0))
    return total


@unittest.skipUnless(NODE, "PRESENCE_CLUSTER names no cluster node: the cluster tests need one")
class Cluster(unittest.TestCase):
    def setUp(self) -> None:
        assert NODE is not None
        host, port = NODE.rsplit(":", 1)
        self.rc: Any = RedisCluster(host=host, port=int(port))
        self.pr = Presence(self.rc, max_bulk=7)

    def tearDown(self) -> None:
        self.rc.close()

    def test_single_user_calls_go_straight_to_the_owner(self) -> None:
        run = uuid.uuid4().hex[:8]
        users = [f"u{i}-{run}" for i in range(60)]
        room = f"hall-{run}"
        self.assertGreater(len({key_slot(u) for u in users}), 50)
        before = moved(self.rc)
        for i, user in enumerate(users):
            self.pr.online(user, "phone", meta={"n": i})
            self.pr.heartbeat(user, "phone")
            self.pr.join(user, "phone", room, data={"seat": i})
            self.assertEqual(self.pr.get(user).status, "online")
            self.pr.status(user, "busy")
            self.assertEqual(self.pr.rooms(user), [room])
            self.assertEqual(len(self.pr.devices(user)), 1)
        self.pr.typing(users[0], "phone", room)
        self.assertEqual(moved(self.rc), before, "a single-user call was redirected")
        # BULK over 60 slots in chunks of 7, pipelined per node, in the order asked.
        asked = [*reversed(users), "nobody-" + run]
        rows = self.pr.bulk(asked)
        self.assertEqual([r.user for r in rows], asked)
        self.assertEqual([r.status for r in rows], ["busy"] * 60 + ["offline"])
        self.assertEqual(moved(self.rc), before, "BULK was redirected")
        # Node-wide reads cover every master.
        self.assertEqual(self.pr.count(room), 60)
        listed = list(self.pr.members(room, page=9))
        self.assertEqual(sorted(m.user for m in listed), sorted(users))
        actives = [m.last_active for m in listed]
        self.assertEqual(actives, sorted(actives, reverse=True))
        self.assertEqual(self.pr.typers(room), [(users[0], "phone")])
        # A pipeline of single-user commands: one per master, replies in the order queued.
        pipe = self.pr.pipeline()
        for user in users:
            pipe.heartbeat(user, "phone").get(user)
        replies = pipe.execute()
        self.assertEqual(replies[0::2], [True] * 60)
        self.assertEqual([r.user for r in replies[1::2]], users)
        self.assertEqual(moved(self.rc), before, "a pipeline was redirected")
        for user in users:
            self.pr.offline(user, "phone")
        self.assertEqual(self.pr.count(room), 0)

    def test_subscription_follows_a_moved_slot_and_a_failover(self) -> None:
        """Runs last (by name): it kills a master."""
        if CLUSTER_DIR is None:
            self.skipTest("PRESENCE_CLUSTER_DIR names no cluster directory")
        user = "mover-" + uuid.uuid4().hex[:8]
        slot = key_slot(user)
        sub = self.pr.subscribe(users=[user])
        try:
            self.pr.online(user, "d1")
            self.assertEqual(next_status(sub, "online"), "online")
            owner = self.rc.nodes_manager.get_node_from_slot(slot).port
            other = next(n.port for n in self.rc.get_primaries() if n.port != owner)
            subprocess.run(
                [
                    "bash",
                    str(ROOT / "scripts/cluster.sh"),
                    "move-slot",
                    str(slot),
                    str(other),
                    "--dir",
                    CLUSTER_DIR,
                ],
                check=True,
                capture_output=True,
            )
            # The old owner unsubscribed the subscriber: it subscribes again on the new one.
            # (What is published in between is lost, as pub/sub loses it: the test waits.)
            self.assertTrue(self.subscribed_on_owner(sub, user, 15), "not on the new owner")
            self.assertGreaterEqual(sub.resubscriptions, 1)
            self.pr.status(user, "busy")
            self.assertEqual(next_status(sub, "busy"), "busy", self.diagnosis(sub, user))
            # The new owner fails; its replica takes over, and the subscription follows.
            pid = (Path(CLUSTER_DIR) / str(other) / "server.pid").read_text().strip()
            os.kill(int(pid), signal.SIGKILL)
            self.assertTrue(self.subscribed_on_owner(sub, user, 40), "not on the promoted replica")
            retry(lambda: self.pr.status(user, "away"), seconds=30)
            self.assertEqual(next_status(sub, "away"), "away", self.diagnosis(sub, user))
        finally:
            sub.close()

    def diagnosis(self, sub: Subscription, user: str) -> str:
        """Where the subscription stands, for a failure message."""
        counts = {}
        for node in self.rc.get_primaries():
            with contextlib.suppress(Exception):
                reply = self.rc.get_redis_connection(node).execute_command(
                    "PUBSUB", "SHARDNUMSUB", user_channel(user)
                )
                counts[node.port] = int(reply[1])
        owner = self.rc.nodes_manager.get_node_from_slot(key_slot(user)).port
        return (
            f"subscribers per master {counts}, owner {owner}, resubscriptions "
            f"{sub.resubscriptions}, lost {sub.lost}, pubsubs {len(sub.pubsubs)}, "
            f"status {self.pr.get(user).status}"
        )

    def subscribed_on_owner(self, sub: Subscription, user: str, seconds: float) -> bool:
        """Reads the subscription (so it notices what happened) until the master that owns the
        user's slot now counts a subscriber on the user's channel."""
        channel = user_channel(user)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            list(sub.events(timeout=0.3))
            try:
                self.rc.nodes_manager.initialize()
                node = self.rc.nodes_manager.get_node_from_slot(key_slot(user))
                reply = self.rc.get_redis_connection(node).execute_command(
                    "PUBSUB", "SHARDNUMSUB", channel
                )
                if int(reply[1]) >= 1:
                    return True
            except Exception:  # the cluster is failing over
                time.sleep(0.3)
        return False


class AsyncCluster(unittest.IsolatedAsyncioTestCase):
    """The asyncio client on the same cluster (runs before `Cluster`, whose last test kills a
    master): single-user calls without redirection, BULK
    and node-wide reads over every master."""

    async def test_the_asyncio_client_reaches_every_master(self) -> None:
        if NODE is None:
            self.skipTest("PRESENCE_CLUSTER names no cluster node")
        host, port = NODE.rsplit(":", 1)
        rc: Any = redis.asyncio.cluster.RedisCluster(host=host, port=int(port))
        try:
            pr = AsyncPresence(rc, max_bulk=5)
            run = uuid.uuid4().hex[:8]
            users = [f"a{i}-{run}" for i in range(30)]
            sync = RedisCluster(host=host, port=int(port))
            before = moved(sync)
            for user in users:
                await pr.online(user, "d")
                await pr.join(user, "d", "async-" + run)
            self.assertEqual(moved(sync), before, "a single-user call was redirected")
            rows = await pr.bulk(users)
            self.assertEqual([r.user for r in rows], users)
            self.assertEqual(await pr.count("async-" + run), 30)
            listed = await pr.members("async-" + run, page=4)
            self.assertEqual(sorted(m.user for m in listed), sorted(users))
            for user in users:
                await pr.offline(user, "d")
            sync.close()
        finally:
            await rc.aclose()


def next_status(sub: Subscription, wanted: str, seconds: float = 15) -> str | None:
    """The status of the first user event with status `wanted` within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for event in sub.events(timeout=0.5):
            if isinstance(event, Event) and event.status == wanted:
                return event.status
    return None


def retry(call: Callable[[], Any], seconds: float) -> None:
    """Calls until it succeeds (the cluster is failing over), at most `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            call()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


if __name__ == "__main__":
    unittest.main()
