// The envelope a direct publisher builds: version 1, a UUID v7 id, RFC 3339 created_at, the
// contract's field names, and the service's rules applied before anything is published.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { buildEnvelope, uuidv7, MessageValidationError } from '../../src/amqp/index.ts';
import { PACKAGE_ROOT } from '../harness/service.ts';

const schema = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, '../../docs/envelope.schema.json'), 'utf8')) as {
  required: string[];
  properties: Record<string, unknown>;
};

test('uuidv7 carries the time, version 7 and the RFC variant', () => {
  const now = Date.parse('2026-11-25T10:00:00.123Z');
  const id = uuidv7(now);
  assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(parseInt(id.replace(/-/g, '').slice(0, 12), 16), now);
  assert.notEqual(uuidv7(now), id);
});

test('a full envelope has exactly the contract fields', () => {
  const now = new Date('2026-11-25T10:00:00Z');
  const envelope = buildEnvelope(
    {
      tenantId: 'acme',
      channel: 'sms',
      to: '+14155550100',
      content: { text: 'Your code is 481516' },
      idempotencyKey: 'signin-7781',
      providerId: '0192f6c2-3a5e-7c3e-9b1a-1a2b3c4d5e6f',
      metadata: { order: 'A-1001' },
      ttlSeconds: 300,
      priority: 'high',
    },
    now,
  );
  const { id, ...rest } = envelope;
  assert.match(id, /^[0-9a-f-]{36}$/);
  assert.deepEqual(rest, {
    version: 1,
    tenant_id: 'acme',
    channel: 'sms',
    to: '+14155550100',
    content: { text: 'Your code is 481516' },
    idempotency_key: 'signin-7781',
    provider_id: '0192f6c2-3a5e-7c3e-9b1a-1a2b3c4d5e6f',
    metadata: { order: 'A-1001' },
    ttl_seconds: 300,
    priority: 'high',
    created_at: '2026-11-25T10:00:00.000Z',
  });
  for (const field of schema.required) assert.ok(field in envelope, `required ${field} missing`);
  for (const field of Object.keys(envelope)) {
    assert.ok(field in schema.properties || field === 'priority', `${field} is not in docs/envelope.schema.json`);
  }
});

test('optional fields are left out, not sent as null', () => {
  const envelope = buildEnvelope({ tenantId: 'acme', channel: 'email', to: 'ada@example.com', content: { subject: 'Hi', text: 'x' } });
  assert.deepEqual(Object.keys(envelope).sort(), ['channel', 'content', 'created_at', 'id', 'tenant_id', 'to', 'version']);
});

test('an invalid message is refused with every field error', () => {
  assert.throws(
    () =>
      buildEnvelope({
        tenantId: 'acme shop',
        channel: 'sms',
        to: '4155550100',
        content: { text: '', html: '<p>' },
        ttlSeconds: 0,
        id: 'nope',
      }),
    (e: unknown) =>
      e instanceof MessageValidationError &&
      JSON.stringify(e.errors.map((x) => x.field)) ===
        JSON.stringify(['id', 'tenant_id', 'to', 'content.text', 'content.html', 'ttl_seconds']),
  );
});
