// The client against one server with the module loaded (REDIS_URL).
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import Redis from "ioredis";
import { DeviceNotConnected, InvalidArgument, NotInRoom, Presence, userChannel } from "../src";

const url = process.env.REDIS_URL;
const unique = (name: string): string => `${name}-${randomBytes(5).toString("hex")}`;

test("one server", { skip: url === undefined && "REDIS_URL names no server" }, async (t) => {
  const redis = new Redis(url ?? "");
  const pr = new Presence(redis, { maxBulk: 2 });
  t.after(() => redis.quit());

  await t.test("commands come back typed", async () => {
    const user = unique("ann");
    assert.equal(await pr.online(user, "phone", { meta: { os: "ios" }, scopes: ["zone:1"] }), 1);
    assert.equal(await pr.heartbeat(user, "phone"), true);
    await pr.status(user, "busy", { message: "In a meeting", forMs: 60000 });
    const got = await pr.get(user);
    assert.deepEqual([got.status, got.devices, got.message, got.scopes], ["busy", 1, "In a meeting", ["zone:1"]]);
    const devices = await pr.devices(user);
    assert.equal(devices[0]?.meta, '{"os":"ios"}');
    await pr.context(user, "phone", "chat:1");
    assert.equal(await pr.inContext(user, "chat:1"), true);
    assert.equal((await pr.privacy(user, { online: "contacts" })).online, "contacts");
    assert.equal(await pr.addContacts(user, "friend"), 1);
    const seen = new Map(await pr.fanout(user, { viewers: ["friend", "stranger"] }));
    assert.equal(seen.get("friend")?.status, "busy");
    assert.equal(seen.get("stranger")?.status, "offline");
    await assert.rejects(pr.activity(user, "tablet"), DeviceNotConnected);
    assert.equal(await pr.offline(user, "phone"), 0);
  });

  await t.test("bulk keeps the order asked, in chunks", async () => {
    const users = [0, 1, 2, 3, 4].map((i) => unique(`b${i}`));
    await pr.online(users[1] ?? "", "d");
    const rows = await pr.bulk([...users, users[1] ?? ""]);
    assert.deepEqual(rows.map((r) => r.user), [...users, users[1]]);
    assert.deepEqual(rows.map((r) => r.status), ["offline", "online", "offline", "offline", "offline", "online"]);
  });

  await t.test("rooms, typing, listings and events", async () => {
    const [ann, bob, room] = [unique("ann"), unique("bob"), unique("room")];
    const sub = await pr.subscribe({ everyone: true, users: [ann], rooms: [room] });
    const joined = sub.next((e) => e.kind === "room" && e.event === "join" && e.user === ann);
    const online = sub.next((e) => e.kind === "user" && e.user === ann && e.status === "online");
    await pr.online(ann, "phone");
    await pr.online(bob, "web");
    assert.equal(await pr.join(ann, "phone", room, { data: { color: "red" } }), true);
    await pr.join(bob, "web", room);
    await assert.rejects(pr.typing(ann, "laptop", room), DeviceNotConnected);
    await assert.rejects(pr.typing(bob, "web", unique("elsewhere")), NotInRoom);
    await pr.typing(bob, "web", room);
    assert.deepEqual(await pr.typers(room), [[bob, "web"]]);
    assert.equal(await pr.count(room), 2);
    const members = await pr.members({ scope: room, page: 1, withDevices: true });
    assert.deepEqual(members.map((m) => m.user), [bob, ann]);
    assert.deepEqual(members[1]?.devices, [["phone", '{"color":"red"}']]);
    assert.deepEqual(await pr.rooms(ann), [room]);
    assert.deepEqual(await pr.deviceRooms(ann, "phone"), [[room, '{"color":"red"}']]);
    const room_event = await joined;
    assert.equal(room_event?.kind === "room" ? room_event.data?.color : null, "red");
    const user_event = await online;
    assert.equal(user_event?.kind, "user");
    assert.equal(await pr.leave(bob, "web", room), true);
    assert.equal(await pr.count(room), 1);
    await sub.close();
  });

  await t.test("channel names match the module's, binary ids included", async () => {
    for (const user of ["plain", "{org:7}ann", "a}b{", unique("x"), Buffer.from([0x62, 0xff, 0x00, 0x7b])]) {
      const name = (await redis.callBuffer("PRESENCE.CHANNEL", user)) as Buffer;
      assert.ok(name.equals(userChannel(user)), String(user));
    }
  });

  await t.test("a pipeline sends queued commands and replies in order", async () => {
    const users = [0, 1, 2].map((i) => unique(`pipe${i}`));
    const pipe = pr.pipeline();
    for (const user of users) pipe.online(user, "d").join(user, "d", "pipe-room").get(user);
    pipe.status(users[0] ?? "", "sleeping");
    const replies = await pipe.exec();
    assert.deepEqual([replies[0], replies[3], replies[6]], [1, 1, 1]);
    assert.deepEqual([2, 5, 8].map((i) => (replies[i] as { status: string }).status), ["online", "online", "online"]);
    assert.ok(replies[9] instanceof InvalidArgument);
    for (const user of users) await pr.offline(user, "d");
  });
});
