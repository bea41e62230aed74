// Direct publishing against the real broker and service: a published envelope reaches `sent`,
// an invalid one never reaches the queue, a returned (unroutable) one is a failure, and after
// the broker closes the publisher's connection it reconnects without losing a confirmed message.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import amqp from 'amqplib';
import { CommunicationClient } from '../../src/index.ts';
import {
  createPublisher,
  MessageValidationError,
  PublishRejectedError,
  type Publisher,
  type PublisherEvent,
} from '../../src/amqp/index.ts';
import {
  AMQP_URL,
  closeConnectionByName,
  deleteNamespace,
  provisionTenant,
  startService,
  uniqueTenant,
  type Service,
} from '../harness/service.ts';

let service: Service;
let tenant: string;
let client: CommunicationClient;
const publishers: Publisher[] = [];

before(async () => {
  service = await startService();
  tenant = uniqueTenant();
  await provisionTenant(service, tenant);
  client = new CommunicationClient({ baseUrl: service.baseUrl, token: service.token, tenantId: tenant });
});
after(async () => {
  for (const p of publishers) await p.close();
  await service?.stop();
});

async function publisher(options: Partial<Parameters<typeof createPublisher>[0]> = {}): Promise<Publisher> {
  const p = await createPublisher({ url: AMQP_URL, namespace: service.namespace, ...options });
  publishers.push(p);
  return p;
}

test('a published envelope reaches sent', async () => {
  const p = await publisher();
  const id = await p.publish({
    tenantId: tenant,
    channel: 'sms',
    to: '+14155550100',
    content: { text: 'Your code is 161803' },
    idempotencyKey: `signin-${randomUUID()}`,
    metadata: { attempt: 'la-1' },
    ttlSeconds: 300,
  });
  assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7/);
  const message = await client.waitForStatus(id, 'sent', { timeoutMs: 30_000 });
  assert.equal(message.to, '+14155550100');
  assert.deepEqual(message.metadata, { attempt: 'la-1' });
  assert.equal(message.ttl_seconds, 300);
});

test('an invalid message is refused before publishing: nothing reaches the queue', async () => {
  // A private queue bound like the service's work queue sees every routed sms send.
  const connection = await amqp.connect(AMQP_URL);
  try {
    const channel = await connection.createChannel();
    const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
    await channel.bindQueue(queue, `${service.namespace}.send`, 'sms');
    const p = await publisher();
    await assert.rejects(
      p.publish({ tenantId: tenant, channel: 'sms', to: '555-0100', content: { text: 'Your code is 1', subject: 'no' } }),
      (e: unknown) =>
        e instanceof MessageValidationError &&
        JSON.stringify(e.errors.map((x) => x.field)) === JSON.stringify(['to', 'content.subject']),
    );
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await channel.checkQueue(queue)).messageCount, 0, 'the invalid message was published');
    // The same queue does see a valid one, so the zero above means something.
    await p.publish({ tenantId: tenant, channel: 'sms', to: '+14155550100', content: { text: 'Your code is 2' } });
    const deadline = Date.now() + 5_000;
    while ((await channel.checkQueue(queue)).messageCount === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal((await channel.checkQueue(queue)).messageCount, 1);
  } finally {
    await connection.close();
  }
});

test('a message the broker returns (no queue bound) is a failure, not a confirm', async (t) => {
  const namespace = `test-ts-noqueue-${randomUUID().slice(0, 8)}`;
  const connection = await amqp.connect(AMQP_URL);
  const channel = await connection.createChannel();
  await channel.assertExchange(`${namespace}.send`, 'direct', { durable: false, autoDelete: false });
  await connection.close();
  t.after(() => deleteNamespace(namespace));
  const p = await publisher({ namespace });
  await assert.rejects(
    p.publish({ tenantId: tenant, channel: 'email', to: 'ada@example.com', content: { subject: 'Hi', text: 'x' } }),
    (e: unknown) => e instanceof PublishRejectedError && e.replyCode === 312,
  );
});

test('a namespace without the service topology fails at createPublisher', async () => {
  await assert.rejects(
    createPublisher({ url: AMQP_URL, namespace: `test-ts-missing-${randomUUID().slice(0, 8)}` }),
    /exchange test-ts-missing-.*\.send does not exist/,
  );
});

test('after the broker closes its connection the publisher reconnects and loses no confirmed message', async (t) => {
  const connectionName = `ts-client-test ${randomUUID()}`;
  const events: PublisherEvent[] = [];
  const p = await publisher({ connectionName, onEvent: (e) => events.push(e), reconnect: { baseDelayMs: 50, maxDelayMs: 500 } });
  const streamTenant = uniqueTenant('stream');
  await provisionTenant(service, streamTenant);
  // Publish a steady stream; close the connection from the broker's side after 30 messages
  // (rabbitmqctl takes a second or two) and keep publishing until 50 more went out after that.
  const results: Array<Promise<string>> = [];
  let closed: number | undefined;
  let closedAt = 0;
  for (let i = 0; closed === undefined || i < closedAt + 50; i++) {
    results.push(p.publish({ tenantId: streamTenant, channel: 'sms', to: '+14155550100', content: { text: `Stream message ${i}` } }));
    if (i === 30) {
      void closeConnectionByName(connectionName).then(
        (n) => {
          closed = n;
          closedAt = results.length;
        },
        (e: unknown) => {
          closed = -1;
          console.error(e);
        },
      );
    }
    await new Promise((r) => setTimeout(r, 10));
    assert.ok(i < 5_000, 'rabbitmqctl never returned');
  }
  const total = results.length;
  t.diagnostic(`published ${total}; events: ${JSON.stringify(events.map((e) => ({ ...e, error: undefined })))}`);
  const settled = await Promise.allSettled(results);
  const confirmed = settled.filter((s): s is PromiseFulfilledResult<string> => s.status === 'fulfilled').map((s) => s.value);
  const failures = settled.filter((s) => s.status === 'rejected').map((s) => String((s as PromiseRejectedResult).reason));
  assert.equal(closed, 1, 'rabbitmqctl closed the publisher connection');
  assert.ok(p.connections >= 2, `connections: ${p.connections}`);
  assert.ok(events.some((e) => e.type === 'disconnected'));
  assert.deepEqual(failures, [], 'every message was confirmed in the end (republished after the reconnection)');
  assert.equal(new Set(confirmed).size, total);

  const streamClient = new CommunicationClient({ baseUrl: service.baseUrl, token: service.token, tenantId: streamTenant });
  const deadline = Date.now() + 90_000;
  let sent = new Set<string>();
  while (Date.now() < deadline) {
    sent = new Set<string>();
    for await (const m of streamClient.listMessages({ status: 'sent', limit: 200 })) sent.add(m.id);
    if (confirmed.every((id) => sent.has(id))) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  const missing = confirmed.filter((id) => !sent.has(id));
  assert.deepEqual(missing, [], `${missing.length} confirmed messages never reached sent`);
  let all = 0;
  for await (const _ of streamClient.listMessages({ limit: 200 })) all += 1;
  assert.equal(all, total, 'a republished message was recorded once');
});
