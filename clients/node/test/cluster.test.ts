// The client against a cluster (PRESENCE_CLUSTER names one node, `host:port`): single-user
// commands reach the owning master directly, multi-user and node-wide reads cover every master.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import { resolve } from "node:path";
import Redis, { Cluster } from "ioredis";
import { Presence, keySlot } from "../src";

const node = process.env.PRESENCE_CLUSTER;
// The cluster's directory (scripts/cluster.sh --dir), to move a slot.
const clusterDir = process.env.PRESENCE_CLUSTER_DIR;
const root = resolve(__dirname, "../../../..");

const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));

async function moved(cluster: Cluster): Promise<number> {
  let total = 0;
  for (const n of cluster.nodes("all")) {
    const stats = String(await n.info("errorstats"));
    const match = /errorstat_MOVED:count=(\d+)/.exec(stats);
    total += match ? Number(match[1]) : 0;
  }
  return total;
}

test("a cluster", { skip: node === undefined && "PRESENCE_CLUSTER names no node" }, async () => {
  const [host, port] = (node ?? "").split(":");
  const cluster = new Cluster([{ host, port: Number(port) }]);
  const pr = new Presence(cluster, { maxBulk: 7 });
  await pr.ready();
  // Closed whatever happens: an open subscription would hold the test runner until its timeout.
  let sub: Awaited<ReturnType<Presence["subscribe"]>> | undefined;
  try {
    const run = randomBytes(4).toString("hex");
    const users = Array.from({ length: 60 }, (_, i) => `n${i}-${run}`);
    const room = `hall-${run}`;
    assert.ok(new Set(users.map(keySlot)).size > 50);
    const before = await moved(cluster);
    sub = await pr.subscribe({ users: [users[0] ?? ""], rooms: [room] });
    const first = sub.next((e) => e.kind === "user" && e.user === users[0]);
    for (const user of users) {
      await pr.online(user, "phone");
      await pr.join(user, "phone", room);
      await pr.status(user, "busy");
      assert.equal((await pr.get(user)).status, "busy");
    }
    assert.equal(await moved(cluster), before, "a single-user command was redirected");
    const rows = await pr.bulk([...users].reverse());
    assert.deepEqual(rows.map((r) => r.user), [...users].reverse());
    assert.equal(await moved(cluster), before, "BULK was redirected");
    assert.equal(await pr.count(room), 60);
    const members = await pr.members({ scope: room, page: 9 });
    assert.deepEqual(members.map((m) => m.user).sort(), [...users].sort());
    await pr.typing(users[0] ?? "", "phone", room);
    assert.deepEqual(await pr.typers(room), [[users[0], "phone"]]);
    assert.equal((await first)?.kind, "user", "the user's own channel, from its master");
    // A pipeline of single-user commands: one per master, replies in the order queued.
    const pipe = pr.pipeline();
    for (const user of users) pipe.heartbeat(user, "phone").get(user);
    const replies = await pipe.exec();
    assert.deepEqual(replies.filter((_, i) => i % 2 === 0), users.map(() => true));
    assert.deepEqual(replies.filter((_, i) => i % 2 === 1).map((r) => (r as { user: string }).user), users);
    assert.equal(await moved(cluster), before, "a pipeline was redirected");
    // A slot moves while the subscription listens: it subscribes again on the new owner.
    const mover = users[0] ?? "";
    const slot = keySlot(mover);
    const owner = cluster.slots[slot]?.[0] ?? "";
    const other = cluster.nodes("master").find((n) => `${n.options.host}:${n.options.port}` !== owner);
    assert.ok(other !== undefined && clusterDir !== undefined, "PRESENCE_CLUSTER_DIR names the cluster's directory");
    execFileSync("bash", [`${root}/scripts/cluster.sh`, "move-slot", String(slot), String(other.options.port), "--dir", clusterDir]);
    const direct = new Redis({ host: other.options.host, port: other.options.port });
    // The server counts the new subscription as soon as it arrives, before the client has read
    // the reply that completes its resubscription: wait for both.
    let subscribed = false;
    for (let i = 0; i < 100 && !(subscribed && sub.resubscriptions >= 1); i++) {
      const reply = (await direct.call("PUBSUB", "SHARDNUMSUB", `presence:{${mover}}`)) as unknown[];
      subscribed = Number(reply[1]) >= 1;
      if (!subscribed || sub.resubscriptions < 1) await sleep(100);
    }
    direct.disconnect();
    assert.ok(subscribed, "the subscription is on the new owner");
    assert.ok(sub.resubscriptions >= 1, "the client subscribed anew");
    const away = sub.next((e) => e.kind === "user" && e.user === mover && e.status === "away", 10000);
    await pr.status(mover, "away");
    assert.equal((await away)?.kind, "user", "the event after the move arrived");
    for (const user of users) await pr.offline(user, "phone");
  } finally {
    await sub?.close();
    cluster.disconnect();
  }
});
