#!/usr/bin/env node
// Runs the browser tests: starts the already-built server (SERVER_BIN, default
// target/debug/reservation) on a free loopback port over a fresh database, runs every
// `*.test.mjs` here with Node's own test runner, stops the server, and exits non-zero if
// anything failed. `node run.mjs citizen` runs only the files whose name contains "citizen".
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const bin = process.env.SERVER_BIN
  ? path.resolve(process.cwd(), process.env.SERVER_BIN)
  : path.join(root, 'target', 'debug', 'reservation');
const chromium = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ADMIN_TOKEN = 'browser-admin';
const WATCHDOG_MS = 170_000; // the whole run must end well within three minutes

function fail(message) {
  console.error(`browser tests: ${message}`);
  process.exit(1);
}

if (!fs.existsSync(bin)) fail(`no server binary at ${bin}; run \`cargo build\` first or set SERVER_BIN`);
// Fail, never skip: a run that could not open the pages has not tested them.
if (!fs.existsSync(chromium)) fail(`Chromium not found at ${chromium}; install it (apt-get install -y chromium)`);

/** A port nobody is listening on right now, on loopback. */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const filter = process.argv.slice(2);
const files = fs.readdirSync(here)
  .filter((f) => f.endsWith('.test.mjs'))
  .filter((f) => !filter.length || filter.some((word) => f.includes(word)))
  .sort();
if (!files.length) fail(`no test file matches ${filter.join(' ')}`);

const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'reservation-browser-'));
const logPath = path.join(dataDir, 'server.log');
const log = fs.openSync(logPath, 'a');
const server = spawn(bin, [], {
  env: {
    ...process.env,
    BIND_ADDR: `127.0.0.1:${port}`,
    DATABASE_URL: path.join(dataDir, 'reservations.db'),
    ADMIN_TOKEN,
    IDENTITY_LATENCY_MS: '5',
    RUST_LOG: process.env.RUST_LOG ?? 'info',
  },
  stdio: ['ignore', log, log],
});
let serverExited = false;
server.on('exit', () => (serverExited = true));

async function stopServer() {
  if (serverExited) return;
  const gone = new Promise((resolve) => server.once('exit', resolve));
  server.kill('SIGTERM');
  const timer = setTimeout(() => server.kill('SIGKILL'), 10_000);
  await gone;
  clearTimeout(timer);
}

function tailOfLog() {
  const text = fs.readFileSync(logPath, 'utf8');
  return text.split('\n').slice(-30).join('\n');
}

let tests = null;
const watchdog = setTimeout(() => {
  console.error(`browser tests: still running after ${WATCHDOG_MS / 1000} s; stopping`);
  tests?.kill('SIGKILL');
}, WATCHDOG_MS);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, async () => {
    tests?.kill('SIGKILL');
    await stopServer();
    process.exit(130);
  });
}

const started = Date.now();
let code = 1;
try {
  // Ready when it answers its health check.
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (serverExited) throw new Error(`the server exited at start:\n${tailOfLog()}`);
    const ok = await fetch(`${base}/healthz`).then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`the server did not answer /healthz in 30 s:\n${tailOfLog()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  console.log(`server ${path.relative(process.cwd(), bin) || bin} on ${base}, data in ${dataDir}`);

  tests = spawn(process.execPath, [
    '--test', '--test-concurrency=1', '--test-reporter=spec', '--test-timeout=90000', ...files,
  ], {
    cwd: here,
    stdio: 'inherit',
    env: { ...process.env, BASE_URL: base, ADMIN_TOKEN, CHROMIUM_PATH: chromium },
  });
  code = await new Promise((resolve) => tests.on('exit', (c, signal) => resolve(signal ? 1 : c)));
  if (serverExited) {
    console.error(`the server stopped during the tests:\n${tailOfLog()}`);
    code = 1;
  }
} catch (e) {
  console.error(`browser tests: ${e.message}`);
  code = 1;
} finally {
  clearTimeout(watchdog);
  await stopServer();
  fs.closeSync(log);
  if (code === 0) fs.rmSync(dataDir, { recursive: true, force: true });
  else console.error(`server log kept at ${logPath}`);
}
console.log(`browser tests: ${code === 0 ? 'passed' : 'FAILED'} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
process.exit(code);
