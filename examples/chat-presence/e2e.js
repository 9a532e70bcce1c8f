// The example in a real browser: starts the app against REDIS_URL, opens two users in headless
// Chromium (Debian's, through playwright-core), and checks that the first sees the second come
// online, go away, set a status with a message, go offline by closing the tab, come back with
// that status, and go offline by timeout when the tab stops heartbeating, each within the
// module's stated bounds. Saves a
// screenshot of the first user's page at each step (SCREENSHOTS, default ./screenshots).
//
//   REDIS_URL=redis://127.0.0.1:6379/ node e2e.js

"use strict";

const { spawn } = require("node:child_process");
const fs = require("node:fs");
const net = require("node:net");
const path = require("node:path");
const { chromium } = require("playwright-core");

const REDIS_URL = process.env.REDIS_URL || "redis://127.0.0.1:6379/";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = process.env.SCREENSHOTS || path.join(__dirname, "screenshots");
const TTL = 2000;

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

async function startApp(port) {
  const app = spawn(process.execPath, [path.join(__dirname, "server.js")], {
    env: { ...process.env, REDIS_URL, PORT: String(port), TTL: String(TTL) },
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the app did not start")), 10000);
    app.stdout.on("data", (chunk) => {
      if (String(chunk).includes("chat presence on")) {
        clearTimeout(timer);
        resolve();
      }
    });
    app.on("exit", (code) => reject(new Error(`the app exited with ${code}`)));
  });
  return app;
}

/** Waits until bob's row on `page` has `status` (and `message`, when given); returns the ms it took. */
async function seen(page, user, status, { message, within }) {
  const start = Date.now();
  const selector = `li[data-user="${user}"][data-status="${status}"]`;
  await page.waitForSelector(selector, { timeout: within });
  if (message !== undefined) {
    const text = await page.textContent(`${selector} .message`);
    if (text !== message) throw new Error(`${user}'s message is "${text}", not "${message}"`);
  }
  return Date.now() - start;
}

async function main() {
  fs.mkdirSync(SHOTS, { recursive: true });
  const port = await freePort();
  const app = await startApp(port);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  const run = Math.random().toString(36).slice(2, 8);
  const [alice, bob] = [`alice-${run}`, `bob-${run}`];
  const url = (user) => `http://127.0.0.1:${port}/?user=${user}`;
  const shot = (page, name) => page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
  try {
    const a = await (await browser.newContext()).newPage();
    await a.goto(url(alice));
    const bContext = await browser.newContext();
    let b = await bContext.newPage();
    await b.goto(url(bob));

    await seen(a, bob, "online", { within: 5000 });
    await a.waitForSelector(`li[data-member="${bob}"]`, { timeout: 5000 });
    await shot(a, "1-bob-online");

    await b.click("#away");
    await seen(a, bob, "away", { within: 3000 });
    await shot(a, "2-bob-away");

    await b.fill("#message", "In a meeting");
    await b.click("#busy");
    await seen(a, bob, "busy", { message: "In a meeting", within: 3000 });
    await shot(a, "3-bob-busy");

    // Closing the tab disconnects its socket: the app calls OFFLINE.
    await b.close();
    await seen(a, bob, "offline", { within: 3000 });
    await shot(a, "4-bob-offline-closed");

    // Back, then the tab stops heartbeating: the module times the device out at its deadline
    // (TTL after the last heartbeat) and the sweep announces it within `sweep-interval`.
    b = await bContext.newPage();
    await b.goto(url(bob));
    // A status set by hand outlives the session (`keep-manual-status yes`, the default).
    await seen(a, bob, "busy", { message: "In a meeting", within: 5000 });
    await b.click("#online");
    await seen(a, bob, "online", { message: "", within: 3000 });
    await b.evaluate(() => window.presenceFreeze());
    const frozenAt = Date.now();
    await seen(a, bob, "offline", { within: TTL + 3000 });
    const took = Date.now() - frozenAt;
    // The last heartbeat came at most TTL / 3 before the freeze, so the deadline is between
    // 2/3 TTL and TTL after it; the module announces the timeout within `sweep-interval` (100
    // ms) of the deadline, and the app and the browser add their own delay (up to 1.5 s allowed
    // on a loaded machine).
    const earliest = TTL - TTL / 3 - 100;
    const latest = TTL + 100 + 1500;
    if (took < earliest || took > latest) {
      throw new Error(`offline by timeout ${took} ms after the freeze, not within ${earliest}..${latest} (TTL ${TTL})`);
    }
    await shot(a, "5-bob-offline-timeout");
    console.log(`e2e: ok (offline by timeout ${took} ms after the last heartbeat stopped, TTL ${TTL})`);
  } finally {
    await browser.close();
    app.kill();
  }
}

main().catch((e) => {
  console.error("e2e:", e.message);
  process.exit(1);
});
