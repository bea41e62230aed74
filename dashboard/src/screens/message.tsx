// One message: its fields, its metadata as formatted JSON, and its timeline (attempts with
// provider, latency and error class, retries with delays, failovers, receipts). A message
// still in flight refreshes by itself. Everything from the message is rendered as text.
import { useEffect } from 'preact/hooks';
import { api } from '../api';
import { CHANNEL_LABEL, formatClock, formatMs, formatTime } from '../format';
import { TERMINAL_STATUSES, type Message, type MessageEvent, type Provider } from '../types';
import { ErrorPanel, PageHeader, Skeleton, StatusBadge, useResource } from '../ui';
import { providerName } from './messages';

const REFRESH_MS = 1500;

function str(v: unknown): string | undefined {
  if (v === null || v === undefined || v === '') return undefined;
  return typeof v === 'string' ? v : String(v);
}

const CLASS_WORDS: Record<string, string> = {
  transient: 'temporary failure',
  provider_permanent: 'provider refused (account or configuration)',
  recipient_permanent: 'recipient refused',
};

/** One timeline line in words, and its tone. */
export function describeEvent(e: MessageEvent, providerOf: (id: string | null) => string): { text: string; tone?: string } {
  const d = (e.detail ?? {}) as Record<string, unknown>;
  const provider = str(d.provider) ?? providerOf(e.provider_id);
  const latency = typeof d.latency_ms === 'number' ? ` after ${formatMs(d.latency_ms)}` : '';
  const unknown = d.outcome_unknown === true ? ' (outcome unknown: the provider may have sent it)' : '';
  const cls = str(d.class);
  const classText = cls ? ` [${CLASS_WORDS[cls] ?? cls}]` : '';
  switch (e.type) {
    case 'accepted':
      return { text: 'accepted' };
    case 'attempt':
      return { text: `attempt ${str(d.attempt) ?? ''} · ${provider}`.replace('  ', ' ') };
    case 'retry_scheduled': {
      const delay = typeof d.delay_ms === 'number' ? ` — retry in ${formatMs(d.delay_ms)}` : ' — retry scheduled';
      return { text: `✗ ${str(d.reason) ?? 'failed'}${latency}${delay}${unknown}`, tone: 'warn' };
    }
    case 'failover':
      return {
        text: `✗ ${str(d.reason) ?? 'failed'}${classText}${latency} — failing over from ${str(d.from) ?? provider} to ${str(d.to) ?? 'the next provider'}${unknown}`,
        tone: 'warn',
      };
    case 'circuit_open': {
      const until = str(d.until);
      const state = str(d.state) === 'half_open' ? 'half-open (one probe at a time)' : 'open after repeated failures';
      return {
        text: `circuit ${state} · ${provider} skipped${until ? ` until ${formatClock(until)}` : ''}`,
        tone: 'warn',
      };
    }
    case 'sent': {
      const pid = str(d.provider_message_id);
      return { text: `✓ sent · ${provider}${pid ? ` · ${pid}` : ''}${latency ? ` (${latency.trim()})` : ''}`, tone: 'good' };
    }
    case 'delivered':
    case 'undelivered':
    case 'bounced':
    case 'complained': {
      const status = str(d.provider_status);
      return {
        text: `${e.type} (receipt from ${provider})${status ? ` · ${status}` : ''}`,
        tone: e.type === 'delivered' ? 'good' : 'warn',
      };
    }
    case 'failed':
      return { text: `✗ failed: ${str(d.reason) ?? 'no provider could send it'}`, tone: 'bad' };
    case 'expired':
      return {
        text: `expired: not sent within its time to live${typeof d.ttl_seconds === 'number' ? ` (${d.ttl_seconds} s)` : ''}`,
        tone: 'muted',
      };
    case 'dead_lettered':
      return { text: `moved to the dead-letter queue${str(d.reason) ? `: ${str(d.reason)}` : ''}`, tone: 'bad' };
    case 'replayed':
      return { text: 'replayed by an operator: queued again' };
    case 'duplicate':
      return { text: 'duplicate delivery ignored (already handled)' };
    default:
      return { text: `${e.type}${str(d.reason) ? `: ${str(d.reason)}` : ''}` };
  }
}

export function MessageScreen(props: { id: string }) {
  const message = useResource(
    (signal) => api<Message>(`/v1/messages/${encodeURIComponent(props.id)}`, { signal }),
    [props.id],
  );
  const providers = useResource((signal) => api<{ items: Provider[] }>('/v1/providers', { signal }), []);
  const m = message.data;
  const live = m ? !TERMINAL_STATUSES.includes(m.status) && m.status !== 'sent' : false;
  useEffect(() => {
    if (!live) return;
    const timer = window.setTimeout(() => {
      api<Message>(`/v1/messages/${encodeURIComponent(props.id)}`).then(message.set, () => {});
    }, REFRESH_MS);
    return () => window.clearTimeout(timer);
  }, [live, m]);
  const providerOf = (id: string | null) =>
    id ? (providers.data?.items.find((p) => p.id === id)?.name ?? 'platform provider') : 'provider';
  return (
    <>
      <PageHeader
        title="Message"
        explanation="What happened to this message, step by step."
        actions={
          <a class="button" href="#/messages">
            ← All messages
          </a>
        }
      />
      {message.loading && !m ? <Skeleton rows={5} label="Loading the message…" /> : null}
      {message.error ? <ErrorPanel error={message.error} onRetry={message.reload} /> : null}
      {m ? (
        <>
          <section class="panel" aria-labelledby="message-facts">
            <h2 id="message-facts" class="visually-hidden">
              Details
            </h2>
            <dl class="facts">
              <dt>Status</dt>
              <dd>
                <StatusBadge status={m.status} />{' '}
                {live ? (
                  <span class="live">
                    <span class="live-dot" aria-hidden="true" /> updating live
                  </span>
                ) : null}
              </dd>
              <dt>Recipient</dt>
              <dd class="recipient">{m.to}</dd>
              <dt>Channel</dt>
              <dd>{CHANNEL_LABEL[m.channel] ?? m.channel}</dd>
              <dt>Provider</dt>
              <dd>{providerName(providers.data?.items, m)}</dd>
              <dt>Attempts</dt>
              <dd>{m.attempts}</dd>
              {m.provider_message_id ? (
                <>
                  <dt>Provider's id</dt>
                  <dd class="mono">{m.provider_message_id}</dd>
                </>
              ) : null}
              {m.last_error ? (
                <>
                  <dt>Last error</dt>
                  <dd class="text-bad">{m.last_error}</dd>
                </>
              ) : null}
              <dt>Accepted</dt>
              <dd>{formatTime(m.created_at)}</dd>
              {m.sent_at ? (
                <>
                  <dt>Sent</dt>
                  <dd>{formatTime(m.sent_at)}</dd>
                </>
              ) : null}
              {m.completed_at ? (
                <>
                  <dt>Completed</dt>
                  <dd>{formatTime(m.completed_at)}</dd>
                </>
              ) : null}
              {m.idempotency_key ? (
                <>
                  <dt>Idempotency key</dt>
                  <dd class="mono">{m.idempotency_key}</dd>
                </>
              ) : null}
              <dt>Id</dt>
              <dd class="mono">{m.id}</dd>
            </dl>
          </section>
          <section class="panel" aria-labelledby="timeline-title">
            <h2 id="timeline-title">Timeline</h2>
            {(m.events ?? []).length === 0 ? (
              <p class="muted">
                {m.status === 'queued'
                  ? 'Accepted and waiting for a worker. This page updates by itself.'
                  : 'No steps recorded.'}
              </p>
            ) : (
              <ol class="timeline">
                {(m.events ?? []).map((e, i) => {
                  const { text, tone } = describeEvent(e, providerOf);
                  return (
                    <li key={i}>
                      <time dateTime={e.at} title={formatTime(e.at)}>
                        {formatClock(e.at)}
                      </time>
                      <span class={tone ? `ev-${tone}` : undefined}>{text}</span>
                    </li>
                  );
                })}
              </ol>
            )}
          </section>
          <section class="panel" aria-labelledby="metadata-title">
            <h2 id="metadata-title">Metadata</h2>
            {m.metadata === null || m.metadata === undefined ? (
              <p class="muted">None. Add a "metadata" object to a send to see it here.</p>
            ) : (
              <pre class="json">{JSON.stringify(m.metadata, null, 2)}</pre>
            )}
          </section>
        </>
      ) : null}
    </>
  );
}
