// A small chat presence app on the presence module: each browser tab is a device of its user
// (a Socket.IO connection), heartbeats over the socket, a contact list with live status dots,
// custom messages and last seen, and who is in the lobby. The module does the presence: this
// file only forwards calls and events.
//
//   REDIS_URL=redis://127.0.0.1:6379/ PORT=8080 node server.js
//
// TTL (ms, default 30000) is each tab's device TTL; a tab heartbeats every TTL / 3.

"use strict";

const http = require("node:http");
const fs = require("node:fs");
const path = require("node:path");
const { Server } = require("socket.io");
const { Presence, Redis } = require("redis-presence");

const REDIS_URL = process.env.REDIS_URL || "redis://127.0.0.1:6379/";
const PORT = Number(process.env.PORT || 8080);
const TTL = Number(process.env.TTL || 30000);
const LOBBY = "lobby";

const redis = new Redis(REDIS_URL);
const presence = new Presence(redis);
// Everyone who has connected since the app started: the contact list.
const known = new Set();

async function contactCard(user) {
  const p = await presence.get(user);
  return { user, status: p.status, message: p.message, lastSeen: p.lastSeen, devices: p.devices };
}

async function lobby() {
  const members = await presence.members({ scope: LOBBY });
  return members.map((m) => ({ user: m.user, status: m.status }));
}

const page = fs.readFileSync(path.join(__dirname, "public", "index.html"));
const server = http.createServer((req, res) => {
  if (req.url === "/" || req.url.startsWith("/?")) {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(page);
  } else {
    res.writeHead(404);
    res.end();
  }
});
const io = new Server(server);

io.on("connection", async (socket) => {
  const user = String(socket.handshake.query.user || "").slice(0, 64);
  if (!user) return socket.disconnect(true);
  const device = socket.id;
  try {
    known.add(user);
    await presence.online(user, device, { ttl: TTL, meta: { agent: "browser" } });
    await presence.join(user, device, LOBBY);
    socket.emit("hello", { user, ttl: TTL, heartbeat: Math.floor(TTL / 3) });
    socket.emit("contacts", await Promise.all([...known].map(contactCard)));
    socket.emit("lobby", await lobby());
  } catch (e) {
    console.error("connect:", e.message);
  }
  socket.on("heartbeat", () => presence.heartbeat(user, device).catch(() => undefined));
  socket.on("status", ({ status, message }) => {
    const opts = message ? { message: String(message).slice(0, 200) } : {};
    presence.status(user, String(status), opts).catch((e) => socket.emit("problem", e.message));
  });
  socket.on("disconnect", () => presence.offline(user, device).catch(() => undefined));
});

// The module's events, forwarded to every browser: a user's change, or the lobby's.
async function follow() {
  const sub = await presence.subscribe({ everyone: true, rooms: [LOBBY] });
  sub.on(async (event) => {
    try {
      if (event.kind === "user") {
        known.add(event.user);
        io.emit("contact", {
          user: event.user,
          status: event.status,
          message: event.message,
          lastSeen: event.lastSeen,
          devices: event.devices,
          reason: event.reason,
        });
      } else {
        io.emit("lobby", await lobby());
      }
    } catch (e) {
      console.error("event:", e.message);
    }
  });
}

follow().then(() =>
  server.listen(PORT, "127.0.0.1", () => console.log(`chat presence on http://127.0.0.1:${PORT}/`)),
);
