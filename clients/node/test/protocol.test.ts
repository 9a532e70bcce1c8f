// The pure half of the client: names, replies, errors, events. No server needed.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as p from "../src/protocol";

test("key slots and channel names are the module's", () => {
  assert.equal(p.keySlot("foo"), 12182);
  assert.equal(p.keySlot("{user1000}.following"), p.keySlot("user1000"));
  assert.equal(p.userChannel("alice").toString(), "presence:{alice}");
  assert.equal(p.userChannel("{org:7}ann").toString(), "presence:{VM4}{org:7}ann");
  assert.equal(p.roomChannel("doc:9").toString(), "presence:room:doc:9");
});

test("replies are typed", () => {
  const get = p.parseGet(["user", "a", "status", "busy", "devices", 2, "last_seen", 5, "since", 4,
    "message", "hi", "manual", 1, "last_active", null, "scopes", ["z"], "last_device", null]);
  assert.deepEqual([get.status, get.devices, get.manual, get.lastActive, get.scopes], ["busy", 2, true, null, ["z"]]);
  const page = p.parsePage(["0", [["bob", "online", 7, ["z"], [["web", null]]]]], true, true);
  assert.deepEqual(page.members[0], { user: "bob", status: "online", lastActive: 7, scopes: ["z"], devices: [["web", null]] });
});

test("errors become their kind", () => {
  assert.ok(p.errorFrom(new Error("ERR device is not connected")) instanceof p.DeviceNotConnected);
  assert.ok(p.errorFrom(new Error("ERR device is already in 3 rooms (max-rooms)")) instanceof p.TooManyRooms);
  assert.ok(p.errorFrom(new Error("ERR TTL must be an integer from 100 to 604800000 milliseconds, got '1'")) instanceof p.InvalidArgument);
});

test("events parse into their kind and repeats are dropped", () => {
  const user = p.parseEvent('{"user":"u","status":"online","prev":"offline","reason":"connect","device":"d","devices":1,"last_seen":5,"message":null,"scopes":[],"ts":5,"seq":5000}');
  const room = p.parseEvent('{"room":"r","user":"u","event":"join","reason":"join","device":"d","devices":1,"status":"online","message":null,"ts":5,"seq":5001}');
  assert.equal(user.kind, "user");
  assert.equal(room.kind, "room");
  const dedup = new p.Deduplicator();
  assert.deepEqual([dedup.fresh(user), dedup.fresh(room), dedup.fresh(user)], [true, true, false]);
});
