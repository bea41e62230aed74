// The service's validation rules for a send, mirrored from src/domain (recipient.rs,
// content.rs, message.rs, tenant.rs) so a direct publisher can refuse a message the worker
// would dead-letter, before it is published. Field names and messages are the service's.
// Lengths are counted the way the Rust code counts them: `len()` is UTF-8 bytes, `chars()`
// is code points.

import type { FieldError } from './errors.js';

export const MAX_SUBJECT_CHARS = 998;
export const MAX_EMAIL_BODY_BYTES = 256 * 1024;
export const MAX_SMS_CHARS = 1600;
export const MAX_METADATA_BYTES = 8 * 1024;
export const MAX_TTL_SECONDS = 7 * 24 * 3600;
export const MAX_IDEMPOTENCY_KEY_CHARS = 255;
export const PRIORITIES = ['high', 'normal', 'bulk'] as const;

const encoder = new TextEncoder();
const bytes = (s: string) => encoder.encode(s).length;
const chars = (s: string) => [...s].length;
/** Rust's `str::trim`: Unicode White_Space at both ends. */
const trim = (s: string) => s.replace(/^\p{White_Space}+|\p{White_Space}+$/gu, '');
const blank = (s: string | null | undefined) => s === undefined || s === null || trim(s) === '';

/** `EmailAddress::parse`: the error message, or undefined when the address is acceptable. */
export function checkEmailAddress(input: string): string | undefined {
  const s = trim(input);
  if (s === '') return 'must not be empty';
  if (bytes(s) > 254) return 'must be at most 254 characters';
  const at = s.lastIndexOf('@');
  if (at < 0) return 'must be an email address like name@example.com';
  const local = s.slice(0, at);
  const domain = s.slice(at + 1);
  if (local === '' || bytes(local) > 64) return 'local part must be 1 to 64 characters';
  if (/[\p{White_Space}\p{Cc}<>(),;:\\"[\]@]/u.test(local)) {
    return 'local part contains a character that is not allowed';
  }
  if (local.startsWith('.') || local.endsWith('.') || local.includes('..')) return 'local part has a misplaced dot';
  const labels = domain.split('.');
  if (labels.length < 2) return 'domain must contain a dot';
  for (const label of labels) {
    if (label === '' || bytes(label) > 63) return 'domain has an empty or overlong label';
    if (label.startsWith('-') || label.endsWith('-')) return "domain label must not start or end with '-'";
    if (!/^[\p{Alphabetic}\p{N}-]+$/u.test(label)) return 'domain contains a character that is not allowed';
  }
  return undefined;
}

/** `PhoneNumber::parse` (E.164): the error message, or undefined when the number is acceptable. */
export function checkPhoneNumber(input: string): string | undefined {
  const s = trim(input);
  if (!s.startsWith('+')) return "must be an E.164 number starting with '+', like +14155550100";
  const digits = s.slice(1);
  if (bytes(digits) < 8 || bytes(digits) > 15) return "must have 8 to 15 digits after '+' (E.164)";
  if (!/^[0-9]+$/.test(digits)) return "must contain only digits after '+' (E.164)";
  if (digits.startsWith('0')) return 'country code must not start with 0 (E.164)';
  return undefined;
}

/** `TenantId::parse`. */
export function checkTenantId(s: string): string | undefined {
  if (s.length === 0 || bytes(s) > 64) return 'must be 1 to 64 characters';
  if (!/^[A-Za-z0-9_-]+$/.test(s)) return "may contain only letters, digits, '_' and '-'";
  return undefined;
}

/** `check_idempotency_key`. */
export function checkIdempotencyKey(key: string): string | undefined {
  if (key.length === 0 || chars(key) > MAX_IDEMPOTENCY_KEY_CHARS) {
    return `must be 1 to ${MAX_IDEMPOTENCY_KEY_CHARS} characters`;
  }
  if (/\p{Cc}/u.test(key)) return 'must not contain control characters';
  return undefined;
}

/** The forms `uuid::Uuid::parse_str` accepts: hyphenated, simple, braced and URN. */
export function isUuid(s: string): boolean {
  const hex = '[0-9a-fA-F]';
  const hyphenated = `${hex}{8}-${hex}{4}-${hex}{4}-${hex}{4}-${hex}{12}`;
  return new RegExp(`^(?:${hyphenated}|${hex}{32}|\\{${hyphenated}\\}|urn:uuid:${hyphenated})$`).test(s);
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `Content::check` plus the shape serde enforces (only subject, text and html, strings or null). */
export function checkContent(channel: 'email' | 'sms', content: unknown): FieldError[] {
  if (!isObject(content)) return [{ field: 'content', message: 'must be a JSON object' }];
  const errors: FieldError[] = [];
  for (const [key, value] of Object.entries(content)) {
    if (!['subject', 'text', 'html'].includes(key)) {
      errors.push({ field: `content.${key}`, message: 'is not a known field (subject, text, html)' });
    } else if (value !== undefined && value !== null && typeof value !== 'string') {
      errors.push({ field: `content.${key}`, message: 'must be a string' });
    }
  }
  if (errors.length > 0) return errors;
  const part = (name: string) => (content[name] ?? undefined) as string | undefined;
  const subject = part('subject');
  const text = part('text');
  const html = part('html');
  if (channel === 'email') {
    if (blank(subject)) {
      errors.push({ field: 'content.subject', message: 'is required for email' });
    } else if (subject !== undefined) {
      if (chars(subject) > MAX_SUBJECT_CHARS) {
        errors.push({ field: 'content.subject', message: `must be at most ${MAX_SUBJECT_CHARS} characters` });
      }
      if (/[\r\n]/.test(subject)) errors.push({ field: 'content.subject', message: 'must not contain line breaks' });
    }
    if (blank(text) && blank(html)) {
      errors.push({ field: 'content', message: 'email needs content.text and/or content.html' });
    }
    for (const [name, value] of [['content.text', text], ['content.html', html]] as const) {
      if (value !== undefined && bytes(value) > MAX_EMAIL_BODY_BYTES) {
        errors.push({ field: name, message: `must be at most ${MAX_EMAIL_BODY_BYTES} bytes` });
      }
    }
  } else {
    if (blank(text)) {
      errors.push({ field: 'content.text', message: 'is required for sms' });
    } else if (text !== undefined && chars(text) > MAX_SMS_CHARS) {
      errors.push({ field: 'content.text', message: `must be at most ${MAX_SMS_CHARS} characters` });
    }
    if (subject !== undefined) errors.push({ field: 'content.subject', message: 'is not allowed for sms' });
    if (html !== undefined) errors.push({ field: 'content.html', message: 'is not allowed for sms' });
  }
  return errors;
}

/** A send as the envelope carries it (wire names), before validation. */
export interface SendDraft {
  tenant_id?: unknown;
  channel?: unknown;
  to?: unknown;
  content?: unknown;
  idempotency_key?: unknown;
  provider_id?: unknown;
  metadata?: unknown;
  ttl_seconds?: unknown;
  priority?: unknown;
}

/**
 * Every rule the worker applies to an envelope's send (`MessageDraft::validate`, the tenant id,
 * the envelope's types); an empty list means the service will accept it. `tenant_id` is checked
 * only when present in the draft (the HTTP API takes it from the credentials).
 */
export function validateSend(draft: SendDraft): FieldError[] {
  const errors: FieldError[] = [];
  if ('tenant_id' in draft) {
    const m = typeof draft.tenant_id === 'string' ? checkTenantId(draft.tenant_id) : 'is required';
    if (m) errors.push({ field: 'tenant_id', message: m });
  }
  let channel: 'email' | 'sms' | undefined;
  if (draft.channel === undefined || draft.channel === null) {
    errors.push({ field: 'channel', message: 'is required' });
  } else if (draft.channel === 'email' || draft.channel === 'sms') {
    channel = draft.channel;
  } else {
    errors.push({ field: 'channel', message: 'must be "email" or "sms"' });
  }
  if (draft.to === undefined || draft.to === null) {
    errors.push({ field: 'to', message: 'is required' });
  } else if (typeof draft.to !== 'string') {
    errors.push({ field: 'to', message: 'must be a string' });
  } else if (channel) {
    const m = channel === 'email' ? checkEmailAddress(draft.to) : checkPhoneNumber(draft.to);
    if (m) errors.push({ field: 'to', message: m });
  }
  if (draft.content === undefined || draft.content === null) {
    errors.push({ field: 'content', message: 'is required' });
  } else if (channel) {
    errors.push(...checkContent(channel, draft.content));
  } else if (!isObject(draft.content)) {
    errors.push({ field: 'content', message: 'must be a JSON object' });
  }
  if (draft.provider_id !== undefined && draft.provider_id !== null) {
    if (typeof draft.provider_id !== 'string' || !isUuid(draft.provider_id)) {
      errors.push({ field: 'provider_id', message: 'must be a UUID' });
    }
  }
  if (draft.metadata !== undefined && draft.metadata !== null) {
    if (!isObject(draft.metadata)) {
      errors.push({ field: 'metadata', message: 'must be a JSON object' });
    } else if (bytes(JSON.stringify(draft.metadata)) > MAX_METADATA_BYTES) {
      errors.push({ field: 'metadata', message: `must be at most ${MAX_METADATA_BYTES} bytes of JSON` });
    }
  }
  if (draft.ttl_seconds !== undefined && draft.ttl_seconds !== null) {
    const ttl = draft.ttl_seconds;
    if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TTL_SECONDS) {
      errors.push({ field: 'ttl_seconds', message: `must be between 1 and ${MAX_TTL_SECONDS}` });
    }
  }
  if (draft.idempotency_key !== undefined && draft.idempotency_key !== null) {
    const m =
      typeof draft.idempotency_key === 'string' ? checkIdempotencyKey(draft.idempotency_key) : 'must be a string';
    if (m) errors.push({ field: 'idempotency_key', message: m });
  }
  if (draft.priority !== undefined && draft.priority !== null) {
    if (!(PRIORITIES as readonly unknown[]).includes(draft.priority)) {
      errors.push({ field: 'priority', message: 'must be "high", "normal" or "bulk"' });
    }
  }
  return errors;
}
