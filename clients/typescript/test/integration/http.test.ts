// The HTTP client against the real service (`communication all`, fresh database and namespace,
// a `system` provider that delivers): a send reaches `sent`, a 422 carries the service's field
// errors, and a send that meets 503s is retried under one Idempotency-Key and recorded once.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { CommunicationClient, CommunicationError } from '../../src/index.ts';
import { provisionTenant, query, startService, uniqueTenant, type Service } from '../harness/service.ts';

let service: Service;
let tenant: string;
let client: CommunicationClient;

before(async () => {
  service = await startService();
  tenant = uniqueTenant();
  await provisionTenant(service, tenant);
  client = new CommunicationClient({ baseUrl: service.baseUrl, token: service.token, tenantId: tenant });
});
after(() => service?.stop());

test('an SMS and an email reach sent', async () => {
  const sms = await client.send({ channel: 'sms', to: '+14155550100', content: { text: 'Your code is 481516' }, ttl_seconds: 300 });
  assert.equal(sms.status, 'queued');
  const email = await client.send({
    channel: 'email',
    to: 'ada@example.com',
    content: { subject: 'Verify your address', text: 'Click the link', html: '<p>Click the link</p>' },
    metadata: { purpose: 'verify' },
  });
  const sent = await client.waitForStatus(sms.id, 'sent', { timeoutMs: 30_000 });
  assert.equal(sent.channel, 'sms');
  assert.equal(sent.to, '+14155550100');
  assert.equal(sent.idempotency_key, sms.idempotencyKey);
  const sentEmail = await client.waitForStatus(email.id, 'sent', { timeoutMs: 30_000 });
  assert.equal(sentEmail.to, 'ada@example.com');
  const listed: string[] = [];
  for await (const m of client.listMessages({ status: 'sent', limit: 1 })) listed.push(m.id);
  assert.deepEqual(listed.sort(), [sms.id, email.id].sort(), 'listMessages walks both one-item pages');
});

test('a 422 surfaces the field errors', async () => {
  const error = await client.send({ channel: 'sms', to: '4155550100', content: { subject: 'x' } }).then(
    () => assert.fail('an invalid send was accepted'),
    (e: unknown) => e,
  );
  assert.ok(error instanceof CommunicationError, String(error));
  assert.equal(error.status, 422);
  assert.equal(error.code, 'validation_failed');
  assert.deepEqual(error.errors.map((e) => e.field).sort(), ['content.subject', 'content.text', 'to']);
  assert.match(error.errors.find((e) => e.field === 'to')!.message, /E\.164/);
});

/** A proxy in front of the service whose first answers to POST /v1/send are scripted. */
async function flakyProxy(target: string): Promise<{ url: string; keys: string[]; server: Server }> {
  const keys: string[] = [];
  const readBody = async (req: IncomingMessage) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  };
  const server = createServer(async (req, res) => {
    const body = await readBody(req);
    const forward = () =>
      fetch(`${target}${req.url}`, {
        method: req.method,
        headers: Object.fromEntries(
          Object.entries(req.headers).filter(([k]) => !['host', 'connection', 'content-length'].includes(k)) as [string, string][],
        ),
        body: req.method === 'GET' ? undefined : body,
      });
    if (req.method === 'POST' && req.url === '/v1/send') {
      keys.push(String(req.headers['idempotency-key']));
      const unavailable = () => {
        res.writeHead(503, { 'content-type': 'application/problem+json', 'retry-after': '0' });
        res.end(JSON.stringify({ status: 503, code: 'dependency_unavailable', detail: 'the message broker is unavailable; try again shortly' }));
      };
      if (keys.length === 1) return unavailable();
      if (keys.length === 2) {
        // The service accepts this one, but its answer is lost on the way back.
        await forward();
        return unavailable();
      }
    }
    const upstream = await forward();
    const headers: Record<string, string> = {};
    upstream.headers.forEach((v, k) => {
      if (k !== 'content-length' && k !== 'transfer-encoding') headers[k] = v;
    });
    res.writeHead(upstream.status, headers);
    res.end(Buffer.from(await upstream.arrayBuffer()));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return { url: `http://127.0.0.1:${port}`, keys, server };
}

test('a 503 is retried with the same Idempotency-Key and the service records exactly one message', async (t) => {
  const proxy = await flakyProxy(service.baseUrl);
  t.after(() => new Promise<void>((resolve) => proxy.server.close(() => resolve())));
  const viaProxy = new CommunicationClient({ baseUrl: proxy.url, token: service.token, tenantId: tenant, retry: { baseDelayMs: 10, maxDelayMs: 50 } });
  const result = await viaProxy.send({ channel: 'sms', to: '+14155550111', content: { text: 'Your code is 271828' } });
  assert.equal(proxy.keys.length, 3, 'two 503s, then the answer');
  assert.equal(new Set(proxy.keys).size, 1, `keys seen: ${proxy.keys.join(', ')}`);
  assert.equal(proxy.keys[0], result.idempotencyKey);
  assert.equal(result.replayed, true, 'the third attempt is a replay of the second, which the service accepted');
  await client.waitForStatus(result.id, 'sent', { timeoutMs: 30_000 });
  const rows = await query<{ id: string }>(service.databaseUrl, 'SELECT id::text FROM message_logs WHERE tenant_id = $1 AND idempotency_key = $2', [
    tenant,
    result.idempotencyKey,
  ]);
  assert.deepEqual(rows.map((r) => r.id), [result.id]);
});
