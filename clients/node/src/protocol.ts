// What the module's commands take and reply, as plain functions: reply parsers, typed results,
// errors by kind, and the names the module gives keys and channels. No I/O: tested without a
// server.

export type Id = string | Buffer;

export const SLOTS = 16384;
export const EVENTS_CHANNEL = "presence:events";
export const ROOM_CHANNEL_PREFIX = "presence:room:";

/** PRESENCE.GET: a user as the trusted application (or the viewer given) sees them. */
export interface UserPresence {
  user: string;
  status: string;
  devices: number;
  lastSeen: number | null;
  since: number | null;
  message: string | null;
  manual: boolean;
  lastActive: number | null;
  scopes: string[];
  lastDevice: string | null;
}

/** One row of PRESENCE.BULK. */
export interface BulkRow {
  user: string;
  status: string;
  lastSeen: number | null;
  devices: number;
  lastDevice?: string | null;
}

/** One connected device, from PRESENCE.DEVICES. */
export interface Device {
  device: string;
  connectedAt: number;
  lastHeartbeat: number;
  expiresAt: number;
  meta: string | null;
  context: string | null;
}

/** One row of PRESENCE.LIST. */
export interface Member {
  user: string;
  status: string;
  lastActive: number;
  scopes?: string[];
  devices?: Array<[string, string | null]>;
}

export interface Page {
  cursor: string;
  members: Member[];
}

export interface Privacy {
  online: string;
  lastseen: string;
}

/** A change of a user, as published on the global channel and the user's own channel. */
export interface UserEvent {
  kind: "user";
  user: string;
  status: string;
  prev: string;
  reason: string;
  device: string;
  devices: number;
  lastSeen: number | null;
  message: string | null;
  scopes: string[];
  meta: Record<string, unknown> | null;
  ts: number;
  seq: number;
  /** The payload as published, for PRESENCE.FANOUT's EVENT. */
  payload: string;
}

/** A change of a room, as published on the room's channel. */
export interface RoomEvent {
  kind: "room";
  room: string;
  user: string;
  event: string;
  reason: string;
  device: string;
  devices: number;
  status: string;
  message: string | null;
  data: Record<string, unknown> | null;
  typing: boolean | null;
  ts: number;
  seq: number;
}

export type PresenceEvent = UserEvent | RoomEvent;

// --- errors ---------------------------------------------------------------------------------

/** An error reply of the module; the subclasses name the kinds a program reacts to. */
export class PresenceError extends Error {
  override name = "PresenceError";
}
export class InvalidArgument extends PresenceError {
  override name = "InvalidArgument";
}
export class DeviceNotConnected extends PresenceError {
  override name = "DeviceNotConnected";
}
export class TooManyDevices extends PresenceError {
  override name = "TooManyDevices";
}
export class TooManyRooms extends PresenceError {
  override name = "TooManyRooms";
}
export class NotInRoom extends PresenceError {
  override name = "NotInRoom";
}
export class TooManyUsers extends PresenceError {
  override name = "TooManyUsers";
}
export class NotAnEvent extends PresenceError {
  override name = "NotAnEvent";
}
export class WrongDatabase extends PresenceError {
  override name = "WrongDatabase";
}
export class ReplicaWrite extends PresenceError {
  override name = "ReplicaWrite";
}
export class InternalError extends PresenceError {
  override name = "InternalError";
}

const KINDS: Array<[string, new (message: string) => PresenceError]> = [
  ["device is not connected", DeviceNotConnected],
  ["connected devices (max-devices)", TooManyDevices],
  ["rooms (max-rooms)", TooManyRooms],
  ["device is not in room", NotInRoom],
  ["too many users:", TooManyUsers],
  ["EVENT must be an event payload", NotAnEvent],
  ["presence data lives in database 0", WrongDatabase],
  ["presence is written on the master only", ReplicaWrite],
  ["hit an internal error", InternalError],
];

/** The module's error reply as the error of its kind (others are returned unchanged). */
export function errorFrom(error: unknown): unknown {
  if (!(error instanceof Error) || error instanceof PresenceError) return error;
  const text = error.message;
  for (const [needle, Kind] of KINDS) {
    if (text.includes(needle)) return new Kind(text);
  }
  if (text.startsWith("ERR ") || text.includes(" must ")) return new InvalidArgument(text);
  return error;
}

// --- replies --------------------------------------------------------------------------------

type Reply = unknown;

function text(value: Reply): string {
  return Buffer.isBuffer(value) ? value.toString("utf8") : String(value);
}
function optText(value: Reply): string | null {
  return value === null || value === undefined ? null : text(value);
}
function optInt(value: Reply): number | null {
  return value === null || value === undefined ? null : Number(value);
}
function list(value: Reply): Reply[] {
  if (!Array.isArray(value)) throw new TypeError(`expected an array reply, got ${typeof value}`);
  return value as Reply[];
}

/** A map reply: a flat name/value array under RESP2 (ioredis speaks RESP2). */
function asMap(reply: Reply): Map<string, Reply> {
  const items = list(reply);
  const out = new Map<string, Reply>();
  for (let i = 0; i + 1 < items.length; i += 2) out.set(text(items[i]), items[i + 1]);
  return out;
}

export function parseGet(reply: Reply): UserPresence {
  const m = asMap(reply);
  return {
    user: text(m.get("user")),
    status: text(m.get("status")),
    devices: Number(m.get("devices")),
    lastSeen: optInt(m.get("last_seen")),
    since: optInt(m.get("since")),
    message: optText(m.get("message")),
    manual: Number(m.get("manual")) === 1,
    lastActive: optInt(m.get("last_active")),
    scopes: list(m.get("scopes") ?? []).map(text),
    lastDevice: optText(m.get("last_device")),
  };
}

export function parseBulk(reply: Reply): BulkRow[] {
  return list(reply).map((row) => {
    const r = list(row);
    const out: BulkRow = {
      user: text(r[0]),
      status: text(r[1]),
      lastSeen: optInt(r[2]),
      devices: Number(r[3]),
    };
    if (r.length > 4) out.lastDevice = optText(r[4]);
    return out;
  });
}

export function parseDevices(reply: Reply): Device[] {
  return list(reply).map((item) => {
    const m = asMap(item);
    return {
      device: text(m.get("device")),
      connectedAt: Number(m.get("connected_at")),
      lastHeartbeat: Number(m.get("last_heartbeat")),
      expiresAt: Number(m.get("expires_at")),
      meta: optText(m.get("meta")),
      context: optText(m.get("context")),
    };
  });
}

export function parsePage(reply: Reply, withScopes: boolean, withDevices: boolean): Page {
  const [cursor, rows] = list(reply);
  return {
    cursor: text(cursor),
    members: list(rows).map((row) => {
      const r = list(row);
      const member: Member = { user: text(r[0]), status: text(r[1]), lastActive: Number(r[2]) };
      let next = 3;
      if (withScopes) member.scopes = list(r[next++]).map(text);
      if (withDevices) member.devices = parsePairs(r[next++]);
      return member;
    }),
  };
}

export function parsePairs(reply: Reply): Array<[string, string | null]> {
  return list(reply).map((pair) => {
    const p = list(pair);
    return [text(p[0]), optText(p[1])];
  });
}

export function parseTypers(reply: Reply): Array<[string, string]> {
  return list(reply).map((pair) => {
    const p = list(pair);
    return [text(p[0]), text(p[1])];
  });
}

export function parsePrivacy(reply: Reply): Privacy {
  const m = asMap(reply);
  return { online: text(m.get("online")), lastseen: text(m.get("lastseen")) };
}

export function parseFanout(reply: Reply): Array<[string, Record<string, unknown> | null]> {
  return list(reply).map((pair) => {
    const p = list(pair);
    const json = optText(p[1]);
    return [text(p[0]), json === null ? null : (JSON.parse(json) as Record<string, unknown>)];
  });
}

function exact(d: Record<string, unknown>, name: string): string {
  const coded = d[`${name}_b64`];
  if (typeof coded === "string") return Buffer.from(coded, "base64").toString("latin1");
  return String(d[name] ?? "");
}

/** An event payload as the module publishes it: a user event, or a room event. */
export function parseEvent(payload: string | Buffer): PresenceEvent {
  const raw = text(payload);
  const d = JSON.parse(raw) as Record<string, unknown>;
  const str = (name: string): string | null => (typeof d[name] === "string" ? (d[name] as string) : null);
  if ("room" in d) {
    return {
      kind: "room",
      room: exact(d, "room"),
      user: exact(d, "user"),
      event: String(d.event),
      reason: String(d.reason),
      device: exact(d, "device"),
      devices: Number(d.devices),
      status: String(d.status),
      message: str("message"),
      data: (d.data as Record<string, unknown> | undefined) ?? null,
      typing: typeof d.typing === "boolean" ? d.typing : null,
      ts: Number(d.ts),
      seq: Number(d.seq),
    };
  }
  return {
    kind: "user",
    user: exact(d, "user"),
    status: String(d.status),
    prev: String(d.prev),
    reason: String(d.reason),
    device: exact(d, "device"),
    devices: Number(d.devices),
    lastSeen: typeof d.last_seen === "number" ? d.last_seen : null,
    message: str("message"),
    scopes: Array.isArray(d.scopes) ? d.scopes.map(String) : [],
    meta: (d.meta as Record<string, unknown> | undefined) ?? null,
    ts: Number(d.ts),
    seq: Number(d.seq),
    payload: raw,
  };
}

/** Drops events already seen: a user's events are numbered by `seq`, strictly increasing (room
 * events share the user's numbers but come on other channels, so they are counted per room). */
export class Deduplicator {
  private last = new Map<string, number>();

  fresh(event: PresenceEvent): boolean {
    const key = event.kind === "room" ? `${event.room}\u0000${event.user}` : `\u0000${event.user}`;
    if (event.seq <= (this.last.get(key) ?? 0)) return false;
    this.last.set(key, event.seq);
    return true;
  }
}

// --- names ----------------------------------------------------------------------------------

function bytes(value: Id): Buffer {
  return Buffer.isBuffer(value) ? value : Buffer.from(value, "utf8");
}

function crc16(data: Buffer): number {
  let crc = 0;
  for (const byte of data) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** The cluster slot of a key or user id (hash tags included), as Redis computes it. */
export function keySlot(key: Id): number {
  let data = bytes(key);
  const open = data.indexOf(0x7b); // {
  if (open >= 0) {
    const close = data.indexOf(0x7d, open + 1); // }
    if (close > open + 1) data = data.subarray(open + 1, close);
  }
  return crc16(data) % SLOTS;
}

const TAG_ALPHABET = Buffer.from("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz");
let tags: Map<number, Buffer> | null = null;

/** The shortest string of `0-9A-Za-z` whose slot is `slot`, found in the module's order. */
export function slotTag(slot: number): Buffer {
  if (tags === null) {
    tags = new Map();
    const n = TAG_ALPHABET.length;
    for (let length = 1; length <= 3 && tags.size < SLOTS; length++) {
      for (let i = 0; i < n ** length; i++) {
        const candidate = Buffer.alloc(length);
        let rest = i;
        for (let j = 0; j < length; j++) {
          candidate[j] = TAG_ALPHABET[rest % n] ?? 0;
          rest = Math.floor(rest / n);
        }
        const s = crc16(candidate) % SLOTS;
        if (!tags.has(s)) tags.set(s, candidate);
      }
    }
  }
  const tag = tags.get(slot);
  if (tag === undefined) throw new RangeError(`no tag for slot ${slot}`);
  return tag;
}

/** The user's own event channel (sharded pub/sub), as the module names it. */
export function userChannel(user: Id): Buffer {
  const data = bytes(user);
  if (data.includes(0x7b) || data.includes(0x7d)) {
    return Buffer.concat([Buffer.from("presence:{"), slotTag(keySlot(data)), Buffer.from("}"), data]);
  }
  return Buffer.concat([Buffer.from("presence:{"), data, Buffer.from("}")]);
}

export function roomChannel(room: Id): Buffer {
  return Buffer.concat([Buffer.from(ROOM_CHANNEL_PREFIX), bytes(room)]);
}

/** A LIST row's place: most recently active first, then user ids in descending byte order. */
export function listingOrder(a: Member, b: Member): number {
  if (a.lastActive !== b.lastActive) return b.lastActive - a.lastActive;
  return Buffer.compare(bytes(b.user), bytes(a.user));
}
