// The send envelope, version 1, exactly as docs/queue-contract.md and
// docs/envelope.schema.json define it, built from a publisher's camelCase message and checked
// with the service's own rules before it is published.

import { MessageValidationError, type FieldError } from '../errors.js';
import { isUuid, validateSend } from '../validation.js';

export const ENVELOPE_VERSION = 1;
/** The worker refuses envelopes larger than this before parsing them. */
export const MAX_ENVELOPE_BYTES = 1024 * 1024;

export type Channel = 'email' | 'sms';

export interface PublishContent {
  subject?: string;
  text?: string;
  html?: string;
}

/** What a direct publisher sends: the fields of `POST /v1/send` plus the tenant. */
export interface PublishMessage {
  tenantId: string;
  channel: Channel;
  /** An email address (email) or an E.164 number (sms). */
  to: string;
  /** Email needs `subject` and `text` and/or `html`; SMS needs `text` only. */
  content: PublishContent;
  /** The same (tenantId, idempotencyKey) is sent once. */
  idempotencyKey?: string;
  /** Pins one provider of the tenant (or the platform). */
  providerId?: string;
  /** A JSON object of at most 8 KiB, stored with the message. */
  metadata?: Record<string, unknown>;
  /** 1–604800: after created_at + ttlSeconds the message is expired, never sent. */
  ttlSeconds?: number;
  /** Lane hint; absent means normal. */
  priority?: 'high' | 'normal' | 'bulk';
  /** The message id; a fresh UUID v7 when absent. Reuse an id to republish the same message. */
  id?: string;
  /** W3C trace context to continue (`traceparent` header). */
  traceparent?: string;
}

/** The wire form (docs/envelope.schema.json). */
export interface EnvelopeV1 {
  version: 1;
  id: string;
  tenant_id: string;
  channel: Channel;
  to: string;
  content: PublishContent;
  idempotency_key?: string;
  provider_id?: string;
  metadata?: Record<string, unknown>;
  ttl_seconds?: number;
  priority?: 'high' | 'normal' | 'bulk';
  /** RFC 3339, UTC. */
  created_at: string;
}

/** A UUID version 7 (RFC 9562): 48 bits of Unix milliseconds, then random bits. */
export function uuidv7(now: number = Date.now()): string {
  const b = new Uint8Array(16);
  globalThis.crypto.getRandomValues(b);
  let ms = now;
  for (let i = 5; i >= 0; i--) {
    b[i] = ms % 256;
    ms = Math.floor(ms / 256);
  }
  b[6] = 0x70 | (b[6]! & 0x0f);
  b[8] = 0x80 | (b[8]! & 0x3f);
  const hex = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

/**
 * Builds and checks the envelope of `message`. Throws a MessageValidationError listing every
 * field the service would refuse (the worker would dead-letter such an envelope).
 */
export function buildEnvelope(message: PublishMessage, now: Date = new Date()): EnvelopeV1 {
  const envelope: EnvelopeV1 = {
    version: ENVELOPE_VERSION,
    id: message.id ?? uuidv7(now.getTime()),
    tenant_id: message.tenantId,
    channel: message.channel,
    to: message.to,
    content: message.content,
    created_at: now.toISOString(),
  };
  if (message.idempotencyKey !== undefined) envelope.idempotency_key = message.idempotencyKey;
  if (message.providerId !== undefined) envelope.provider_id = message.providerId;
  if (message.metadata !== undefined) envelope.metadata = message.metadata;
  if (message.ttlSeconds !== undefined) envelope.ttl_seconds = message.ttlSeconds;
  if (message.priority !== undefined) envelope.priority = message.priority;

  const errors: FieldError[] = validateSend({ ...envelope });
  if (typeof envelope.id !== 'string' || !isUuid(envelope.id)) errors.unshift({ field: 'id', message: 'must be a UUID' });
  if (message.traceparent !== undefined && !TRACEPARENT.test(message.traceparent)) {
    errors.push({ field: 'traceparent', message: 'must be a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)' });
  }
  if (errors.length === 0 && new TextEncoder().encode(JSON.stringify(envelope)).length > MAX_ENVELOPE_BYTES) {
    errors.push({ field: '', message: `the envelope is larger than ${MAX_ENVELOPE_BYTES} bytes` });
  }
  if (errors.length > 0) throw new MessageValidationError(errors);
  return envelope;
}
