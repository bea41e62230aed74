// The manager examples run as documented (`npx tsx examples/manager/auth/….ts` with
// COMMUNICATION_URL, COMMUNICATION_TOKEN, COMMUNICATION_TENANT) and their messages reach sent;
// running one again for the same login attempt or verification sends nothing new.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { randomUUID } from 'node:crypto';
import { CommunicationClient } from '../../src/index.ts';
import { PACKAGE_ROOT, provisionTenant, startService, uniqueTenant, type Service } from '../harness/service.ts';

const execFileAsync = promisify(execFile);

let service: Service;
let tenant: string;
let client: CommunicationClient;

before(async () => {
  service = await startService();
  tenant = uniqueTenant('manager');
  await provisionTenant(service, tenant);
  client = new CommunicationClient({ baseUrl: service.baseUrl, token: service.token, tenantId: tenant });
});
after(() => service?.stop());

async function runExample(file: string, args: string[], extraEnv: Record<string, string> = {}): Promise<{ id: string; idempotencyKey: string; replayed: boolean }> {
  const { stdout } = await execFileAsync('npx', ['tsx', file, ...args], {
    cwd: PACKAGE_ROOT,
    env: {
      ...process.env,
      COMMUNICATION_URL: service.baseUrl,
      COMMUNICATION_TOKEN: service.token,
      COMMUNICATION_TENANT: tenant,
      ...extraEnv,
    },
    timeout: 60_000,
  });
  return JSON.parse(stdout.trim().split('\n').pop()!);
}

test('auth/phone.ts sends a sign-in code by SMS that reaches sent, once per login attempt', async () => {
  const attempt = `la-${randomUUID()}`;
  const code = '424242';
  const first = await runExample('examples/manager/auth/phone.ts', ['+14155550142', attempt], { SIGN_IN_CODE: code });
  assert.equal(first.idempotencyKey, `sign-in-sms:${attempt}`);
  const message = await client.waitForStatus(first.id, 'sent', { timeoutMs: 30_000 });
  assert.equal(message.channel, 'sms');
  assert.equal(message.to, '+14155550142');
  assert.equal(message.ttl_seconds, 300);
  assert.deepEqual(message.metadata, { purpose: 'sign-in', login_attempt_id: attempt });
  // The same attempt again (a double click): the same message, not a second SMS.
  const again = await runExample('examples/manager/auth/phone.ts', ['+14155550142', attempt], { SIGN_IN_CODE: code });
  assert.equal(again.id, first.id);
  assert.equal(again.replayed, true);
});

test('auth/email.ts sends a verification email that reaches sent, once per verification', async () => {
  const verification = `ver-${randomUUID()}`;
  const first = await runExample('examples/manager/auth/email.ts', ['ada@example.com', verification]);
  assert.equal(first.idempotencyKey, `verify-email:${verification}`);
  const message = await client.waitForStatus(first.id, 'sent', { timeoutMs: 30_000 });
  assert.equal(message.channel, 'email');
  assert.equal(message.to, 'ada@example.com');
  const again = await runExample('examples/manager/auth/email.ts', ['ada@example.com', verification]);
  assert.equal(again.id, first.id);
  assert.equal(again.replayed, true);
});
