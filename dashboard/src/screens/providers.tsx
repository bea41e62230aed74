// Providers: one section per channel, in the order they are tried, with health at a
// glance, an enable switch, move up/down (PATCH priority), test, edit and remove.
import { useState } from 'preact/hooks';
import { api } from '../api';
import { CHANNEL_LABEL, formatMs, formatPercent, timeAgo, formatTime, testFailureReason } from '../format';
import type { Channel, Provider, ProviderHealth, ProviderKind, WindowStats } from '../types';
import { asApiError, ConfirmDialog, EmptyState, ErrorPanel, PageHeader, Skeleton, useResource } from '../ui';
import type { ApiError } from '../api';
import { kindLabel, ProviderForm, type SaveIntent } from './provider-form';
import { ProviderTestPanel } from './provider-test';

const CHANNELS: Channel[] = ['email', 'sms'];

export function byPriority(a: Provider, b: Provider): number {
  return a.priority - b.priority || a.created_at.localeCompare(b.created_at) || a.name.localeCompare(b.name);
}

type Editing = { provider?: Provider; channel?: Channel } | undefined;

export function ProvidersScreen() {
  const providers = useResource((signal) => api<{ items: Provider[] }>('/v1/providers', { signal }), []);
  const kinds = useResource((signal) => api<{ items: ProviderKind[] }>('/v1/provider-kinds', { signal }), []);
  // Health is optional: without it the rows still show the last test.
  const health = useResource(
    (signal) => api<{ items: ProviderHealth[] }>('/v1/stats/providers', { signal }).catch(() => ({ items: [] })),
    [],
  );
  const healthOf = (id: string) => health.data?.items.find((h) => h.provider_id === id);
  const [editing, setEditing] = useState<Editing>();
  const [testing, setTesting] = useState<string | undefined>();
  const [removing, setRemoving] = useState<Provider | undefined>();
  const [actionError, setActionError] = useState<ApiError | undefined>();
  const [busy, setBusy] = useState(false);

  const items = (providers.data?.items ?? []).filter((p) => p.scope !== 'platform');
  const replace = (saved: Provider) => {
    const rest = items.filter((p) => p.id !== saved.id);
    providers.set({ items: [...rest, saved] });
  };

  const act = async (work: () => Promise<void>) => {
    setBusy(true);
    setActionError(undefined);
    try {
      await work();
    } catch (e) {
      setActionError(asApiError(e));
      providers.reload();
    } finally {
      setBusy(false);
    }
  };

  const setEnabled = (p: Provider, enabled: boolean) =>
    act(async () => {
      const saved = await api<Provider>(`/v1/providers/${encodeURIComponent(p.id)}`, {
        method: 'PATCH',
        body: { enabled },
      });
      replace(saved);
    });

  /** Moves `p` one place up or down in its channel, renumbering the channel when needed. */
  const move = (p: Provider, delta: -1 | 1) =>
    act(async () => {
      const list = items.filter((x) => x.channel === p.channel).sort(byPriority);
      const from = list.findIndex((x) => x.id === p.id);
      const to = from + delta;
      if (from < 0 || to < 0 || to >= list.length) return;
      const order = [...list];
      [order[from], order[to]] = [order[to], order[from]];
      // Keep existing numbers when a swap suffices; otherwise renumber 10, 20, 30 …
      const distinct = new Set(list.map((x) => x.priority)).size === list.length;
      const wanted = distinct ? list.map((x) => x.priority) : list.map((_, i) => (i + 1) * 10);
      const changes = order.map((x, i) => ({ p: x, priority: wanted[i] })).filter((c) => c.p.priority !== c.priority);
      const saved: Provider[] = [];
      for (const c of changes) {
        saved.push(
          await api<Provider>(`/v1/providers/${encodeURIComponent(c.p.id)}`, {
            method: 'PATCH',
            body: { priority: c.priority },
          }),
        );
      }
      const ids = new Set(saved.map((s) => s.id));
      providers.set({ items: [...items.filter((x) => !ids.has(x.id)), ...saved] });
    });

  const onSaved = (saved: Provider, intent: SaveIntent) => {
    setEditing(undefined);
    replace(saved);
    setTesting(intent === 'save-and-test' ? saved.id : undefined);
  };

  const loading = providers.loading && !providers.data;
  return (
    <>
      <PageHeader
        title="Providers"
        explanation="The accounts your messages go out through. Each channel tries its enabled providers from top to bottom."
        actions={
          <button
            type="button"
            class="button primary"
            onClick={() => setEditing({})}
            disabled={!kinds.data}
          >
            + Add provider
          </button>
        }
      />
      {kinds.error ? <ErrorPanel error={kinds.error} onRetry={kinds.reload} title="The provider kinds could not be loaded" /> : null}
      {actionError ? <ErrorPanel error={actionError} title="That change was not saved" /> : null}
      {loading ? <Skeleton rows={4} label="Loading providers…" /> : null}
      {providers.error ? <ErrorPanel error={providers.error} onRetry={providers.reload} /> : null}
      {providers.data
        ? CHANNELS.map((channel) => {
            const list = items.filter((p) => p.channel === channel).sort(byPriority);
            const label = CHANNEL_LABEL[channel];
            return (
              <section key={channel} aria-labelledby={`section-${channel}`}>
                <div class="section-head">
                  <div>
                    <h2 id={`section-${channel}`}>{label} — tried top to bottom</h2>
                  </div>
                  <button
                    type="button"
                    class="button small"
                    onClick={() => setEditing({ channel })}
                    disabled={!kinds.data}
                    aria-label={`Add ${label} provider`}
                  >
                    + Add {label} provider
                  </button>
                </div>
                {list.length === 0 ? (
                  <EmptyState title={`No ${label} provider of your own yet`}>
                    <p>
                      {label} messages use the platform's default provider. Add your own account to send from your name and
                      see its health here.
                    </p>
                  </EmptyState>
                ) : (
                  <ol class="provider-list" aria-label={`${label} providers`}>
                    {list.map((p, i) => (
                      <ProviderRow
                        key={p.id}
                        provider={p}
                        health={healthOf(p.id)}
                        rank={i + 1}
                        first={i === 0}
                        last={i === list.length - 1}
                        kindName={kindLabel(kinds.data?.items, p.kind)}
                        busy={busy}
                        testing={testing === p.id}
                        onTest={() => setTesting(testing === p.id ? undefined : p.id)}
                        onTested={() => {
                          providers.reload();
                          health.reload();
                        }}
                        onCloseTest={() => setTesting(undefined)}
                        onEdit={() => setEditing({ provider: p })}
                        onRemove={() => setRemoving(p)}
                        onMove={(d) => void move(p, d)}
                        onEnabled={(on) => void setEnabled(p, on)}
                      />
                    ))}
                  </ol>
                )}
              </section>
            );
          })
        : null}
      {editing && kinds.data ? (
        <ProviderForm
          kinds={kinds.data.items}
          provider={editing.provider}
          channel={editing.channel}
          onClose={() => setEditing(undefined)}
          onSaved={onSaved}
        />
      ) : null}
      {removing ? (
        <ConfirmDialog
          title={`Remove ${removing.name}?`}
          message={`The provider "${removing.name}" and its stored credentials are deleted. Messages already sent keep their history.`}
          confirmLabel={`Remove ${removing.name}`}
          onClose={() => setRemoving(undefined)}
          onConfirm={async () => {
            await api(`/v1/providers/${encodeURIComponent(removing.id)}`, { method: 'DELETE' });
            providers.set({ items: items.filter((p) => p.id !== removing.id) });
          }}
        />
      ) : null}
    </>
  );
}

/** The provider's state in words: disabled, circuit open (skipped until …), healthy, … */
function healthBadge(p: Provider, h: ProviderHealth | undefined): { tone: string; text: string } {
  if (!p.enabled) return { tone: 'muted', text: 'Disabled — not tried' };
  const breaker = h?.breaker;
  if (breaker?.state === 'open') {
    const until = breaker.until ? ` — skipped until ${new Date(breaker.until).toLocaleTimeString()}` : '';
    const failures = breaker.failures ? ` (${breaker.failures} failures)` : '';
    return { tone: 'bad', text: `Circuit open${until}${failures}` };
  }
  if (breaker?.state === 'half_open') return { tone: 'warn', text: 'Recovering — trying one message' };
  if (p.last_test && p.last_test.ok === false) return { tone: 'warn', text: 'Last test failed' };
  if (breaker?.state === 'closed' && (p.last_test?.ok || (h?.last_day?.total ?? 0) > 0))
    return { tone: 'good', text: 'Healthy' };
  if (p.last_test?.ok) return { tone: 'good', text: 'Healthy' };
  if (h && !breaker) return { tone: 'neutral', text: 'Health unknown' };
  return { tone: 'neutral', text: 'Not tested yet' };
}

function windowText(label: string, w: WindowStats | null | undefined): string | null {
  if (!w) return null;
  if (!w.total) return `No messages in the last ${label}`;
  const rate = w.delivery_rate === null ? 'none finished' : `${formatPercent(w.delivery_rate)} delivered`;
  return `${rate} (${label}, ${w.total} messages) · p50 ${formatMs(w.p50_ms)}`;
}

function ProviderRow(props: {
  provider: Provider;
  health: ProviderHealth | undefined;
  rank: number;
  first: boolean;
  last: boolean;
  kindName: string;
  busy: boolean;
  testing: boolean;
  onTest: () => void;
  onTested: () => void;
  onCloseTest: () => void;
  onEdit: () => void;
  onRemove: () => void;
  onMove: (delta: -1 | 1) => void;
  onEnabled: (on: boolean) => void;
}) {
  const p = props.provider;
  const health = healthBadge(p, props.health);
  const hour = windowText('hour', props.health?.last_hour);
  const day = windowText('24 h', props.health?.last_day);
  const test = p.last_test;
  const testText = test
    ? test.ok
      ? `Last test: OK ${timeAgo(test.at)}`
      : `Last test: ${testFailureReason({ detail: test.detail ?? '', error_class: null })} ${timeAgo(test.at)}`
    : 'Never tested';
  return (
    <li class={p.enabled ? 'provider' : 'provider disabled'} aria-label={p.name}>
      <span class="provider-rank" aria-label={`Tried ${props.rank}.`}>
        {props.rank}
      </span>
      <div class="provider-main">
        <div class="provider-title">
          <span class="provider-name">{p.name}</span>
          <span class="muted">{props.kindName}</span>
          <span class={`badge tone-${health.tone}`}>{health.text}</span>
        </div>
        <div class="provider-facts">
          <span title={test ? formatTime(test.at) : undefined}>{testText}</span>
          {hour ? <span>{hour}</span> : null}
          {day ? <span>{day}</span> : null}
        </div>
      </div>
      <div class="provider-actions">
        <button type="button" class="button small" onClick={props.onTest} aria-expanded={props.testing ? 'true' : 'false'} aria-label={`Test ${p.name}`}>
          Test
        </button>
        <button type="button" class="button small" onClick={props.onEdit} aria-label={`Edit ${p.name}`}>
          Edit
        </button>
        <button
          type="button"
          class="button small"
          onClick={() => props.onMove(-1)}
          disabled={props.first || props.busy}
          aria-label={`Move ${p.name} up`}
        >
          ↑
        </button>
        <button
          type="button"
          class="button small"
          onClick={() => props.onMove(1)}
          disabled={props.last || props.busy}
          aria-label={`Move ${p.name} down`}
        >
          ↓
        </button>
        <label class="switch">
          <input
            type="checkbox"
            role="switch"
            checked={p.enabled}
            disabled={props.busy}
            onChange={(e) => props.onEnabled((e.target as HTMLInputElement).checked)}
            aria-label={`${p.name} enabled`}
          />
          <span aria-hidden="true">{p.enabled ? 'On' : 'Off'}</span>
        </label>
        <button type="button" class="button small subtle" onClick={props.onRemove} aria-label={`Remove ${p.name}`}>
          Remove
        </button>
      </div>
      {props.testing ? <ProviderTestPanel provider={p} onTested={props.onTested} onClose={props.onCloseTest} /> : null}
    </li>
  );
}
