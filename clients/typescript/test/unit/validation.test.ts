// The mirrored validation rules, with the cases of the service's own unit tests
// (src/domain/recipient.rs, content.rs, message.rs, tenant.rs).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateSend } from '../../src/index.ts';
import { checkEmailAddress, checkPhoneNumber, checkTenantId } from '../../src/validation.ts';

const fields = (draft: Parameters<typeof validateSend>[0]) => validateSend(draft).map((e) => e.field);

test('email syntax as the service parses it', () => {
  for (const good of ['ada@example.com', 'ada.lovelace+otp@mail.example.co.uk', '  ada@example.com ', 'ada@bücher.de']) {
    assert.equal(checkEmailAddress(good), undefined, good);
  }
  for (const bad of ['', 'ada', 'ada@', '@example.com', 'ada@example', 'a da@example.com', 'ada@exa mple.com', 'ada@-x.com', 'ada..x@example.com', 'ada@example..com', '.ada@example.com', 'a<b@example.com', `${'a'.repeat(65)}@example.com`]) {
    assert.notEqual(checkEmailAddress(bad), undefined, `${bad} should be rejected`);
  }
});

test('E.164 numbers as the service parses them', () => {
  for (const good of ['+14155550100', '+447700900123', '+12345678']) assert.equal(checkPhoneNumber(good), undefined, good);
  for (const bad of ['14155550100', '+0155550100', '+1415555', '+1415555010012345', '+1 415 555 0100', '+1415abc0100', '+１４１５５５５０１００']) {
    assert.notEqual(checkPhoneNumber(bad), undefined, `${bad} should be rejected`);
  }
});

test('tenant ids', () => {
  assert.equal(checkTenantId('acme_shop-01'), undefined);
  assert.equal(checkTenantId('a'.repeat(64)), undefined);
  for (const bad of ['', 'a'.repeat(65), 'acme shop', 'acme/../x']) assert.notEqual(checkTenantId(bad), undefined, bad);
});

test('content per channel', () => {
  assert.deepEqual(fields({ channel: 'sms', to: '+14155550100', content: { text: 'hi' } }), []);
  assert.deepEqual(fields({ channel: 'sms', to: '+14155550100', content: { text: '  ' } }), ['content.text']);
  assert.deepEqual(fields({ channel: 'sms', to: '+14155550100', content: { text: 'x'.repeat(1601) } }), ['content.text']);
  assert.deepEqual(fields({ channel: 'sms', to: '+14155550100', content: { text: '€'.repeat(1600) } }), [], '1600 characters, not bytes');
  assert.deepEqual(fields({ channel: 'sms', to: '+14155550100', content: { text: 'hi', subject: '', html: '<p>' } }), ['content.subject', 'content.html']);
  assert.deepEqual(fields({ channel: 'email', to: 'ada@example.com', content: { subject: 'Hi', html: '<p>hi</p>' } }), []);
  assert.deepEqual(fields({ channel: 'email', to: 'ada@example.com', content: { text: 'hi' } }), ['content.subject']);
  assert.deepEqual(fields({ channel: 'email', to: 'ada@example.com', content: { subject: 'Hi' } }), ['content']);
  assert.deepEqual(fields({ channel: 'email', to: 'ada@example.com', content: { subject: 'a\nb', text: 'x' } }), ['content.subject']);
  assert.deepEqual(fields({ channel: 'email', to: 'ada@example.com', content: { subject: 'Hi', text: 'x'.repeat(256 * 1024 + 1) } }), ['content.text']);
  assert.deepEqual(fields({ channel: 'sms', to: '+14155550100', content: { text: 'hi', body: 'x' } }), ['content.body']);
  assert.deepEqual(fields({ channel: 'sms', to: '+14155550100', content: { text: 5 } }), ['content.text']);
});

test('the other fields of a send', () => {
  const ok = { tenant_id: 'acme', channel: 'sms', to: '+14155550100', content: { text: 'hi' } };
  assert.deepEqual(fields(ok), []);
  assert.deepEqual(fields({}), ['channel', 'to', 'content']);
  assert.deepEqual(fields({ ...ok, channel: 'fax' }), ['channel']);
  assert.deepEqual(fields({ ...ok, tenant_id: 'a b' }), ['tenant_id']);
  assert.deepEqual(fields({ ...ok, to: 'ada@example.com' }), ['to']);
  assert.deepEqual(fields({ ...ok, ttl_seconds: 0 }), ['ttl_seconds']);
  assert.deepEqual(fields({ ...ok, ttl_seconds: 604_801 }), ['ttl_seconds']);
  assert.deepEqual(fields({ ...ok, ttl_seconds: 1.5 }), ['ttl_seconds']);
  assert.deepEqual(fields({ ...ok, ttl_seconds: 604_800 }), []);
  assert.deepEqual(fields({ ...ok, metadata: [] }), ['metadata']);
  assert.deepEqual(fields({ ...ok, metadata: { blob: 'x'.repeat(8 * 1024) } }), ['metadata']);
  assert.deepEqual(fields({ ...ok, metadata: { order: 'A-1001' } }), []);
  assert.deepEqual(fields({ ...ok, idempotency_key: '' }), ['idempotency_key']);
  assert.deepEqual(fields({ ...ok, idempotency_key: 'k'.repeat(256) }), ['idempotency_key']);
  assert.deepEqual(fields({ ...ok, idempotency_key: 'a\u0007b' }), ['idempotency_key']);
  assert.deepEqual(fields({ ...ok, provider_id: 'not-a-uuid' }), ['provider_id']);
  assert.deepEqual(fields({ ...ok, provider_id: '0192f6c2-3a5e-7c3e-9b1a-1a2b3c4d5e6f' }), []);
  assert.deepEqual(fields({ ...ok, priority: 'urgent' }), ['priority']);
  assert.deepEqual(fields({ ...ok, priority: 'high' }), []);
});
