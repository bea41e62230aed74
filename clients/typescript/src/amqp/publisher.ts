// Direct publishing to `{ns}.send` over one confirm channel (amqplib). A publish resolves with
// the message id only after the broker confirmed it and did not return it; while the
// connection is down, unconfirmed messages wait and are published again on the next
// connection (the worker sends the same id once, so a repeat cannot become a second message).

import amqplib from 'amqplib';
import type { ChannelModel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import { randomUUID } from 'node:crypto';
import { backoffDelay } from '../retry.js';
import { buildEnvelope, type PublishMessage } from './envelope.js';

export interface PublisherOptions {
  /** `amqp://user:pass@host:5672/vhost`. */
  url: string;
  /** The service's COMMUNICATION_NAMESPACE (default `communication`). */
  namespace?: string;
  /** Shown by the broker (`connection_name`); default `communication-client publisher <id>`. */
  connectionName?: string;
  /** How long a publish may wait for its confirm, reconnections included (default 30 000 ms). */
  publishTimeoutMs?: number;
  /** Delay between reconnection attempts: full jitter, doubling up to the cap. */
  reconnect?: { baseDelayMs?: number; maxDelayMs?: number };
  /** Connection life-cycle notifications (for logs and metrics). */
  onEvent?: (event: PublisherEvent) => void;
}

export type PublisherEvent =
  | { type: 'connected'; connections: number; republished: number }
  | { type: 'disconnected'; error?: unknown }
  | { type: 'reconnect-failed'; attempt: number; error: unknown };

export interface Publisher {
  /**
   * Validates, builds and publishes a send. Resolves with the message id once the broker
   * confirmed it; rejects with a MessageValidationError (nothing was published), a
   * PublishRejectedError (returned as unroutable, or nacked), a PublishTimeoutError or a
   * PublisherClosedError.
   */
  publish(message: PublishMessage): Promise<string>;
  /** Waits briefly for outstanding confirms, then closes; later publishes are refused. */
  close(): Promise<void>;
  /** How many connections were made (1 + reconnections). */
  readonly connections: number;
  /** Messages waiting for a confirm. */
  readonly pending: number;
}

/** The broker refused the message: returned (no queue bound for its channel) or nacked. */
export class PublishRejectedError extends Error {
  override readonly name = 'PublishRejectedError';
  constructor(
    message: string,
    readonly messageId: string,
    readonly replyCode?: number,
  ) {
    super(message);
  }
}

/** No confirm within `publishTimeoutMs`; the message may or may not have reached the broker. */
export class PublishTimeoutError extends Error {
  override readonly name = 'PublishTimeoutError';
  constructor(readonly messageId: string, timeoutMs: number) {
    super(`message ${messageId} was not confirmed within ${timeoutMs} ms; republish it with the same id to be sure`);
  }
}

export class PublisherClosedError extends Error {
  override readonly name = 'PublisherClosedError';
  constructor(readonly messageId?: string) {
    super(messageId ? `the publisher closed before message ${messageId} was confirmed` : 'the publisher is closed');
  }
}

interface Pending {
  id: string;
  routingKey: string;
  body: Buffer;
  headers: Record<string, string> | undefined;
  resolve: (id: string) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
  /** The channel of the latest attempt; confirms from older channels are ignored. */
  sentOn?: ConfirmChannel;
  returned?: { replyCode: number; replyText: string };
}

class AmqpPublisher implements Publisher {
  readonly #url: string;
  readonly #exchange: string;
  readonly #connectionName: string;
  readonly #publishTimeoutMs: number;
  readonly #reconnect: { maxAttempts: number; baseDelayMs: number; maxDelayMs: number };
  readonly #onEvent: (event: PublisherEvent) => void;
  readonly #pending = new Map<string, Pending>();
  readonly #deadChannels = new WeakSet<ConfirmChannel>();
  #connection: ChannelModel | undefined;
  #channel: ConfirmChannel | undefined;
  #reconnecting = false;
  #closed = false;
  #connections = 0;

  constructor(options: PublisherOptions) {
    this.#url = options.url;
    this.#exchange = `${options.namespace ?? 'communication'}.send`;
    this.#connectionName = options.connectionName ?? `communication-client publisher ${randomUUID().slice(0, 8)}`;
    this.#publishTimeoutMs = options.publishTimeoutMs ?? 30_000;
    this.#reconnect = {
      maxAttempts: Number.MAX_SAFE_INTEGER,
      baseDelayMs: options.reconnect?.baseDelayMs ?? 100,
      maxDelayMs: options.reconnect?.maxDelayMs ?? 5_000,
    };
    this.#onEvent = options.onEvent ?? (() => {});
  }

  get connections(): number {
    return this.#connections;
  }

  get pending(): number {
    return this.#pending.size;
  }

  /** Opens a connection and a confirm channel, checks the exchange, republishes what waits. */
  async connect(): Promise<void> {
    const connection = await amqplib.connect(this.#url, {
      clientProperties: { connection_name: this.#connectionName },
    });
    connection.on('error', () => {}); // 'close' follows and carries the consequence
    let channel: ConfirmChannel;
    try {
      channel = await connection.createConfirmChannel();
      channel.on('error', () => {});
      // Fails (and closes the channel) when the service never declared its topology here.
      await channel.checkExchange(this.#exchange).catch((e: unknown) => {
        throw new Error(
          `exchange ${this.#exchange} does not exist: start the service with this COMMUNICATION_NAMESPACE first (${String(e)})`,
        );
      });
    } catch (e) {
      await connection.close().catch(() => {});
      throw e;
    }
    channel.on('return', (message: ConsumeMessage) => this.#returned(message));
    channel.on('close', () => {
      this.#deadChannels.add(channel);
      // A channel closed on its own (e.g. by a channel error): start over with a new connection.
      if (this.#channel === channel) void connection.close().catch(() => {});
    });
    connection.on('close', (error?: unknown) => this.#lost(connection, error));
    if (this.#closed) {
      await connection.close().catch(() => {});
      throw new PublisherClosedError();
    }
    this.#connection = connection;
    this.#channel = channel;
    this.#connections += 1;
    const waiting = [...this.#pending.values()];
    for (const p of waiting) this.#send(p);
    this.#onEvent({ type: 'connected', connections: this.#connections, republished: waiting.length });
  }

  async publish(message: PublishMessage): Promise<string> {
    if (this.#closed) throw new PublisherClosedError();
    const envelope = buildEnvelope(message);
    if (this.#pending.has(envelope.id)) throw new Error(`message ${envelope.id} is already being published`);
    return new Promise<string>((resolve, reject) => {
      const pending: Pending = {
        id: envelope.id,
        routingKey: envelope.channel,
        body: Buffer.from(JSON.stringify(envelope)),
        headers: message.traceparent ? { traceparent: message.traceparent } : undefined,
        resolve,
        reject,
        timer: setTimeout(() => this.#settle(pending, new PublishTimeoutError(pending.id, this.#publishTimeoutMs)), this.#publishTimeoutMs),
      };
      this.#pending.set(pending.id, pending);
      this.#send(pending);
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const deadline = Date.now() + 5_000;
    while (this.#pending.size > 0 && this.#channel && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const p of [...this.#pending.values()]) this.#settle(p, new PublisherClosedError(p.id));
    const connection = this.#connection;
    this.#connection = undefined;
    this.#channel = undefined;
    await connection?.close().catch(() => {});
  }

  /** Publishes on the current channel; without one, the message waits for the reconnection. */
  #send(p: Pending): void {
    const channel = this.#channel;
    if (!channel || this.#deadChannels.has(channel)) return;
    p.sentOn = channel;
    p.returned = undefined;
    try {
      channel.publish(
        this.#exchange,
        p.routingKey,
        p.body,
        {
          persistent: true,
          contentType: 'application/json',
          mandatory: true,
          messageId: p.id,
          ...(p.headers ? { headers: p.headers } : {}),
        },
        (error: unknown) => this.#confirm(p, channel, error),
      );
    } catch {
      // The channel is closing; the next connection republishes this message.
    }
  }

  #confirm(p: Pending, channel: ConfirmChannel, error: unknown): void {
    if (p.sentOn !== channel || this.#pending.get(p.id) !== p) return;
    if (!error) {
      if (p.returned) {
        this.#settle(
          p,
          new PublishRejectedError(
            `message ${p.id} was returned by the broker (${p.returned.replyCode} ${p.returned.replyText}): no queue is bound to ${this.#exchange} for ${p.routingKey}`,
            p.id,
            p.returned.replyCode,
          ),
        );
      } else {
        this.#settle(p);
      }
      return;
    }
    // amqplib reports a nack and a lost channel the same way; the channel's own 'close' has
    // been handled by the next turn of the event loop, so tell them apart there.
    setImmediate(() => {
      if (this.#pending.get(p.id) !== p || p.sentOn !== channel) return;
      if (this.#deadChannels.has(channel)) return; // republished on the next connection
      this.#settle(p, new PublishRejectedError(`message ${p.id} was nacked by the broker`, p.id));
    });
  }

  #returned(message: ConsumeMessage): void {
    const id = message.properties.messageId as string | undefined;
    const p = id ? this.#pending.get(id) : undefined;
    if (p) {
      const fields = message.fields as unknown as { replyCode: number; replyText: string };
      p.returned = { replyCode: fields.replyCode, replyText: fields.replyText };
    }
  }

  #settle(p: Pending, error?: Error): void {
    if (this.#pending.get(p.id) !== p) return;
    this.#pending.delete(p.id);
    clearTimeout(p.timer);
    if (error) p.reject(error);
    else p.resolve(p.id);
  }

  #lost(connection: ChannelModel, error: unknown): void {
    if (this.#connection !== connection) return;
    if (this.#channel) this.#deadChannels.add(this.#channel);
    this.#connection = undefined;
    this.#channel = undefined;
    if (this.#closed) return;
    this.#onEvent({ type: 'disconnected', error });
    void this.#reconnectLoop();
  }

  async #reconnectLoop(): Promise<void> {
    if (this.#reconnecting) return;
    this.#reconnecting = true;
    try {
      for (let attempt = 1; !this.#closed; attempt++) {
        await new Promise((r) => setTimeout(r, backoffDelay(attempt, this.#reconnect)));
        if (this.#closed) return;
        try {
          await this.connect();
          return;
        } catch (error) {
          this.#onEvent({ type: 'reconnect-failed', attempt, error });
        }
      }
    } finally {
      this.#reconnecting = false;
    }
  }
}

/**
 * Connects to the broker and returns a publisher for the service running with `namespace`.
 * Fails at once if the broker is unreachable or the namespace's `{ns}.send` exchange is missing.
 */
export async function createPublisher(options: PublisherOptions): Promise<Publisher> {
  const publisher = new AmqpPublisher(options);
  await publisher.connect();
  return publisher;
}
