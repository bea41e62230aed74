// The shapes of the /v1 API the dashboard reads (see src/intake/*.rs and DASHBOARD_API.md).

export type Channel = 'email' | 'sms';

export type MessageStatus =
  | 'queued'
  | 'sending'
  | 'sent'
  | 'delivered'
  | 'undelivered'
  | 'bounced'
  | 'failed'
  | 'expired'
  | 'suppressed';

export const MESSAGE_STATUSES: MessageStatus[] = [
  'queued',
  'sending',
  'sent',
  'delivered',
  'undelivered',
  'bounced',
  'failed',
  'expired',
  'suppressed',
];

export const TERMINAL_STATUSES: MessageStatus[] = [
  'delivered',
  'undelivered',
  'bounced',
  'failed',
  'expired',
  'suppressed',
];

export interface LastTest {
  at: string;
  ok: boolean | null;
  detail: string | null;
}

/** Delivery figures of one provider over a window (GET /v1/stats/providers). */
export interface WindowStats {
  total: number;
  delivery_rate: number | null;
  p50_ms: number | null;
  p95_ms: number | null;
}

/** Circuit breaker and delivery figures of one provider (GET /v1/stats/providers). */
export interface ProviderHealth {
  provider_id: string;
  name: string | null;
  kind: string | null;
  channel: Channel;
  platform: boolean;
  /** null when the service could not read the breaker (unknown). */
  breaker: { state: 'closed' | 'open' | 'half_open'; until: string | null; failures: number } | null;
  last_hour: WindowStats | null;
  last_day: WindowStats | null;
}

export interface Provider {
  id: string;
  name: string;
  channel: Channel;
  kind: string;
  priority: number;
  enabled: boolean;
  config: Record<string, unknown>;
  scope: 'tenant' | 'platform';
  last_test: LastTest | null;
  created_at: string;
  updated_at: string;
}

export type FieldType = 'text' | 'secret' | 'select' | 'number' | 'bool';

export interface KindField {
  name: string;
  label?: string;
  type: FieldType;
  required?: boolean;
  help?: string;
  example?: string | number | boolean | null;
  options?: string[];
  default?: unknown;
}

export interface ProviderKind {
  kind: string;
  label?: string;
  description?: string;
  channels: Channel[];
  receipts?: boolean;
  fields: KindField[];
}

export interface TestResult {
  id: string;
  ok: boolean;
  detail: string;
  error_class: string | null;
  /** A finer reason when the API gives one (credentials_rejected, sender_not_verified, …). */
  reason?: string | null;
  latency_ms: number;
  tested_at: string;
  test_message?: { id: string | null; status: string; detail?: string };
}

export interface MessageEvent {
  type: string;
  provider_id: string | null;
  detail: Record<string, unknown> | null;
  at: string;
}

export interface Message {
  id: string;
  status: MessageStatus;
  channel: Channel;
  to: string;
  provider_id: string | null;
  provider_kind?: string | null;
  provider_message_id: string | null;
  attempts: number;
  last_error: string | null;
  idempotency_key?: string | null;
  metadata?: unknown;
  ttl_seconds?: number | null;
  created_at: string;
  updated_at?: string;
  sent_at?: string | null;
  completed_at?: string | null;
  events?: MessageEvent[];
}

export interface Page<T> {
  items: T[];
  next_cursor?: string | null;
}

export interface ApiKey {
  id: string;
  tenant_id?: string;
  name: string | null;
  prefix: string;
  created_at: string;
  last_used_at?: string | null;
  revoked_at?: string | null;
}

export interface CreatedApiKey extends ApiKey {
  key: string;
}

export interface StatusCounts {
  [status: string]: number;
}

export interface StatsBucket {
  start: string;
  total: number;
  by_status: StatusCounts;
  by_channel: Record<string, number>;
}

export interface ProviderStats {
  provider_id: string;
  name: string | null;
  kind: string | null;
  channel: Channel;
  platform: boolean;
  total: number;
  by_status: StatusCounts;
  delivery_rate: number | null;
  latency_ms: { p50: number | null; p95: number | null; samples: number } | null;
}

export interface Stats {
  since: string;
  until: string;
  bucket: 'day' | 'hour';
  buckets: StatsBucket[];
  totals: { total: number; by_status: StatusCounts; by_channel: Record<string, number> };
  providers: ProviderStats[];
}
