"""The client against a Redis Cluster (PRESENCE_CLUSTER names one node, `host:port`): single-user
calls reach the owning master directly, multi-user and node-wide reads cover every master."""

import os
import unittest
import uuid
from typing import Any

from redis.cluster import RedisCluster

from redis_presence import Presence, key_slot

NODE = os.environ.get("PRESENCE_CLUSTER")


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
        for user in users:
            self.pr.offline(user, "phone")
        self.assertEqual(self.pr.count(room), 0)


if __name__ == "__main__":
    unittest.main()
