// The same client code inside workerd (Miniflare runs the real runtime from npm): bundled
// for Workers with no Node built-ins, it sends through the real service both with the global
// fetch and through a service binding (`env.COMMUNICATION`, or its bound fetch method).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { build } from 'esbuild';
import { Miniflare } from 'miniflare';
import { PACKAGE_ROOT, provisionTenant, startService, uniqueTenant, type Service } from '../harness/service.ts';

let service: Service;
let tenant: string;
let mf: Miniflare | undefined;
let bundle: { code: string; inputs: string[] };

before(async () => {
  // The bundle is built exactly as a Workers project would: neutral platform (no Node
  // built-ins to fall back on), worker conditions.
  const result = await build({
    entryPoints: [path.join(PACKAGE_ROOT, 'test/workerd/worker.ts')],
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    conditions: ['workerd', 'worker', 'browser'],
    write: false,
    metafile: true,
    logLevel: 'silent',
  });
  bundle = { code: result.outputFiles[0]!.text, inputs: Object.keys(result.metafile.inputs) };
  service = await startService();
  tenant = uniqueTenant('workerd');
  await provisionTenant(service, tenant);
  mf = new Miniflare({
    modules: true,
    script: bundle.code,
    compatibilityDate: '2026-07-30',
    bindings: {
      COMMUNICATION_URL: service.baseUrl,
      COMMUNICATION_TOKEN: service.token,
      COMMUNICATION_TENANT: tenant,
    },
    serviceBindings: {
      COMMUNICATION: { external: { address: `127.0.0.1:${service.port}`, http: {} } },
    },
  });
  await mf.ready;
});
after(async () => {
  await mf?.dispose();
  await service?.stop();
});

test('the Workers bundle holds only the client, no Node modules', () => {
  assert.ok(bundle.inputs.some((i) => i.endsWith('src/client.ts')));
  const foreign = bundle.inputs.filter((i) => i.startsWith('node:') || i.includes('node_modules') || i.includes('/amqp/'));
  assert.deepEqual(foreign, []);
  assert.doesNotMatch(bundle.code, /from\s*["']node:|require\(/);
});

async function call(pathname: string): Promise<Record<string, unknown>> {
  const response = await mf!.dispatchFetch(`http://worker${pathname}`);
  const body = (await response.json()) as Record<string, unknown>;
  assert.equal(response.status, 200, JSON.stringify(body));
  return body;
}

test('inside workerd, a send with the global fetch reaches sent', async () => {
  const body = await call('/send');
  assert.equal(body.status, 'sent', JSON.stringify(body));
  assert.match(String(body.runtime), /Cloudflare-Workers/);
  assert.match(String(body.idempotencyKey), /^[0-9a-f-]{36}$/, 'crypto.randomUUID of the Workers runtime');
});

test('inside workerd, a send through the service binding (env.COMMUNICATION) reaches sent', async () => {
  const body = await call('/send?via=binding');
  assert.equal(body.status, 'sent', JSON.stringify(body));
});

test('inside workerd, a send through the bound env.COMMUNICATION.fetch reaches sent', async () => {
  const body = await call('/send?via=bound');
  assert.equal(body.status, 'sent', JSON.stringify(body));
});

test('inside workerd, a bare env.COMMUNICATION.fetch fails at once with the fix in the message', async () => {
  const started = Date.now();
  const response = await mf!.dispatchFetch('http://worker/send?via=unbound');
  const body = (await response.json()) as { error: string };
  assert.equal(response.status, 500);
  assert.match(body.error, /TypeError: the injected fetch lost its binding: pass the service binding itself/);
  assert.ok(Date.now() - started < 2_000, 'not retried');
});

test('inside workerd, a 422 arrives as a CommunicationError with field errors', async () => {
  const body = await call('/invalid?via=binding');
  assert.equal(body.error, 'CommunicationError');
  assert.equal(body.status, 422);
  assert.deepEqual((body.errors as Array<{ field: string }>).map((e) => e.field), ['to']);
});
