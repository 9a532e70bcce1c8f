// redis-presence: typed access to the presence module for Redis and Valkey, over ioredis
// (`Redis` and `Cluster`). ioredis sends a command it does not know to any node of a cluster
// and follows MOVED; this client sends each single-user command straight to the master that
// owns the user (the user id is each command's declared key), spreads multi-user and node-wide
// reads as the module needs, and types every reply.

import Redis, { Cluster } from "ioredis";
import * as p from "./protocol";
import type { Id } from "./protocol";

export * from "./protocol";
export { default as Redis, Cluster } from "ioredis";

type Meta = string | Record<string, unknown> | undefined;
type Arg = string | number | Buffer;

function metaText(meta: Meta): string | undefined {
  return meta === undefined || typeof meta === "string" ? meta : JSON.stringify(meta);
}

/** `NAME value` for each option given. */
function options(values: Record<string, Arg | undefined>): Arg[] {
  const out: Arg[] = [];
  for (const [name, value] of Object.entries(values)) if (value !== undefined) out.push(name.toUpperCase(), value);
  return out;
}

export interface PresenceOptions {
  /** Users per PRESENCE.BULK call (the module's `max-bulk`). */
  maxBulk?: number;
}

export class Presence {
  readonly client: Redis | Cluster;
  readonly maxBulk: number;

  constructor(client: Redis | Cluster, opts: PresenceOptions = {}) {
    this.client = client;
    this.maxBulk = opts.maxBulk ?? 1000;
  }

  get isCluster(): boolean {
    return this.client instanceof Cluster;
  }

  /** The master that owns `slot`, as ioredis knows it. */
  private nodeOf(slot: number): Redis | null {
    if (!(this.client instanceof Cluster)) return null;
    const key = this.client.slots[slot]?.[0];
    return this.client.nodes("master").find((n) => `${n.options.host}:${n.options.port}` === key) ?? null;
  }

  private async send(node: Redis | Cluster, args: Arg[]): Promise<unknown> {
    const [name, ...rest] = args;
    return node.call(String(name), ...rest);
  }

  /** Waits until a cluster client knows the slots (its first commands would go anywhere). */
  async ready(timeoutMs = 10000): Promise<void> {
    const client = this.client;
    if (client instanceof Cluster && client.status !== "ready") {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          client.off("ready", onReady);
          reject(new Error(`the cluster client is not ready after ${timeoutMs} ms (${client.status})`));
        }, timeoutMs);
        const onReady = (): void => {
          clearTimeout(timer);
          resolve();
        };
        client.once("ready", onReady);
      });
    }
  }

  /** Runs a command of one user on the master that owns the user; a slot that moved meanwhile
   * is followed through the cluster client, which also refreshes its map. */
  private async run(user: Id, args: Arg[]): Promise<unknown> {
    await this.ready();
    try {
      const node = this.nodeOf(p.keySlot(user));
      if (node === null) return await this.send(this.client, args);
      try {
        return await this.send(node, args);
      } catch (e) {
        if (e instanceof Error && /^(MOVED|ASK) /.test(e.message) && this.client instanceof Cluster) {
          this.client.refreshSlotsCache();
          return await this.send(this.client, args);
        }
        throw e;
      }
    } catch (e) {
      throw p.errorFrom(e);
    }
  }

  /** Runs a node-wide command on every master (the server, when not a cluster). */
  private async everywhere(args: Arg[]): Promise<unknown[]> {
    await this.ready();
    try {
      if (!(this.client instanceof Cluster)) return [await this.send(this.client, args)];
      return await Promise.all(this.client.nodes("master").map((n) => this.send(n, args)));
    } catch (e) {
      throw p.errorFrom(e);
    }
  }

  // --- devices ---

  async online(user: Id, device: Id, o: { ttl?: number; meta?: Meta; scopes?: Id[] } = {}): Promise<number> {
    const args: Arg[] = ["PRESENCE.ONLINE", user, device, ...options({ ttl: o.ttl, meta: metaText(o.meta) })];
    if (o.scopes && o.scopes.length > 0) args.push("SCOPE", ...o.scopes);
    return Number(await this.run(user, args));
  }

  async heartbeat(user: Id, device: Id, o: { ttl?: number; active?: boolean; meta?: Meta } = {}): Promise<boolean> {
    const args: Arg[] = ["PRESENCE.HEARTBEAT", user, device, ...options({ ttl: o.ttl, meta: metaText(o.meta) })];
    if (o.active) args.push("ACTIVE");
    return Number(await this.run(user, args)) === 1;
  }

  async offline(user: Id, device: Id): Promise<number> {
    return Number(await this.run(user, ["PRESENCE.OFFLINE", user, device]));
  }

  // --- reads ---

  async get(user: Id, o: { viewer?: Id } = {}): Promise<p.UserPresence> {
    return p.parseGet(await this.run(user, ["PRESENCE.GET", user, ...options({ viewer: o.viewer })]));
  }

  /** PRESENCE.BULK for any number of users anywhere in the cluster: grouped by slot, chunked by
   * `maxBulk`, pipelined per node; rows in the order asked. */
  async bulk(users: Id[], o: { viewer?: Id; withDevice?: boolean } = {}): Promise<p.BulkRow[]> {
    const tail: Arg[] = [...options({ viewer: o.viewer }), ...(o.withDevice ? ["WITHDEVICE"] : [])];
    const bySlot = new Map<number, number[]>();
    users.forEach((user, i) => {
      const slot = this.isCluster ? p.keySlot(user) : 0;
      bySlot.set(slot, [...(bySlot.get(slot) ?? []), i]);
    });
    const rows: Array<p.BulkRow | undefined> = new Array(users.length);
    const byNode = new Map<Redis | Cluster, number[][]>();
    for (const [slot, positions] of bySlot) {
      const node = this.nodeOf(slot) ?? this.client;
      for (let i = 0; i < positions.length; i += this.maxBulk) {
        byNode.set(node, [...(byNode.get(node) ?? []), positions.slice(i, i + this.maxBulk)]);
      }
    }
    await Promise.all(
      [...byNode].map(async ([node, chunks]) => {
        const pipe = node.pipeline();
        for (const chunk of chunks) pipe.call("PRESENCE.BULK", ...chunk.map((i) => users[i] as Id), ...tail);
        const replies = (await pipe.exec()) ?? [];
        for (const [k, chunk] of chunks.entries()) {
          const [error, reply] = replies[k] ?? [new Error("no reply"), null];
          let got = reply;
          if (error) {
            if (!/^(MOVED|ASK) /.test(error.message) || !(this.client instanceof Cluster)) throw p.errorFrom(error);
            got = await this.send(this.client, ["PRESENCE.BULK", ...chunk.map((i) => users[i] as Id), ...tail]);
          }
          p.parseBulk(got).forEach((row, j) => {
            const position = chunk[j];
            if (position !== undefined) rows[position] = row;
          });
        }
      }),
    );
    return rows.filter((row): row is p.BulkRow => row !== undefined);
  }

  async devices(user: Id): Promise<p.Device[]> {
    return p.parseDevices(await this.run(user, ["PRESENCE.DEVICES", user]));
  }

  // --- status ---

  async status(user: Id, status: string, o: { message?: string; forMs?: number } = {}): Promise<void> {
    await this.run(user, ["PRESENCE.STATUS", user, status, ...options({ message: o.message, for: o.forMs })]);
  }

  async activity(user: Id, device?: Id): Promise<void> {
    await this.run(user, ["PRESENCE.ACTIVITY", user, ...(device === undefined ? [] : [device])]);
  }

  async context(user: Id, device: Id, context: Id | null): Promise<void> {
    await this.run(user, ["PRESENCE.CONTEXT", user, device, context ?? "NONE"]);
  }

  async inContext(user: Id, context: Id): Promise<boolean> {
    return Number(await this.run(user, ["PRESENCE.INCONTEXT", user, context])) === 1;
  }

  // --- privacy ---

  /** PRESENCE.PRIVACY: sets the rules given; returns the rules in force. */
  async privacy(user: Id, o: { online?: string; lastseen?: string } = {}): Promise<p.Privacy> {
    if (o.online !== undefined || o.lastseen !== undefined) {
      await this.run(user, ["PRESENCE.PRIVACY", user, ...options({ online: o.online, lastseen: o.lastseen })]);
    }
    return p.parsePrivacy(await this.run(user, ["PRESENCE.PRIVACY", user]));
  }

  async addContacts(user: Id, ...contacts: Id[]): Promise<number> {
    return Number(await this.run(user, ["PRESENCE.CONTACTS", user, "ADD", ...contacts]));
  }

  async removeContacts(user: Id, ...contacts: Id[]): Promise<number> {
    return Number(await this.run(user, ["PRESENCE.CONTACTS", user, "REM", ...contacts]));
  }

  async contacts(user: Id): Promise<string[]> {
    const reply = (await this.run(user, ["PRESENCE.CONTACTS", user, "LIST"])) as unknown[];
    return reply.map((c) => String(c));
  }

  /** PRESENCE.FANOUT: what each viewer (the user's contacts when `viewers` is not given) may see
   * of the user now, or of `event`; null where a viewer sees no change. */
  async fanout(
    user: Id,
    o: { event?: string | p.UserEvent; viewers?: Id[] } = {},
  ): Promise<Array<[string, Record<string, unknown> | null]>> {
    const args: Arg[] = ["PRESENCE.FANOUT", user];
    if (o.event !== undefined) args.push("EVENT", typeof o.event === "string" ? o.event : o.event.payload);
    if (o.viewers === undefined) args.push("CONTACTS");
    else args.push("VIEWERS", ...o.viewers);
    return p.parseFanout(await this.run(user, args));
  }

  async channel(user: Id): Promise<string> {
    return String(await this.run(user, ["PRESENCE.CHANNEL", user]));
  }

  // --- rooms ---

  async join(user: Id, device: Id, room: Id, o: { data?: Meta } = {}): Promise<boolean> {
    const args: Arg[] = ["PRESENCE.JOIN", user, device, room, ...options({ data: metaText(o.data) })];
    return Number(await this.run(user, args)) === 1;
  }

  async leave(user: Id, device: Id, room: Id): Promise<boolean> {
    return Number(await this.run(user, ["PRESENCE.LEAVE", user, device, room])) === 1;
  }

  async rooms(user: Id): Promise<string[]> {
    return ((await this.run(user, ["PRESENCE.ROOMS", user])) as unknown[]).map((r) => String(r));
  }

  async deviceRooms(user: Id, device: Id): Promise<Array<[string, string | null]>> {
    return p.parsePairs(await this.run(user, ["PRESENCE.ROOMS", user, device]));
  }

  async typing(user: Id, device: Id, room: Id | null): Promise<void> {
    await this.run(user, ["PRESENCE.TYPING", user, device, room ?? "NONE"]);
  }

  /** PRESENCE.TYPERS over every master. */
  async typers(room: Id): Promise<Array<[string, string]>> {
    return (await this.everywhere(["PRESENCE.TYPERS", room])).flatMap((r) => p.parseTypers(r));
  }

  // --- listings ---

  /** PRESENCE.COUNT summed over every master. */
  async count(scope?: Id): Promise<number> {
    const replies = await this.everywhere(["PRESENCE.COUNT", ...options({ scope })]);
    return replies.reduce<number>((sum, n) => sum + Number(n), 0);
  }

  async sweep(limit?: number): Promise<number> {
    const replies = await this.everywhere(["PRESENCE.SWEEP", ...options({ limit })]);
    return replies.reduce<number>((sum, n) => sum + Number(n), 0);
  }

  /** One PRESENCE.LIST page of one node (of the server, when not a cluster). */
  async listPage(
    o: { scope?: Id; cursor?: string; limit?: number; withScopes?: boolean; withDevices?: boolean; node?: Redis } = {},
  ): Promise<p.Page> {
    const args: Arg[] = [
      "PRESENCE.LIST",
      ...options({ scope: o.scope, limit: o.limit, cursor: o.cursor ?? "0" }),
      ...(o.withScopes ? ["WITHSCOPES"] : []),
      ...(o.withDevices ? ["WITHDEVICES"] : []),
    ];
    try {
      return p.parsePage(await this.send(o.node ?? this.client, args), !!o.withScopes, !!o.withDevices);
    } catch (e) {
      throw p.errorFrom(e);
    }
  }

  /** Every listed user (of `scope`), most recently active first, merged over every master. */
  async members(o: { scope?: Id; page?: number; withScopes?: boolean; withDevices?: boolean } = {}): Promise<p.Member[]> {
    const nodes: Array<Redis | undefined> = this.client instanceof Cluster ? this.client.nodes("master") : [undefined];
    const each = await Promise.all(
      nodes.map(async (node) => {
        const out: p.Member[] = [];
        let cursor = "0";
        do {
          const page = await this.listPage({ ...o, cursor, limit: o.page ?? 100, node });
          out.push(...page.members);
          cursor = page.cursor;
        } while (cursor !== "0");
        return out;
      }),
    );
    return each.flat().sort(p.listingOrder);
  }

  // --- pipelines ---

  /** A batch of single-user commands sent together: on a cluster, one pipeline per master (each
   * command to the master that owns its user); replies in the order queued. */
  pipeline(): PresencePipeline {
    return new PresencePipeline(this);
  }

  /** Runs queued single-user commands, one pipeline per node; each reply raw, or its error. */
  async runQueued(queued: Array<{ user: Id; args: Arg[] }>): Promise<Array<unknown>> {
    await this.ready();
    const byNode = new Map<Redis | Cluster, number[]>();
    queued.forEach(({ user }, i) => {
      const node = this.nodeOf(p.keySlot(user)) ?? this.client;
      byNode.set(node, [...(byNode.get(node) ?? []), i]);
    });
    const out: unknown[] = new Array(queued.length);
    await Promise.all(
      [...byNode].map(async ([node, positions]) => {
        const pipe = node.pipeline();
        for (const i of positions) {
          const [name, ...rest] = queued[i]?.args ?? [];
          pipe.call(String(name), ...rest);
        }
        const replies = (await pipe.exec()) ?? [];
        for (const [k, i] of positions.entries()) {
          const [error, reply] = replies[k] ?? [new Error("no reply"), null];
          if (error && /^(MOVED|ASK) /.test(error.message)) {
            try {
              out[i] = await this.run(queued[i]?.user ?? "", queued[i]?.args ?? []);
            } catch (e) {
              out[i] = e;
            }
          } else {
            out[i] = error ? p.errorFrom(error) : reply;
          }
        }
      }),
    );
    return out;
  }

  // --- events ---

  /** A subscription to the events of everyone, of some users (their own sharded channels) and
   * of some rooms, with `seq` de-duplication. */
  async subscribe(o: { everyone?: boolean; users?: Id[]; rooms?: Id[]; channel?: string } = {}): Promise<Subscription> {
    const sub = new Subscription(this.client, o);
    await sub.start();
    return sub;
  }
}

/** Queues single-user commands (the same methods as `Presence`, returning the pipeline), then
 * `exec()` sends them, one pipeline per node, and returns each reply parsed, in the order queued
 * (an error reply comes back as its error, not thrown). */
export class PresencePipeline {
  private readonly queued: Array<{ user: Id; args: Arg[]; parse: (reply: unknown) => unknown }> = [];

  constructor(private readonly presence: Presence) {}

  private add(user: Id, args: Arg[], parse: (reply: unknown) => unknown): this {
    this.queued.push({ user, args, parse });
    return this;
  }

  online(user: Id, device: Id, o: { ttl?: number; scopes?: Id[] } = {}): this {
    const args: Arg[] = ["PRESENCE.ONLINE", user, device, ...options({ ttl: o.ttl })];
    if (o.scopes && o.scopes.length > 0) args.push("SCOPE", ...o.scopes);
    return this.add(user, args, Number);
  }

  heartbeat(user: Id, device: Id): this {
    return this.add(user, ["PRESENCE.HEARTBEAT", user, device], (r) => Number(r) === 1);
  }

  offline(user: Id, device: Id): this {
    return this.add(user, ["PRESENCE.OFFLINE", user, device], Number);
  }

  get(user: Id): this {
    return this.add(user, ["PRESENCE.GET", user], p.parseGet);
  }

  status(user: Id, status: string, o: { message?: string } = {}): this {
    return this.add(user, ["PRESENCE.STATUS", user, status, ...options({ message: o.message })], () => undefined);
  }

  join(user: Id, device: Id, room: Id): this {
    return this.add(user, ["PRESENCE.JOIN", user, device, room], (r) => Number(r) === 1);
  }

  leave(user: Id, device: Id, room: Id): this {
    return this.add(user, ["PRESENCE.LEAVE", user, device, room], (r) => Number(r) === 1);
  }

  async exec(): Promise<unknown[]> {
    const queued = this.queued.splice(0);
    const replies = await this.presence.runQueued(queued);
    return replies.map((reply, i) => (reply instanceof Error ? reply : (queued[i]?.parse ?? ((r) => r))(reply)));
  }
}

/** Events of everyone, of some users and of some rooms: `on(listener)`, then `close()`.
 *
 * On a cluster, each user channel is subscribed on the master that owns its slot, with a
 * connection of its own. When a slot moves (the old master sends an unsolicited `sunsubscribe`)
 * or a master fails (its connection ends), the subscription reads the cluster's map again and
 * subscribes anew on the current owners, retrying while the cluster settles. Messages published
 * in between are lost, as pub/sub loses them. */
export class Subscription {
  private readonly dedup = new p.Deduplicator();
  private readonly listeners = new Set<(event: p.PresenceEvent) => void>();
  private connections: Redis[] = [];
  private readonly channels: Buffer[];
  private readonly userChannels: Buffer[];
  private rebuilding = false;
  private closed = false;
  /** How many times the subscription subscribed anew (after a slot moved or a node failed). */
  resubscriptions = 0;

  constructor(
    private readonly client: Redis | Cluster,
    o: { everyone?: boolean; users?: Id[]; rooms?: Id[]; channel?: string },
  ) {
    this.channels = [
      ...(o.everyone ? [Buffer.from(o.channel ?? p.EVENTS_CHANNEL)] : []),
      ...(o.rooms ?? []).map(p.roomChannel),
    ];
    this.userChannels = (o.users ?? []).map(p.userChannel);
  }

  /** Calls `listener` with each new event. */
  on(listener: (event: p.PresenceEvent) => void): this {
    this.listeners.add(listener);
    return this;
  }

  private connection(node: Redis | null): Redis {
    const cluster = this.client instanceof Cluster;
    const base = node ?? (this.client as Redis);
    // On a cluster the subscription itself decides where to reconnect: not the connection.
    const own = cluster ? base.duplicate({ retryStrategy: () => null, autoResubscribe: false }) : base.duplicate();
    own.on("messageBuffer", (_channel: Buffer, message: Buffer) => this.deliver(message));
    own.on("smessageBuffer", (_channel: Buffer, message: Buffer) => this.deliver(message));
    own.on("error", () => undefined); // reported through "end"
    if (cluster) {
      own.on("moved", () => this.scheduleRebuild());
      own.on("end", () => this.scheduleRebuild());
    }
    this.connections.push(own);
    return own;
  }

  private deliver(message: Buffer): void {
    const event = p.parseEvent(message);
    if (!this.dedup.fresh(event)) return;
    for (const listener of this.listeners) listener(event);
  }

  async start(): Promise<void> {
    if (!(this.client instanceof Cluster)) {
      const own = this.connection(null);
      if (this.channels.length > 0) await own.subscribe(...this.channels);
      if (this.userChannels.length > 0) await own.ssubscribe(...this.userChannels);
      return;
    }
    const cluster = this.client;
    const byNode = new Map<string, Buffer[]>();
    for (const channel of this.userChannels) {
      const key = cluster.slots[p.keySlot(channel)]?.[0] ?? "";
      byNode.set(key, [...(byNode.get(key) ?? []), channel]);
    }
    for (const [key, channels] of byNode) {
      const node = cluster.nodes("master").find((n) => `${n.options.host}:${n.options.port}` === key);
      if (node === undefined) throw new Error(`no master for ${key}`);
      await this.connection(node).ssubscribe(...channels);
    }
    const first = cluster.nodes("master")[0];
    if (this.channels.length > 0 && first !== undefined) await this.connection(first).subscribe(...this.channels);
  }

  private scheduleRebuild(): void {
    if (this.closed || this.rebuilding) return;
    this.rebuilding = true;
    setTimeout(() => void this.rebuild(), 200);
  }

  private async rebuild(): Promise<void> {
    for (const c of this.connections.splice(0)) {
      c.removeAllListeners("end");
      c.removeAllListeners("moved");
      c.disconnect();
    }
    try {
      const cluster = this.client as Cluster;
      await new Promise<void>((resolve, reject) => cluster.refreshSlotsCache((e) => (e ? reject(e) : resolve())));
      await this.start();
      this.resubscriptions += 1;
      this.rebuilding = false;
    } catch {
      this.rebuilding = false;
      this.scheduleRebuild();
    }
  }

  /** The next event for which `test` holds, within `ms` milliseconds (null when none came). */
  next(test: (event: p.PresenceEvent) => boolean = () => true, ms = 5000): Promise<p.PresenceEvent | null> {
    return new Promise((resolve) => {
      const listener = (event: p.PresenceEvent): void => {
        if (!test(event)) return;
        clearTimeout(timer);
        this.listeners.delete(listener);
        resolve(event);
      };
      const timer = setTimeout(() => {
        this.listeners.delete(listener);
        resolve(null);
      }, ms);
      this.listeners.add(listener);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    // Disconnected at once: a QUIT would wait for a node that may be gone.
    for (const c of this.connections.splice(0)) {
      c.removeAllListeners("end");
      c.disconnect();
    }
  }
}
