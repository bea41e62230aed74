// CommunicationClient: the service's HTTP API over `fetch` only, so one build runs on
// Cloudflare Workers (global fetch or a service binding), Node ≥ 20, Deno and browsers.
// No Node built-ins, no runtime dependencies.

import {
  CommunicationError,
  CommunicationNetworkError,
  CommunicationTimeoutError,
} from './errors.js';
import { backoffDelay, DEFAULT_RETRY, shouldRetryStatus, type RetryMode, type RetryOptions } from './retry.js';
import type {
  Message,
  MessageFilter,
  MessagePage,
  MessageStatus,
  Provider,
  ProviderCheck,
  ProviderCreate,
  ProviderKindList,
  ProviderList,
  ProviderPatch,
  SendAccepted,
  SendMessage,
} from './types.js';

/** The `fetch` signature the client calls. */
export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

/** Anything with a `fetch` method, e.g. a Workers service binding (`env.COMMUNICATION`). */
export interface Fetcher {
  fetch(input: string, init: RequestInit): Promise<Response>;
}

export interface CommunicationClientOptions {
  /** The service's base URL. With a service binding any URL will do, e.g. `https://communication`. */
  baseUrl: string;
  /** The service token (with `tenantId`) or a tenant API key. */
  token: string;
  /** Sent as `X-Tenant-Id`; needed with the service token, not with a tenant API key. */
  tenantId?: string;
  /**
   * Global `fetch` when absent. For a Workers service binding pass the binding itself
   * (`fetch: env.COMMUNICATION`) or its bound method
   * (`env.COMMUNICATION.fetch.bind(env.COMMUNICATION)`): workerd refuses a Fetcher's method
   * called without its object ("Illegal invocation"). Any fetch-compatible function works
   * (tests, proxies).
   */
  fetch?: FetchLike | Fetcher;
  /** Overall deadline of one call, retries included (default 30 000 ms). */
  timeoutMs?: number;
  /** Retry schedule of calls that may be repeated. */
  retry?: RetryOptions;
}

export interface CallOptions {
  signal?: AbortSignal;
  /** Overrides the client's `timeoutMs` for this call. */
  timeoutMs?: number;
}

export interface SendOptions extends CallOptions {
  /**
   * Makes the send replay-safe: the same key and body give the same message id. Generated
   * (a random UUID) when absent, and kept across the client's own retries either way.
   */
  idempotencyKey?: string;
}

export interface SendResult {
  id: SendAccepted['id'];
  status: SendAccepted['status'];
  /** The Idempotency-Key the send used (generated when none was given). */
  idempotencyKey: string;
  /** True when the service answered with an earlier send's id (`Idempotent-Replayed`). */
  replayed: boolean;
}

export interface WaitOptions extends CallOptions {
  /** Poll interval (default 250 ms). */
  intervalMs?: number;
}

/** Statuses a message never leaves (`sent` may still become delivered/undelivered/bounced). */
export const FINAL_STATUSES: ReadonlySet<MessageStatus> = new Set([
  'delivered',
  'undelivered',
  'bounced',
  'failed',
  'expired',
  'suppressed',
]);

interface RequestSpec {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  path: string;
  query?: URLSearchParams;
  body?: unknown;
  headers?: Record<string, string>;
  /** Statuses that are success. */
  ok: number[];
  mode: RetryMode;
  /** Also retry these (status, code) answers, e.g. a send whose key is still in flight. */
  retryAlso?: (error: CommunicationError) => boolean;
  options?: CallOptions;
}

const DEFAULT_TIMEOUT_MS = 30_000;

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function randomKey(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (!c?.randomUUID) throw new Error('crypto.randomUUID is not available; pass idempotencyKey');
  return c.randomUUID();
}

export class CommunicationClient {
  readonly #baseUrl: string;
  readonly #token: string;
  readonly #tenantId: string | undefined;
  readonly #fetch: FetchLike;
  readonly #timeoutMs: number;
  readonly #retry: Required<RetryOptions>;

  constructor(options: CommunicationClientOptions) {
    if (!options.baseUrl) throw new TypeError('baseUrl is required');
    if (!options.token) throw new TypeError('token is required');
    this.#baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.#token = options.token;
    this.#tenantId = options.tenantId;
    const f = options.fetch;
    if (f === undefined) {
      this.#fetch = (input, init) => globalThis.fetch(input, init);
    } else if (typeof f === 'function') {
      // Called detached (no `this`), like the global fetch; a bound method works as is.
      this.#fetch = (input, init) => f(input, init);
    } else {
      this.#fetch = (input, init) => f.fetch(input, init);
    }
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#retry = { ...DEFAULT_RETRY, ...options.retry };
  }

  /**
   * Accepts a message for delivery: `{id, status: "queued"}` once the service's broker confirmed
   * it. Retries network errors, 408, 429, 502, 503 and 504 with the same Idempotency-Key, so a
   * retry never becomes a second message; a validation error (422) is thrown at once.
   */
  async send(message: SendMessage, options: SendOptions = {}): Promise<SendResult> {
    const idempotencyKey = options.idempotencyKey ?? randomKey();
    const { body, response } = await this.#request<SendAccepted>({
      method: 'POST',
      path: '/v1/send',
      body: message,
      headers: { 'idempotency-key': idempotencyKey },
      ok: [202],
      mode: 'idempotent',
      retryAlso: (e) => e.status === 409 && e.code === 'idempotency_key_in_flight',
      options,
    });
    return {
      id: body.id,
      status: body.status,
      idempotencyKey,
      replayed: response.headers.get('idempotent-replayed') === 'true',
    };
  }

  /** A message with its status and events (`queued` while only accepted). */
  async getMessage(id: string, options: CallOptions = {}): Promise<Message> {
    const { body } = await this.#request<Message>({
      method: 'GET',
      path: `/v1/messages/${encodeURIComponent(id)}`,
      ok: [200],
      mode: 'idempotent',
      options,
    });
    return body;
  }

  /** One page of messages, newest first; pass `next_cursor` back as `cursor` for the next. */
  async listMessagesPage(filter: MessageFilter & { cursor?: string } = {}, options: CallOptions = {}): Promise<MessagePage> {
    const query = new URLSearchParams();
    const put = (name: string, value: string | number | Date | undefined) => {
      if (value === undefined) return;
      query.set(name, value instanceof Date ? value.toISOString() : String(value));
    };
    put('status', filter.status);
    put('channel', filter.channel);
    put('provider_id', filter.providerId);
    put('to', filter.to);
    put('since', filter.since);
    put('until', filter.until);
    put('limit', filter.limit);
    put('cursor', filter.cursor);
    const { body } = await this.#request<MessagePage>({
      method: 'GET',
      path: '/v1/messages',
      query,
      ok: [200],
      mode: 'idempotent',
      options,
    });
    return body;
  }

  /** Every message matching `filter`, newest first, fetching pages (cursor) as it goes. */
  async *listMessages(filter: MessageFilter = {}, options: CallOptions = {}): AsyncGenerator<Message, void, undefined> {
    let cursor: string | undefined;
    do {
      const page = await this.listMessagesPage({ ...filter, cursor }, options);
      for (const item of page.items) yield item as Message;
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
  }

  /**
   * Polls a message until its status is one of `statuses`. Throws a CommunicationTimeoutError
   * after `timeoutMs` (default 30 s), and an UnexpectedStatusError as soon as the message is in
   * a final status that is not wanted (a `failed` message will never become `sent`). A 404 is
   * waited out too: a message published straight to the queue exists only once a worker
   * recorded it.
   */
  async waitForStatus(
    id: string,
    statuses: MessageStatus | readonly MessageStatus[],
    options: WaitOptions = {},
  ): Promise<Message> {
    const wanted = new Set<string>(typeof statuses === 'string' ? [statuses] : statuses);
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    const deadline = Date.now() + timeoutMs;
    const interval = options.intervalMs ?? 250;
    let last: Message | undefined;
    for (;;) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new CommunicationTimeoutError(
          `message ${id} was not ${[...wanted].join(' or ')} within ${timeoutMs} ms (last status: ${last?.status ?? 'not recorded yet'})`,
        );
      }
      const signal = options.signal;
      try {
        last = await this.getMessage(id, { signal, timeoutMs: remaining });
      } catch (e) {
        // A message published straight to the queue is unknown until a worker records it.
        if (!(e instanceof CommunicationError && e.status === 404)) throw e;
        last = undefined;
      }
      if (last && wanted.has(last.status)) return last;
      if (last && FINAL_STATUSES.has(last.status as MessageStatus)) throw new UnexpectedStatusError(last);
      await sleep(Math.min(interval, Math.max(0, deadline - Date.now())), signal);
    }
  }

  /** Creates a provider for the tenant; secrets in `config` are encrypted by the service. */
  async createProvider(provider: ProviderCreate, options: CallOptions = {}): Promise<Provider> {
    const { body } = await this.#request<Provider>({
      method: 'POST',
      path: '/v1/providers',
      body: provider,
      ok: [201],
      mode: 'unsafe',
      options,
    });
    return body;
  }

  /** The tenant's providers (and the platform's), in priority order; secrets masked. */
  async listProviders(options: CallOptions = {}): Promise<ProviderList['items']> {
    const { body } = await this.#request<ProviderList>({
      method: 'GET',
      path: '/v1/providers',
      ok: [200],
      mode: 'idempotent',
      options,
    });
    return body.items;
  }

  async getProvider(id: string, options: CallOptions = {}): Promise<Provider> {
    const { body } = await this.#request<Provider>({
      method: 'GET',
      path: `/v1/providers/${encodeURIComponent(id)}`,
      ok: [200],
      mode: 'idempotent',
      options,
    });
    return body;
  }

  /** Changes some of `name`, `priority`, `enabled`, `config` (config fields are merged). */
  async updateProvider(id: string, patch: ProviderPatch, options: CallOptions = {}): Promise<Provider> {
    const { body } = await this.#request<Provider>({
      method: 'PATCH',
      path: `/v1/providers/${encodeURIComponent(id)}`,
      body: patch,
      ok: [200],
      mode: 'idempotent',
      options,
    });
    return body;
  }

  async deleteProvider(id: string, options: CallOptions = {}): Promise<void> {
    await this.#request<undefined>({
      method: 'DELETE',
      path: `/v1/providers/${encodeURIComponent(id)}`,
      ok: [204],
      mode: 'idempotent',
      options,
    });
  }

  /**
   * Checks a provider's credentials; with `sendTo`, also sends a short test message through
   * the pipeline, pinned to this provider. Not retried except on 429 (a repeat could send twice).
   */
  async testProvider(id: string, test: { sendTo?: string } = {}, options: CallOptions = {}): Promise<ProviderCheck> {
    const { body } = await this.#request<ProviderCheck>({
      method: 'POST',
      path: `/v1/providers/${encodeURIComponent(id)}/test`,
      body: test.sendTo === undefined ? {} : { send_to: test.sendTo },
      ok: [200],
      mode: 'unsafe',
      options,
    });
    return body;
  }

  /** Every provider kind with its channels and the fields of its settings form. */
  async providerKinds(options: CallOptions = {}): Promise<ProviderKindList> {
    const { body } = await this.#request<ProviderKindList>({
      method: 'GET',
      path: '/v1/provider-kinds',
      ok: [200],
      mode: 'idempotent',
      options,
    });
    return body;
  }

  /**
   * One call: attempts until success, a non-retryable answer, `maxAttempts`, or the overall
   * deadline. Each attempt is aborted when the deadline passes or the caller's signal fires.
   */
  async #request<T>(spec: RequestSpec): Promise<{ body: T; response: Response }> {
    const timeoutMs = spec.options?.timeoutMs ?? this.#timeoutMs;
    const signal = spec.options?.signal;
    const deadline = Date.now() + timeoutMs;
    const url = `${this.#baseUrl}${spec.path}${spec.query && [...spec.query].length > 0 ? `?${spec.query}` : ''}`;
    const headers: Record<string, string> = {
      accept: 'application/json',
      authorization: `Bearer ${this.#token}`,
      ...(this.#tenantId ? { 'x-tenant-id': this.#tenantId } : {}),
      ...(spec.body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...spec.headers,
    };
    const payload = spec.body === undefined ? undefined : JSON.stringify(spec.body);
    let lastError: unknown;
    for (let attempt = 1; ; attempt++) {
      signal?.throwIfAborted();
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw this.#timedOut(spec, timeoutMs, lastError);
      const controller = new AbortController();
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        controller.abort();
      }, remaining);
      const forward = () => controller.abort(signal?.reason);
      signal?.addEventListener('abort', forward, { once: true });
      let retryAfterMs: number | undefined;
      try {
        const response = await this.#fetch(url, {
          method: spec.method,
          headers,
          body: payload,
          signal: controller.signal,
        });
        if (spec.ok.includes(response.status)) {
          const text = await response.text();
          return { body: (text ? JSON.parse(text) : undefined) as T, response };
        }
        const error = await CommunicationError.fromResponse(response);
        if (!shouldRetryStatus(response.status, spec.mode) && !spec.retryAlso?.(error)) throw error;
        lastError = error;
        retryAfterMs = error.retryAfterMs;
      } catch (e) {
        if (e instanceof CommunicationError) throw e;
        if (signal?.aborted) throw signal.reason;
        if (timedOut) throw this.#timedOut(spec, timeoutMs, lastError ?? e);
        if (e instanceof SyntaxError) throw e;
        if (e instanceof TypeError && /illegal invocation/i.test(e.message)) {
          // workerd: a Fetcher's method called without its object. Retrying cannot help.
          throw new TypeError(
            'the injected fetch lost its binding: pass the service binding itself ' +
              '(fetch: env.COMMUNICATION) or a bound method (env.COMMUNICATION.fetch.bind(env.COMMUNICATION))',
            { cause: e },
          );
        }
        lastError = new CommunicationNetworkError(`${spec.method} ${spec.path} failed: ${describe(e)}`, { cause: e });
        if (spec.mode !== 'idempotent') throw lastError;
      } finally {
        clearTimeout(timer);
        signal?.removeEventListener('abort', forward);
      }
      if (attempt >= this.#retry.maxAttempts) throw lastError;
      const delay = backoffDelay(attempt, this.#retry, retryAfterMs);
      // Waiting past the deadline is pointless: report the real failure now.
      if (Date.now() + delay >= deadline) throw lastError;
      await sleep(delay, signal);
    }
  }

  #timedOut(spec: RequestSpec, timeoutMs: number, lastError: unknown): CommunicationTimeoutError {
    return new CommunicationTimeoutError(`${spec.method} ${spec.path} got no answer within ${timeoutMs} ms`, lastError);
  }
}

/** `waitForStatus` saw the message reach a final status other than the ones it waited for. */
export class UnexpectedStatusError extends Error {
  override readonly name = 'UnexpectedStatusError';
  /** The message as last read. */
  readonly current: Message;
  constructor(current: Message) {
    super(`message ${current.id} is ${current.status}${current.last_error ? ` (${current.last_error})` : ''}`);
    this.current = current;
  }
}

function describe(e: unknown): string {
  if (e instanceof Error) {
    const cause = (e as { cause?: unknown }).cause;
    return cause instanceof Error ? `${e.message} (${cause.message})` : e.message;
  }
  return String(e);
}
