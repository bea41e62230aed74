// CommunicationClient against a scripted fake fetch: what goes on the wire, what is retried
// (and with which Idempotency-Key), what is not, deadlines, pagination, waiting.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CommunicationClient,
  CommunicationError,
  CommunicationNetworkError,
  CommunicationTimeoutError,
  UnexpectedStatusError,
  parseRetryAfter,
  type FetchLike,
  type SendMessage,
} from '../../src/index.ts';
import { backoffDelay, DEFAULT_RETRY } from '../../src/retry.ts';

interface Seen {
  url: URL;
  method: string;
  headers: Headers;
  body: unknown;
}

type Step = Response | Error | ((seen: Seen, signal: AbortSignal | undefined) => Response | Promise<Response>);

/** A fetch that answers with `steps` in order (the last one repeats) and records every call. */
function scripted(...steps: Step[]): { fetch: FetchLike; calls: Seen[] } {
  const calls: Seen[] = [];
  const fetch: FetchLike = async (input, init) => {
    const seen: Seen = {
      url: new URL(input),
      method: init.method ?? 'GET',
      headers: new Headers(init.headers),
      body: typeof init.body === 'string' ? JSON.parse(init.body) : undefined,
    };
    calls.push(seen);
    const step = steps[Math.min(calls.length - 1, steps.length - 1)]!;
    if (step instanceof Error) throw step;
    if (step instanceof Response) return step.clone();
    return step(seen, init.signal ?? undefined);
  };
  return { fetch, calls };
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });
const problem = (status: number, code: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify({ type: 'about:blank', title: 'x', status, code, detail: `${code} detail`, ...extra }), {
    status,
    headers: { 'content-type': 'application/problem+json', ...headers },
  });
const accepted = (id = '0192f6c2-3a5e-7c3e-9b1a-1a2b3c4d5e6f') => json(202, { id, status: 'queued' });

const sms: SendMessage = { channel: 'sms', to: '+14155550100', content: { text: 'Your code is 123456' } };
const fast = { baseDelayMs: 1, maxDelayMs: 5 };

function client(fetch: FetchLike, extra: Partial<ConstructorParameters<typeof CommunicationClient>[0]> = {}) {
  return new CommunicationClient({ baseUrl: 'https://communication.test/', token: 'svc-token', tenantId: 'acme', fetch, retry: fast, ...extra });
}

test('send posts the message with the credentials, the tenant and a generated Idempotency-Key', async () => {
  const { fetch, calls } = scripted(accepted());
  const result = await client(fetch).send(sms);
  assert.equal(calls.length, 1);
  const call = calls[0]!;
  assert.equal(call.method, 'POST');
  assert.equal(call.url.href, 'https://communication.test/v1/send');
  assert.equal(call.headers.get('authorization'), 'Bearer svc-token');
  assert.equal(call.headers.get('x-tenant-id'), 'acme');
  assert.equal(call.headers.get('content-type'), 'application/json');
  assert.match(call.headers.get('idempotency-key') ?? '', /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.deepEqual(call.body, sms);
  assert.deepEqual(result, {
    id: '0192f6c2-3a5e-7c3e-9b1a-1a2b3c4d5e6f',
    status: 'queued',
    idempotencyKey: call.headers.get('idempotency-key'),
    replayed: false,
  });
});

test('a given Idempotency-Key is sent as is and a replay is reported', async () => {
  const { fetch, calls } = scripted(json(202, { id: 'm1', status: 'queued' }, { 'idempotent-replayed': 'true' }));
  const result = await client(fetch).send(sms, { idempotencyKey: 'signin-7781' });
  assert.equal(calls[0]!.headers.get('idempotency-key'), 'signin-7781');
  assert.equal(result.replayed, true);
  assert.equal(result.idempotencyKey, 'signin-7781');
});

test('without a tenant id no X-Tenant-Id header is sent (tenant API key)', async () => {
  const { fetch, calls } = scripted(accepted());
  await new CommunicationClient({ baseUrl: 'https://c.test', token: 'k', fetch }).send(sms);
  assert.equal(calls[0]!.headers.has('x-tenant-id'), false);
});

test('408, 429, 502, 503, 504 and network errors are retried with the same Idempotency-Key', async () => {
  const { fetch, calls } = scripted(
    problem(408, 'timeout'),
    problem(429, 'rate_limited', {}, { 'retry-after': '0' }),
    problem(502, 'bad_gateway'),
    problem(503, 'dependency_unavailable', {}, { 'retry-after': '0' }),
    problem(504, 'gateway_timeout'),
    new TypeError('fetch failed'),
    accepted('m-after-retries'),
  );
  const result = await client(fetch).send(sms);
  assert.equal(result.id, 'm-after-retries');
  assert.equal(calls.length, 7);
  const keys = new Set(calls.map((c) => c.headers.get('idempotency-key')));
  assert.equal(keys.size, 1, 'every attempt carries the same key');
  assert.equal(result.idempotencyKey, [...keys][0]);
});

test('a send still in flight under its key (409 idempotency_key_in_flight) is retried', async () => {
  const { fetch, calls } = scripted(problem(409, 'idempotency_key_in_flight'), accepted('m1'));
  assert.equal((await client(fetch).send(sms)).id, 'm1');
  assert.equal(calls.length, 2);
});

test('Retry-After is honoured', async () => {
  const { fetch, calls } = scripted(problem(503, 'dependency_unavailable', {}, { 'retry-after': '1' }), accepted());
  const started = Date.now();
  await client(fetch).send(sms);
  assert.equal(calls.length, 2);
  assert.ok(Date.now() - started >= 990, `waited only ${Date.now() - started} ms`);
});

test('a 422 is thrown at once with the field errors of the problem body', async () => {
  const errors = [
    { field: 'to', message: "must be an E.164 number starting with '+', like +14155550100" },
    { field: 'content.text', message: 'is required for sms' },
  ];
  const { fetch, calls } = scripted(problem(422, 'validation_failed', { detail: '2 fields are invalid', errors }));
  const error = await client(fetch).send(sms).then(
    () => assert.fail('resolved'),
    (e: unknown) => e,
  );
  assert.ok(error instanceof CommunicationError);
  assert.equal(error.status, 422);
  assert.equal(error.code, 'validation_failed');
  assert.equal(error.detail, '2 fields are invalid');
  assert.deepEqual(error.errors, errors);
  assert.equal(calls.length, 1);
});

test('other 4xx and 500 are never retried', async () => {
  for (const [status, code] of [
    [400, 'bad_request'],
    [401, 'unauthorized'],
    [403, 'forbidden'],
    [404, 'not_found'],
    [409, 'idempotency_key_reused'],
    [413, 'payload_too_large'],
    [500, 'internal_error'],
  ] as const) {
    const { fetch, calls } = scripted(problem(status, code), accepted());
    await assert.rejects(client(fetch).send(sms), (e: unknown) => e instanceof CommunicationError && e.status === status && e.code === code);
    assert.equal(calls.length, 1, `${status} was retried`);
  }
});

test('a body that is not problem+json still becomes a CommunicationError', async () => {
  const { fetch } = scripted(new Response('<html>bad gateway</html>', { status: 418, statusText: "I'm a teapot" }));
  await assert.rejects(client(fetch).send(sms), (e: unknown) => e instanceof CommunicationError && e.status === 418 && e.code === 'http_418');
});

test('retries stop at the overall deadline with the last failure', async () => {
  const { fetch, calls } = scripted(problem(503, 'dependency_unavailable'));
  const started = Date.now();
  await assert.rejects(
    client(fetch, { timeoutMs: 300, retry: { baseDelayMs: 20, maxDelayMs: 40, maxAttempts: 1000 } }).send(sms),
    (e: unknown) => e instanceof CommunicationError && e.status === 503,
  );
  assert.ok(calls.length > 2, `only ${calls.length} attempts`);
  assert.ok(Date.now() - started < 1000);
  assert.equal(new Set(calls.map((c) => c.headers.get('idempotency-key'))).size, 1);
});

test('a Retry-After beyond the deadline ends the call at once instead of waiting', async () => {
  const { fetch, calls } = scripted(problem(503, 'dependency_unavailable', {}, { 'retry-after': '60' }));
  const started = Date.now();
  await assert.rejects(client(fetch, { timeoutMs: 2_000 }).send(sms), (e: unknown) => e instanceof CommunicationError && e.status === 503);
  assert.equal(calls.length, 1);
  assert.ok(Date.now() - started < 500);
});

test('maxAttempts bounds the attempts', async () => {
  const { fetch, calls } = scripted(new TypeError('fetch failed'));
  await assert.rejects(client(fetch, { retry: { ...fast, maxAttempts: 3 } }).send(sms), CommunicationNetworkError);
  assert.equal(calls.length, 3);
});

test('a request that hangs past the deadline is aborted with a CommunicationTimeoutError', async () => {
  const hang = (_: Seen, signal: AbortSignal | undefined) =>
    new Promise<Response>((_resolve, reject) => signal?.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError'))));
  const { fetch } = scripted(hang);
  const started = Date.now();
  await assert.rejects(client(fetch, { timeoutMs: 200 }).send(sms), CommunicationTimeoutError);
  assert.ok(Date.now() - started < 1000);
});

test("the caller's signal aborts the call and its retries", async () => {
  const { fetch, calls } = scripted(problem(503, 'dependency_unavailable', {}, { 'retry-after': '1' }));
  const controller = new AbortController();
  setTimeout(() => controller.abort(new Error('caller gave up')), 100);
  await assert.rejects(client(fetch).send(sms, { signal: controller.signal }), /caller gave up/);
  assert.equal(calls.length, 1);
});

test('creating a provider is not repeated after a network error or a 503, only after a 429', async () => {
  const body = { name: 'p', channel: 'sms' as const, kind: 'system', config: { behavior: 'deliver' } };
  for (const step of [new TypeError('fetch failed'), problem(503, 'dependency_unavailable', {}, { 'retry-after': '0' })]) {
    const { fetch, calls } = scripted(step, json(201, { id: 'p1' }));
    await assert.rejects(client(fetch).createProvider(body));
    assert.equal(calls.length, 1);
  }
  const { fetch, calls } = scripted(problem(429, 'rate_limited', {}, { 'retry-after': '0' }), json(201, { id: 'p1' }));
  assert.equal((await client(fetch).createProvider(body)).id, 'p1');
  assert.equal(calls.length, 2);
});

test('provider calls use the documented paths and bodies', async () => {
  const { fetch, calls } = scripted(
    json(200, { items: [{ id: 'p1' }] }),
    json(200, { id: 'p/1' }),
    json(200, { id: 'p1', enabled: false }),
    new Response(null, { status: 204 }),
    json(200, { id: 'p1', ok: true }),
    json(200, { id: 'p1', ok: true }),
    json(200, { items: [{ kind: 'system' }] }),
  );
  const c = client(fetch);
  assert.deepEqual(await c.listProviders(), [{ id: 'p1' }]);
  await c.getProvider('p/1');
  await c.updateProvider('p1', { enabled: false });
  assert.equal(await c.deleteProvider('p1'), undefined);
  await c.testProvider('p1', { sendTo: '+14155550100' });
  await c.testProvider('p1');
  assert.deepEqual(await c.providerKinds(), { items: [{ kind: 'system' }] });
  assert.deepEqual(
    calls.map((c) => [c.method, c.url.pathname, c.body]),
    [
      ['GET', '/v1/providers', undefined],
      ['GET', '/v1/providers/p%2F1', undefined],
      ['PATCH', '/v1/providers/p1', { enabled: false }],
      ['DELETE', '/v1/providers/p1', undefined],
      ['POST', '/v1/providers/p1/test', { send_to: '+14155550100' }],
      ['POST', '/v1/providers/p1/test', {}],
      ['GET', '/v1/provider-kinds', undefined],
    ],
  );
});

test('listMessages walks every page by cursor and passes the filters', async () => {
  const { fetch, calls } = scripted(
    json(200, { items: [{ id: 'a' }, { id: 'b' }], next_cursor: 'c1' }),
    json(200, { items: [{ id: 'c' }], next_cursor: 'c2' }),
    json(200, { items: [], next_cursor: null }),
  );
  const ids: string[] = [];
  const since = new Date('2026-11-25T10:00:00Z');
  const filter = { status: 'sent', channel: 'sms', providerId: 'p1', to: '+14155550100', since, limit: 2 } as const;
  for await (const m of client(fetch).listMessages(filter)) ids.push(m.id);
  assert.deepEqual(ids, ['a', 'b', 'c']);
  assert.equal(calls.length, 3);
  const q = calls.map((c) => Object.fromEntries(c.url.searchParams));
  assert.deepEqual(q[0], {
    status: 'sent',
    channel: 'sms',
    provider_id: 'p1',
    to: '+14155550100',
    since: '2026-11-25T10:00:00.000Z',
    limit: '2',
  });
  // The recipient's `+` travels encoded (a bare `+` would arrive as a space).
  assert.match(calls[0]!.url.search, /to=%2B14155550100/);
  assert.equal(q[1]!.cursor, 'c1');
  assert.equal(q[2]!.cursor, 'c2');
});

test('waitForStatus polls until the status is reached', async () => {
  const { fetch, calls } = scripted(
    json(200, { id: 'm1', status: 'queued' }),
    json(200, { id: 'm1', status: 'sending' }),
    json(200, { id: 'm1', status: 'sent' }),
  );
  const m = await client(fetch).waitForStatus('m1', ['sent', 'delivered'], { intervalMs: 5 });
  assert.equal(m.status, 'sent');
  assert.equal(calls.length, 3);
  assert.equal(calls[0]!.url.pathname, '/v1/messages/m1');
});

test('waitForStatus stops at a final status it was not waiting for, and at its timeout', async () => {
  const failed = scripted(json(200, { id: 'm1', status: 'failed', last_error: 'invalid number' }));
  await assert.rejects(
    client(failed.fetch).waitForStatus('m1', 'sent', { intervalMs: 5 }),
    (e: unknown) => e instanceof UnexpectedStatusError && e.current.status === 'failed' && /invalid number/.test(e.message),
  );
  const queued = scripted(json(200, { id: 'm1', status: 'queued' }));
  await assert.rejects(client(queued.fetch).waitForStatus('m1', 'sent', { timeoutMs: 100, intervalMs: 10 }), CommunicationTimeoutError);
});

test('a fetcher object (a Workers service binding) is called as a method', async () => {
  const calls: string[] = [];
  const binding = {
    marker: 'binding',
    async fetch(this: { marker: string }, input: string) {
      calls.push(`${this.marker} ${input}`);
      return accepted();
    },
  };
  await new CommunicationClient({ baseUrl: 'https://communication', token: 't', fetch: binding }).send(sms);
  assert.deepEqual(calls, ['binding https://communication/v1/send']);
});

test('backoff is full jitter under a doubling, capped ceiling, and never below Retry-After', () => {
  const opts = { ...DEFAULT_RETRY, baseDelayMs: 100, maxDelayMs: 1000 };
  assert.equal(backoffDelay(1, opts, undefined, () => 0.999999), 99);
  assert.equal(backoffDelay(3, opts, undefined, () => 0.999999), 399);
  assert.equal(backoffDelay(10, opts, undefined, () => 0.999999), 999);
  assert.equal(backoffDelay(10, opts, undefined, () => 0), 0);
  assert.equal(backoffDelay(1, opts, 2000, () => 0.5), 2000);
});

test('Retry-After is read as seconds or as an HTTP date', () => {
  assert.equal(parseRetryAfter('3'), 3000);
  assert.equal(parseRetryAfter(null), undefined);
  assert.equal(parseRetryAfter('soon'), undefined);
  const now = Date.parse('2026-12-01T12:00:00Z');
  assert.equal(parseRetryAfter('Tue, 01 Dec 2026 12:00:05 GMT', now), 5000);
});
