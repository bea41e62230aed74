// Words and numbers as people read them: times, durations, statuses, test results.
import type { MessageStatus, TestResult } from './types';

export function formatTime(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleString(undefined, {
    year: 'numeric',
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  });
}

/** `10:04:02.113`: the clock time with milliseconds, for timelines. */
export function formatClock(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export function timeAgo(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return 'never';
  const then = new Date(iso).getTime();
  if (Number.isNaN(then)) return iso;
  const s = Math.round((now - then) / 1000);
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.round(m / 60);
  if (h < 48) return `${h} h ago`;
  return `${Math.round(h / 24)} days ago`;
}

export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
  return `${Math.round(ms / 60_000)} min`;
}

export function formatPercent(rate: number | null | undefined): string {
  if (rate === null || rate === undefined || Number.isNaN(rate)) return '—';
  const pct = rate <= 1 ? rate * 100 : rate;
  return `${pct >= 99.95 || pct === 0 ? pct.toFixed(0) : pct.toFixed(1)}%`;
}

export function formatCount(n: number): string {
  return n.toLocaleString();
}

export const STATUS_LABEL: Record<MessageStatus, string> = {
  queued: 'Queued',
  sending: 'Sending',
  sent: 'Sent',
  delivered: 'Delivered',
  undelivered: 'Undelivered',
  bounced: 'Bounced',
  failed: 'Failed',
  expired: 'Expired',
  suppressed: 'Suppressed',
};

/** The colour family of a status, used everywhere the same way (always beside its label). */
export function statusTone(status: string): 'neutral' | 'good' | 'warn' | 'bad' | 'muted' | 'purple' {
  switch (status) {
    case 'sent':
    case 'delivered':
      return 'good';
    case 'undelivered':
    case 'bounced':
      return 'warn';
    case 'failed':
      return 'bad';
    case 'expired':
      return 'muted';
    case 'suppressed':
      return 'purple';
    default:
      return 'neutral';
  }
}

export const CHANNEL_LABEL: Record<string, string> = { email: 'Email', sms: 'SMS' };

/** Finer reasons a connection check can fail, in the words a person understands. */
const REASON_WORDS: Record<string, string> = {
  credentials_rejected: 'Credentials rejected',
  sender_not_verified: 'Sender not verified',
  account_suspended: 'Account suspended or out of funds',
  host_unreachable: 'Host unreachable',
  tls_failed: 'TLS failed',
  rate_limited: 'Rate limited, try later',
  unexpected: 'The provider answered something unexpected',
};

/**
 * Reads a failed check as one of the plain reasons: the API's `reason` when it gives one,
 * otherwise the error class and the words of its detail.
 */
export function testFailureReason(result: Pick<TestResult, 'detail' | 'error_class' | 'reason'>): string {
  if (result.reason && REASON_WORDS[result.reason]) return REASON_WORDS[result.reason];
  const d = (result.detail || '').toLowerCase();
  const has = (...words: string[]) => words.some((w) => d.includes(w));
  if (has('tls', 'certificate', 'handshake', 'ssl')) return REASON_WORDS.tls_failed;
  if (has('rate limit', 'rate_limit', 'too many requests', '429')) return REASON_WORDS.rate_limited;
  if (has('suspend', 'funds', 'balance', 'quota', 'billing', 'inactive account', 'deactivated'))
    return REASON_WORDS.account_suspended;
  if (has('not verified', 'unverified', 'verify', 'sender', 'domain is not', 'from address'))
    return REASON_WORDS.sender_not_verified;
  if (
    has('credential', 'api key', 'api_key', 'unauthori', 'forbidden', 'authenticat', 'invalid key', 'token', '401', '403', 'password')
  )
    return REASON_WORDS.credentials_rejected;
  if (has('connect', 'unreachable', 'timed out', 'timeout', 'dns', 'resolve', 'refused', 'network'))
    return REASON_WORDS.host_unreachable;
  if (result.error_class === 'transient') return 'The provider could not be reached right now, try later';
  return REASON_WORDS.unexpected;
}
