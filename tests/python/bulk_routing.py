"""redis-py's cluster client sends PRESENCE.BULK, with VIEWER after or before the users, straight
to the master of the users' slot: no MOVED on any node.

Run by tests/cluster.rs against a local cluster: python3 bulk_routing.py PORT
"""

import sys

from redis.cluster import RedisCluster

SLOTS = 50


def moved_replies(rc: RedisCluster) -> int:
    """MOVED errors every node has replied so far (INFO errorstats)."""
    stats = rc.info("errorstats", target_nodes=RedisCluster.ALL_NODES)
    return sum(int(node.get("errorstat_MOVED", {}).get("count", 0)) for node in stats.values())


def main(port: int) -> None:
    rc = RedisCluster(host="127.0.0.1", port=port)
    before = moved_replies(rc)
    calls = 0
    slots = set()
    for i in range(SLOTS):
        ann, bob = f"{{team{i}}}ann", f"{{team{i}}}bob"
        slots.add(rc.keyslot(ann))
        rc.execute_command("PRESENCE.ONLINE", ann, "phone")
        for args in ([ann, bob, "VIEWER", "viewer"], ["VIEWER", "viewer", ann, bob]):
            rows = rc.execute_command("PRESENCE.BULK", *args)
            assert [row[0] for row in rows] == [ann.encode(), bob.encode()], rows
            assert rows[0][1] == b"online" and rows[1][1] == b"offline", rows
            calls += 1
    moved = moved_replies(rc) - before
    assert moved == 0, f"{moved} MOVED replies"
    print(f"ok: {calls} BULK calls with VIEWER over {len(slots)} slots, 0 MOVED")


if __name__ == "__main__":
    main(int(sys.argv[1]))
