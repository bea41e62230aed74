// Test harness: the REAL service binary against the local Postgres, Redis and RabbitMQ.
//
// `startService()` creates a fresh database, starts `communication all` on a free port with its
// own COMMUNICATION_NAMESPACE, waits for /readyz, and returns a handle whose `stop()` kills the
// process, drops the database and deletes the namespace's queues and exchanges. `stop()` is
// safe to call twice and is also run when the test process exits, so a failing test leaves
// nothing behind (CI additionally sweeps leftover `test-*` queues).

import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import amqp from 'amqplib';

const execFileAsync = promisify(execFile);

export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const POSTGRES_ADMIN_URL = process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672/%2f';
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** The service binary: COMMUNICATION_BIN, else the workspace's debug build. */
export function serviceBinary(): string {
  const bin = path.resolve(PACKAGE_ROOT, process.env.COMMUNICATION_BIN ?? '../../target/debug/communication');
  if (!existsSync(bin)) {
    throw new Error(`service binary not found at ${bin}: run \`cargo build\` at the repository root, or set COMMUNICATION_BIN`);
  }
  return bin;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function databaseUrl(name: string): string {
  const url = new URL(POSTGRES_ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

async function admin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

export async function createDatabase(name: string): Promise<string> {
  await admin((c) => c.query(`CREATE DATABASE "${name}"`));
  return databaseUrl(name);
}

export async function dropDatabase(name: string): Promise<void> {
  await admin((c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
}

/** Runs one SQL query against a test database. */
export async function query<R extends pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<R>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

async function rabbitmqctl(args: string[]): Promise<string> {
  const { stdout } = await execFileAsync('rabbitmqctl', args, { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 });
  return stdout;
}

/** Names of the broker's queues and exchanges that belong to `namespace`. */
async function namespaceObjects(namespace: string): Promise<{ queues: string[]; exchanges: string[] }> {
  const own = (name: string) => name === namespace || name.startsWith(`${namespace}.`);
  const lines = (out: string) => out.split('\n').map((l) => l.trim()).filter(own);
  const [queues, exchanges] = await Promise.all([
    rabbitmqctl(['list_queues', 'name', '--quiet', '--no-table-headers']),
    rabbitmqctl(['list_exchanges', 'name', '--quiet', '--no-table-headers']),
  ]);
  return { queues: lines(queues), exchanges: lines(exchanges) };
}

/** Deletes every queue and exchange of a namespace (listed with rabbitmqctl, deleted over AMQP). */
export async function deleteNamespace(namespace: string): Promise<void> {
  const { queues, exchanges } = await namespaceObjects(namespace);
  if (queues.length === 0 && exchanges.length === 0) return;
  const connection = await amqp.connect(AMQP_URL);
  try {
    const channel = await connection.createChannel();
    for (const q of queues) await channel.deleteQueue(q);
    for (const e of exchanges) await channel.deleteExchange(e);
    await channel.close();
  } finally {
    await connection.close();
  }
}

/** Messages currently in a queue (0 when it does not exist). */
export async function queueDepth(queue: string): Promise<number> {
  const connection = await amqp.connect(AMQP_URL);
  try {
    const channel = await connection.createChannel();
    channel.on('error', () => {});
    try {
      return (await channel.checkQueue(queue)).messageCount;
    } catch {
      return 0;
    }
  } finally {
    await connection.close().catch(() => {});
  }
}

/** Closes, from the broker's side, every connection whose client-provided name is `name`. */
export async function closeConnectionByName(name: string): Promise<number> {
  const out = await rabbitmqctl(['list_connections', 'pid', 'client_properties', '--quiet', '--no-table-headers']);
  const marker = `{"connection_name","${name}"}`;
  const pids = out
    .split('\n')
    .filter((line) => line.includes(marker))
    .map((line) => line.split('\t')[0]!.trim());
  for (const pid of pids) {
    await rabbitmqctl(['close_connection', pid, 'closed by the client test']);
  }
  return pids.length;
}

export interface Service {
  baseUrl: string;
  port: number;
  /** COMMUNICATION_SERVICE_TOKEN of this process. */
  token: string;
  namespace: string;
  databaseUrl: string;
  /** The process's recent stderr/stdout, for failure messages. */
  logs(): string;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export interface StartOptions {
  /** `all` (intake + worker, the default) or `serve` (intake only). */
  command?: 'all' | 'serve';
  env?: Record<string, string>;
}

export async function startService(options: StartOptions = {}): Promise<Service> {
  const bin = serviceBinary();
  const suffix = randomUUID().replaceAll('-', '').slice(0, 16);
  const dbName = `test_ts_${suffix}`;
  const namespace = `test-ts-${suffix}`;
  const token = `svc_${randomBytes(24).toString('hex')}`;
  const port = await freePort();
  const databaseUrl = await createDatabase(dbName);
  let output = '';
  const child = spawn(bin, [options.command ?? 'all'], {
    env: {
      PATH: process.env.PATH ?? '',
      RUST_LOG: process.env.RUST_LOG ?? 'warn',
      DATABASE_URL: databaseUrl,
      REDIS_URL,
      AMQP_URL,
      ENCRYPTION_SECRET: randomBytes(32).toString('base64'),
      COMMUNICATION_SERVICE_TOKEN: token,
      COMMUNICATION_LISTEN_ADDR: `127.0.0.1:${port}`,
      COMMUNICATION_NAMESPACE: namespace,
      COMMUNICATION_DB_POOL_SIZE: '4',
      COMMUNICATION_RETRY_BASE_MS: '200',
      COMMUNICATION_RETRY_MAX_MS: '1000',
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-20_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    running.delete(child);
    const problems: unknown[] = [];
    await dropDatabase(dbName).catch((e) => problems.push(e));
    await deleteNamespace(namespace).catch((e) => problems.push(e));
    if (problems.length > 0) throw new AggregateError(problems, `cleanup of ${namespace} failed`);
  };

  const baseUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  try {
    for (;;) {
      if (child.exitCode !== null) {
        throw new Error(`the service exited with ${child.exitCode} before it was ready:\n${output}`);
      }
      const ready = await fetch(`${baseUrl}/readyz`).then((r) => r.ok, () => false);
      if (ready) break;
      if (Date.now() > deadline) throw new Error(`the service was not ready within 60 s:\n${output}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  } catch (e) {
    await stop().catch(() => {});
    throw e;
  }
  return { baseUrl, port, token, namespace, databaseUrl, logs: () => output, stop };
}

/**
 * Gives `tenant` a `system` provider (behaviour `deliver`) on both channels, created through the
 * API with the service token, so its messages reach `sent` without any third party.
 */
export async function provisionTenant(service: Service, tenant: string): Promise<{ sms: string; email: string }> {
  const ids: Record<string, string> = {};
  for (const channel of ['sms', 'email'] as const) {
    const response = await fetch(`${service.baseUrl}/v1/providers`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${service.token}`,
        'x-tenant-id': tenant,
        'content-type': 'application/json',
      },
      body: JSON.stringify({ name: `system-${channel}`, channel, kind: 'system', config: { behavior: 'deliver' } }),
    });
    const body = (await response.json()) as { id?: string };
    if (response.status !== 201 || !body.id) {
      throw new Error(`creating the ${channel} system provider answered ${response.status}: ${JSON.stringify(body)}`);
    }
    ids[channel] = body.id;
  }
  return { sms: ids.sms!, email: ids.email! };
}

/** A tenant id unique to one test. */
export function uniqueTenant(prefix = 'ts'): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}
