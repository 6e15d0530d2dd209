// The web build in a real browser: serve web/dist on 127.0.0.1, open it in headless
// Chromium (WebGPU on SwiftShader), run the spirals demo, and check what the page
// reports in #twa-status: the run finished with a final accuracy above a bound and a
// finite 33² landscape; frame times while training; a screenshot.
//
// Usage: node web/test/browser-test.mjs [--dist DIR] [--screenshot FILE] [--min-acc X]
//        [--timeout SECONDS] [--json FILE] [--native FILE]
// --native: the last line of `twa run --preset spirals --json` (the same demo run
// natively); every method's accuracy must then agree within 0.5 points.
import { chromium } from "playwright-core";
import http from "node:http";
import fs from "node:fs";
import path from "node:path";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => (a.startsWith("--") ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []),
);
const dist = path.resolve(args.dist ?? "web/dist");
const minAcc = Number(args["min-acc"] ?? 0.9);
const timeout = 1000 * Number(args.timeout ?? 900);
const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm" };

const server = http.createServer((req, res) => {
  const file = path.join(dist, decodeURIComponent(new URL(req.url, "http://x").pathname).replace(/\/$/, "/index.html"));
  if (!file.startsWith(dist) || !fs.existsSync(file)) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { "content-type": types[path.extname(file)] ?? "application/octet-stream" });
  fs.createReadStream(file).pipe(res);
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const url = `http://127.0.0.1:${server.address().port}/index.html?preset=spirals&autostart`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--enable-unsafe-webgpu", "--disable-gpu-sandbox",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--disable-quic",
  ],
});
let failure = null;
const console_lines = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 820 } });
  page.on("console", (m) => console_lines.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => console_lines.push(`pageerror: ${e.message}`));
  // Diagnostics for a failure: a lost device says why.
  await page.addInitScript(() => {
    if (!globalThis.GPUAdapter) return;
    const request = GPUAdapter.prototype.requestDevice;
    GPUAdapter.prototype.requestDevice = async function (...a) {
      const device = await request.apply(this, a);
      device.lost.then((info) => console.error(`WebGPU device lost: ${info.reason} ${info.message}`));
      return device;
    };
  });
  const started = Date.now();
  await page.goto(url);
  let status = {};
  let seen = "";
  for (;;) {
    const text = await page.locator("#twa-status").textContent();
    try { status = JSON.parse(text || "{}"); } catch { status = {}; }
    if (status.status && status.status !== seen) {
      seen = status.status;
      console.error(`[${((Date.now() - started) / 1000).toFixed(0)} s] ${seen}`);
    }
    const done = status.results?.length >= 4 && !status.running && status.landscape?.complete && !status.landscape_busy;
    if (status.error || done) break;
    if (Date.now() - started > timeout) { failure = `timed out after ${timeout / 1000} s: ${JSON.stringify(status)}`; break; }
    await page.waitForTimeout(1000);
  }
  const seconds = (Date.now() - started) / 1000;
  if (args.screenshot) await page.screenshot({ path: args.screenshot });
  const twa = status.results?.find((r) => r.method === "TWA");
  const last = status.results?.find((r) => r.method.startsWith("SGD (epoch 20"));
  if (!failure && status.error) failure = `the page reports: ${status.error}`;
  if (!failure && !(twa && twa.acc >= minAcc)) failure = `TWA's accuracy ${twa?.acc} is below ${minAcc}`;
  if (!failure && !(last && last.acc >= minAcc)) failure = `SGD's final accuracy ${last?.acc} is below ${minAcc}`;
  if (!failure && !(status.landscape?.n === 33 && status.landscape.finite)) failure = `landscape: ${JSON.stringify(status.landscape)}`;
  let native = null;
  if (args.native) {
    native = JSON.parse(fs.readFileSync(args.native, "utf8").trim().split("\n").pop()).rows;
    for (const row of native) {
      const web = status.results?.find((r) => r.method === row.method);
      if (!failure && !(web && Math.abs(web.acc - row.test_acc) <= 0.005)) {
        failure = `${row.method}: ${web?.acc} in the browser, ${row.test_acc} natively (more than 0.5 points apart)`;
      }
    }
  }
  const summary = {
    seconds, adapter: status.adapter, results: status.results,
    native: native?.map((r) => ({ method: r.method, acc: r.test_acc })),
    landscape: status.landscape, frame_ms: status.frame_ms, failure,
  };
  console.log(JSON.stringify(summary));
  if (args.json) fs.writeFileSync(args.json, JSON.stringify(summary, null, 1));
} catch (e) {
  failure = String(e);
} finally {
  await browser.close();
  server.close();
}
if (failure) {
  console.error(`browser test FAILED: ${failure}\n--- console ---\n${console_lines.slice(-40).join("\n")}`);
  process.exit(1);
}
console.error("browser test passed");
