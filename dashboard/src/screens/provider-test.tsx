// Test connection: runs the check on the stored credentials (server side) and says the
// result in plain words; then optionally sends a real test message and follows it live.
import { useEffect, useState } from 'preact/hooks';
import { api } from '../api';
import { formatMs, testFailureReason } from '../format';
import { TERMINAL_STATUSES, type Message, type Provider, type TestResult } from '../types';
import { asApiError, ErrorPanel, StatusBadge } from '../ui';
import type { ApiError } from '../api';
import { inputType } from './provider-form';

const FOLLOW_EVERY_MS = 1000;
/** A `sent` message may still get a delivery receipt; wait this long for one, then stop. */
const RECEIPT_WAIT_MS = 60_000;

export function TestResultView(props: { result: TestResult }) {
  const r = props.result;
  if (r.ok) {
    return (
      <div class="result ok" role="status">
        <p>
          <strong>✓ Connected</strong> — {r.detail || 'the account is active'} · {formatMs(r.latency_ms)}
        </p>
      </div>
    );
  }
  return (
    <div class="result fail" role="status">
      <p>
        <strong>✗ {testFailureReason(r)}</strong> · {formatMs(r.latency_ms)}
      </p>
      {r.detail ? <p class="detail">The provider said: {r.detail}</p> : null}
    </div>
  );
}

/** The test panel under a provider row. `autoRun` starts the check when it opens. */
export function ProviderTestPanel(props: { provider: Provider; onTested: () => void; onClose: () => void }) {
  const { provider } = props;
  const [result, setResult] = useState<TestResult | undefined>();
  const [error, setError] = useState<ApiError | undefined>();
  const [running, setRunning] = useState(false);
  const [sendTo, setSendTo] = useState('');
  const [sendError, setSendError] = useState<string | undefined>();
  const [followId, setFollowId] = useState<string | undefined>();

  const run = async (to?: string) => {
    setRunning(true);
    setError(undefined);
    setSendError(undefined);
    try {
      const r = await api<TestResult>(`/v1/providers/${encodeURIComponent(provider.id)}/test`, {
        method: 'POST',
        body: to ? { send_to: to } : undefined,
      });
      setResult(r);
      if (r.test_message?.id) setFollowId(r.test_message.id);
      else if (r.test_message?.detail) setSendError(r.test_message.detail);
      props.onTested();
    } catch (e) {
      const err = asApiError(e);
      if (to && err.fieldError('send_to')) setSendError(err.fieldError('send_to'));
      else setError(err);
    } finally {
      setRunning(false);
    }
  };

  useEffect(() => {
    void run();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [provider.id]);

  const recipientLabel = provider.channel === 'sms' ? 'phone number (E.164, e.g. +14155550123)' : 'email address';
  return (
    <section class="test-result" aria-label={`Connection test of ${provider.name}`}>
      {running && !result ? (
        <p class="muted" role="status">
          Testing the connection to {provider.name}…
        </p>
      ) : null}
      {error ? <ErrorPanel error={error} onRetry={() => void run()} title="The test could not run" /> : null}
      {result ? <TestResultView result={result} /> : null}
      {result?.ok ? (
        <form
          class="inline-form"
          onSubmit={(e) => {
            e.preventDefault();
            if (sendTo.trim()) void run(sendTo.trim());
          }}
        >
          <div class="grow">
            <label for={`send-to-${provider.id}`}>Send a test message to ({recipientLabel})</label>
            <input
              id={`send-to-${provider.id}`}
              type={inputType(provider.channel === 'email' ? 'email' : 'text')}
              value={sendTo}
              aria-invalid={sendError ? 'true' : undefined}
              aria-describedby={sendError ? `send-to-${provider.id}-error` : undefined}
              onInput={(e) => setSendTo((e.target as HTMLInputElement).value)}
            />
          </div>
          <button type="submit" class="button" disabled={running || !sendTo.trim()}>
            Send test message
          </button>
        </form>
      ) : null}
      {sendError ? (
        <p class="field-error" id={`send-to-${provider.id}-error`} role="alert">
          {sendError}
        </p>
      ) : null}
      {followId ? <FollowMessage id={followId} /> : null}
      <div class="form-actions">
        <button type="button" class="button small" onClick={() => void run()} disabled={running}>
          {running ? 'Testing…' : 'Test again'}
        </button>
        <button type="button" class="button small subtle" onClick={props.onClose}>
          Close test
        </button>
      </div>
    </section>
  );
}

/** Follows a message's status until it is terminal (queued → sending → sent → delivered). */
export function FollowMessage(props: { id: string }) {
  const [message, setMessage] = useState<Message | undefined>();
  const [error, setError] = useState<ApiError | undefined>();
  useEffect(() => {
    let stopped = false;
    let timer: number | undefined;
    const started = Date.now();
    const poll = async () => {
      try {
        const m = await api<Message>(`/v1/messages/${encodeURIComponent(props.id)}`);
        if (stopped) return;
        setMessage(m);
        setError(undefined);
        // `sent` can still become delivered: keep following a little while for receipts.
        if (TERMINAL_STATUSES.includes(m.status)) return;
        if (m.status === 'sent' && Date.now() - started > RECEIPT_WAIT_MS) return;
      } catch (e) {
        if (stopped) return;
        const err = asApiError(e);
        if (err.status !== 404) setError(err);
      }
      timer = window.setTimeout(poll, FOLLOW_EVERY_MS);
    };
    void poll();
    return () => {
      stopped = true;
      if (timer) window.clearTimeout(timer);
    };
  }, [props.id]);
  const live = !message || !(TERMINAL_STATUSES.includes(message.status) || message.status === 'sent');
  return (
    <div class="panel follow" aria-live="polite">
      <p>
        Test message: {message ? <StatusBadge status={message.status} /> : <StatusBadge status="queued" />}{' '}
        {live ? (
          <span class="live">
            <span class="live-dot" aria-hidden="true" /> following live
          </span>
        ) : null}{' '}
        <a href={`#/messages/${encodeURIComponent(props.id)}`}>Open its timeline</a>
      </p>
      {message?.last_error ? <p class="text-bad">{message.last_error}</p> : null}
      {error ? <p class="text-bad">{error.detail}</p> : null}
    </div>
  );
}
