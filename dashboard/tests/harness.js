// Starts what the browser tests drive, and cleans it all up even when a test fails: a fresh
// Postgres database, a Resend stand-in, the real `communication all` binary on a free port
// with its own namespace, a tenant API key made by the binary, and Debian's Chromium.
//
// It builds nothing: the binary comes from COMMUNICATION_BIN (default
// ../target/debug/communication) and the page from dist/ as the binary serves it.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startResendStub } from './resend-stub.js';

const here = path.dirname(fileURLToPath(import.meta.url));
export const dashboardDir = path.resolve(here, '..');
export const repoRoot = path.resolve(dashboardDir, '..');
export const screenshotDir = path.join(repoRoot, 'target', 'dashboard-screenshots');

const PG = { host: process.env.PGHOST ?? '127.0.0.1', port: process.env.PGPORT ?? '5432', user: process.env.PGUSER ?? 'postgres' };
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  // Containers often have a small /dev/shm; Chromium then crashes on bigger pages.
  '--disable-dev-shm-usage',
];

export const TENANT = 'acme-shop';
export const SERVICE_TOKEN = `svc-${randomUUID()}`;

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function psql(sql) {
  const r = spawnSync('psql', ['-h', PG.host, '-p', PG.port, '-U', PG.user, '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', '-qAtc', sql], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`psql failed: ${r.stderr || r.error}`);
  return r.stdout;
}

async function waitFor(what, probe, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

/** Everything started, with one idempotent `stop()`. */
export async function startStack() {
  const cleanups = [];
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch (e) {
        console.error(`cleanup: ${e.message}`);
      }
    }
  };
  // Ctrl-C or a crash of the runner still cleans up (synchronous parts only on 'exit').
  const syncCleanups = [];
  const onExit = () => {
    for (const c of syncCleanups) {
      try {
        c();
      } catch {
        // best effort while exiting
      }
    }
  };
  process.once('exit', onExit);
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.once(sig, () => {
      onExit();
      process.exit(130);
    });
  }
  cleanups.push(() => process.removeListener('exit', onExit));

  try {
    const bin = path.resolve(dashboardDir, process.env.COMMUNICATION_BIN ?? '../target/debug/communication');
    if (!existsSync(bin)) throw new Error(`no binary at ${bin}: run cargo build first (or set COMMUNICATION_BIN)`);
    if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium`);
    if (!existsSync(path.join(dashboardDir, 'dist', 'index.html'))) throw new Error('dashboard/dist is missing: run npm run build first');

    const id = randomUUID().replace(/-/g, '').slice(0, 12);
    const database = `dash_test_${id}`;
    psql(`CREATE DATABASE ${database}`);
    const dropDb = () => psql(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    cleanups.push(dropDb);
    syncCleanups.push(dropDb);

    const goodKey = `re_good_${randomBytes(12).toString('hex')}`;
    const otherGoodKey = `re_other_${randomBytes(12).toString('hex')}`;
    const badKey = `re_bad_${randomBytes(12).toString('hex')}`;
    const senderDomain = 'shop.example';
    const resend = await startResendStub({ goodKeys: [goodKey, otherGoodKey], senderDomain });
    cleanups.push(() => resend.close());

    const port = await freePort();
    const namespace = `test-dash-${id}`;
    const env = {
      PATH: process.env.PATH,
      HOME: process.env.HOME ?? '/tmp',
      DATABASE_URL: `postgres://${PG.user}@${PG.host}:${PG.port}/${database}?sslmode=disable`,
      REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
      AMQP_URL: process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672/%2f',
      ENCRYPTION_SECRET: randomBytes(32).toString('base64'),
      COMMUNICATION_SERVICE_TOKEN: SERVICE_TOKEN,
      COMMUNICATION_LISTEN_ADDR: `127.0.0.1:${port}`,
      COMMUNICATION_NAMESPACE: namespace,
      COMMUNICATION_ALLOW_PRIVATE_HOSTS: 'true',
      COMMUNICATION_DB_POOL_SIZE: '4',
      COMMUNICATION_PROVIDER_CACHE_MS: '100',
      COMMUNICATION_RETRY_BASE_MS: '200',
      COMMUNICATION_RETRY_MAX_MS: '1000',
      RESEND_BASE_URL: resend.url,
      RUST_LOG: process.env.RUST_LOG ?? 'warn',
    };
    const serverLog = [];
    const child = spawn(bin, ['all'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (d) => serverLog.push(d.toString()));
    child.stderr.on('data', (d) => serverLog.push(d.toString()));
    const exited = new Promise((resolve) => child.once('exit', resolve));
    const killChild = () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    };
    syncCleanups.unshift(killChild);
    // Cleanups run in reverse: the queues go only after the service stopped (a running worker
    // would declare them again).
    cleanups.push(() => deleteQueues(namespace));
    // The service's own log, kept beside the screenshots for a failed run (cleanups run in
    // reverse, so this is written after the service stopped).
    cleanups.push(() => {
      mkdirSync(screenshotDir, { recursive: true });
      writeFileSync(path.join(screenshotDir, 'server.log'), serverLog.join(''));
    });
    cleanups.push(async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(killChild, 5000);
        await exited;
        clearTimeout(t);
      }
    });
    const baseUrl = `http://127.0.0.1:${port}`;
    await waitFor('the service to answer /healthz', async () => {
      if (child.exitCode !== null) throw new Error(`the binary exited (${child.exitCode}):\n${serverLog.join('')}`);
      const r = await fetch(`${baseUrl}/healthz`);
      return r.ok;
    });

    const created = spawnSync(bin, ['api-key', 'create', '--tenant', TENANT], { env, encoding: 'utf8' });
    if (created.status !== 0) throw new Error(`api-key create failed: ${created.stderr}`);
    const apiKey = created.stdout.trim().split('\n').pop();

    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
    cleanups.push(() => browser.close());
    syncCleanups.unshift(() => {
      const pid = browser.process?.()?.pid;
      if (pid) process.kill(pid, 'SIGKILL');
    });

    mkdirSync(screenshotDir, { recursive: true });
    return {
      baseUrl,
      dashboardUrl: `${baseUrl}/dashboard/`,
      apiKey,
      resend,
      resendKeys: { good: goodKey, otherGood: otherGoodKey, bad: badKey },
      senderDomain,
      browser,
      serverLog,
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** The broker's queues of this run's namespace (durable, so they outlive the process). */
function deleteQueues(namespace) {
  const list = spawnSync('rabbitmqctl', ['list_queues', 'name', '--quiet'], { encoding: 'utf8' });
  if (list.status !== 0) return;
  for (const q of list.stdout.split('\n').map((s) => s.trim())) {
    if (q.startsWith(`${namespace}.`)) spawnSync('rabbitmqctl', ['delete_queue', q], { stdio: 'ignore' });
  }
}

/** Calls the API as a program would (not through the page). */
export async function callApi(stack, method, pathname, { key = stack.apiKey, body, headers = {} } = {}) {
  const r = await fetch(`${stack.baseUrl}${pathname}`, {
    method,
    headers: {
      Authorization: `Bearer ${key}`,
      ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}),
      ...headers,
    },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  let json;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = text;
  }
  return { status: r.status, body: json };
}

export { waitFor };
