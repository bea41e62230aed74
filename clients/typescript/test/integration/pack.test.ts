// The published artefact works: `npm pack` builds a tarball holding the compiled entry points
// and declarations, a fresh project installs it (`npm install <tarball>`), type-checks against
// both entry points without Node types for the HTTP one, and sends through the real service
// with plain Node (HTTP and direct publish).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { CommunicationClient } from '../../src/index.ts';
import { AMQP_URL, PACKAGE_ROOT, provisionTenant, startService, uniqueTenant, type Service } from '../harness/service.ts';

const run = promisify(execFile);

let service: Service;
let tenant: string;
let workdir: string;

before(async () => {
  workdir = await mkdtemp(path.join(tmpdir(), 'communication-client-pack-'));
  service = await startService();
  tenant = uniqueTenant('pack');
  await provisionTenant(service, tenant);
});
after(async () => {
  await service?.stop();
  if (workdir) await rm(workdir, { recursive: true, force: true });
});

test('the packed tarball installs into a fresh project and works from there', async () => {
  const { stdout: packed } = await run('npm', ['pack', '--json', '--pack-destination', workdir], { cwd: PACKAGE_ROOT, timeout: 120_000 });
  const [info] = JSON.parse(packed.slice(packed.indexOf('['))) as Array<{ filename: string; files: Array<{ path: string }> }>;
  const files = info!.files.map((f) => f.path);
  for (const f of ['package.json', 'README.md', 'dist/index.js', 'dist/index.d.ts', 'dist/amqp/index.js', 'dist/amqp/index.d.ts']) {
    assert.ok(files.includes(f), `${f} missing from the tarball`);
  }
  assert.deepEqual(files.filter((f) => !f.startsWith('dist/') && !['package.json', 'README.md'].includes(f)), []);
  const tarball = path.join(workdir, path.basename(info!.filename));

  const app = path.join(workdir, 'app');
  await run('mkdir', ['-p', app]);
  await writeFile(path.join(app, 'package.json'), JSON.stringify({ name: 'manager-app', private: true, type: 'module' }));
  await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball], { cwd: app, timeout: 180_000 });

  // Declarations: both entry points resolve through `exports`; the HTTP one needs no Node types.
  await writeFile(
    path.join(app, 'check.ts'),
    `import { CommunicationClient, CommunicationError, type SendMessage } from '@logicspike/communication-client';
const message: SendMessage = { channel: 'sms', to: '+14155550100', content: { text: 'hi' } };
const client = new CommunicationClient({ baseUrl: 'https://x', token: 't' });
void client.send(message).catch((e: unknown) => e instanceof CommunicationError && e.errors.map((x) => x.field));
// @ts-expect-error a channel the API does not have
const wrong: SendMessage = { channel: 'fax', to: 'x', content: {} };
void wrong;
`,
  );
  await writeFile(
    path.join(app, 'check-amqp.ts'),
    `import { createPublisher, type PublishMessage } from '@logicspike/communication-client/amqp';
const m: PublishMessage = { tenantId: 'acme', channel: 'sms', to: '+14155550100', content: { text: 'hi' } };
void createPublisher({ url: 'amqp://x', namespace: 'n' }).then((p) => p.publish(m));
`,
  );
  const tsc = path.join(PACKAGE_ROOT, 'node_modules/typescript/bin/tsc');
  const strict = ['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--skipLibCheck'];
  // The fresh project has no @types/node, so check.ts is compiled with web types only.
  await run(process.execPath, [tsc, ...strict, '--lib', 'es2022,dom', 'check.ts'], { cwd: app }).catch((e: { stdout: string }) =>
    assert.fail(`check.ts: ${e.stdout}`),
  );
  await run(process.execPath, [tsc, ...strict, '--lib', 'es2022', 'check-amqp.ts'], { cwd: app }).catch((e: { stdout: string }) =>
    assert.fail(`check-amqp.ts: ${e.stdout}`),
  );

  // Plain Node, compiled JavaScript, both entry points.
  await writeFile(
    path.join(app, 'main.mjs'),
    `import { CommunicationClient } from '@logicspike/communication-client';
import { createPublisher } from '@logicspike/communication-client/amqp';
const env = process.env;
const client = new CommunicationClient({ baseUrl: env.COMMUNICATION_URL, token: env.COMMUNICATION_TOKEN, tenantId: env.COMMUNICATION_TENANT });
const http = await client.send({ channel: 'email', to: 'ada@example.com', content: { subject: 'Hello', text: 'From the tarball' } });
const publisher = await createPublisher({ url: env.AMQP_URL, namespace: env.COMMUNICATION_NAMESPACE });
const queued = await publisher.publish({ tenantId: env.COMMUNICATION_TENANT, channel: 'sms', to: '+14155550100', content: { text: 'From the tarball' } });
await publisher.close();
console.log(JSON.stringify({ http: http.id, amqp: queued }));
`,
  );
  const { stdout } = await run(process.execPath, ['main.mjs'], {
    cwd: app,
    timeout: 60_000,
    env: {
      ...process.env,
      COMMUNICATION_URL: service.baseUrl,
      COMMUNICATION_TOKEN: service.token,
      COMMUNICATION_TENANT: tenant,
      COMMUNICATION_NAMESPACE: service.namespace,
      AMQP_URL,
    },
  });
  const ids = JSON.parse(stdout.trim()) as { http: string; amqp: string };
  const client = new CommunicationClient({ baseUrl: service.baseUrl, token: service.token, tenantId: tenant });
  await client.waitForStatus(ids.http, 'sent', { timeoutMs: 30_000 });
  await client.waitForStatus(ids.amqp, 'sent', { timeoutMs: 30_000 });
});
