// Messages (the usage log): newest first, filters in one row, "Load more" through the
// cursor; messages still in flight refresh by themselves. A row opens the timeline.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, query } from '../api';
import { CHANNEL_LABEL, formatTime, STATUS_LABEL } from '../format';
import { MESSAGE_STATUSES, TERMINAL_STATUSES, type Message, type Page, type Provider } from '../types';
import { asApiError, EmptyState, ErrorPanel, PageHeader, Skeleton, StatusBadge, useResource } from '../ui';

const PAGE_SIZE = 50;
const REFRESH_IN_FLIGHT_MS = 3000;

type Range = '' | '1h' | '24h' | '7d' | 'custom';

interface Filters {
  status: string;
  channel: string;
  provider_id: string;
  range: Range;
  since: string;
  until: string;
  to: string;
}

const EMPTY: Filters = { status: '', channel: '', provider_id: '', range: '', since: '', until: '', to: '' };

const RANGE_MS: Record<string, number> = { '1h': 3600_000, '24h': 86_400_000, '7d': 7 * 86_400_000 };

function localToIso(v: string): string | undefined {
  if (!v) return undefined;
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

/**
 * Filters the API does not know yet (it answers 422 "is not a known filter"): they are
 * applied in the browser to the pages loaded so far instead, and the page says so.
 */
const LOCAL_CAPABLE = ['provider_id', 'to'] as const;
const localFilters = new Set<string>();

function matchesLocally(m: Message, f: Filters): boolean {
  if (localFilters.has('provider_id') && f.provider_id && m.provider_id !== f.provider_id) return false;
  if (localFilters.has('to') && f.to.trim() && m.to !== f.to.trim()) return false;
  return true;
}

function narrowsLocally(f: Filters): boolean {
  return (localFilters.has('provider_id') && !!f.provider_id) || (localFilters.has('to') && !!f.to.trim());
}

async function fetchPage(f: Filters, cursor?: string, signal?: AbortSignal): Promise<Page<Message>> {
  for (;;) {
    try {
      return await api<Page<Message>>(`/v1/messages${apiParams(f, cursor)}`, { signal });
    } catch (e) {
      const unknown =
        e instanceof ApiError && (e.status === 400 || e.status === 422)
          ? e.errors.filter((x) => (LOCAL_CAPABLE as readonly string[]).includes(x.field) && !localFilters.has(x.field))
          : [];
      if (unknown.length === 0) throw e;
      for (const x of unknown) localFilters.add(x.field);
    }
  }
}

function apiParams(f: Filters, cursor?: string) {
  let since: string | undefined;
  let until: string | undefined;
  if (f.range === 'custom') {
    since = localToIso(f.since);
    until = localToIso(f.until);
  } else if (f.range) {
    since = new Date(Date.now() - RANGE_MS[f.range]).toISOString();
  }
  const local = narrowsLocally(f);
  return query({
    status: f.status,
    channel: f.channel,
    provider_id: localFilters.has('provider_id') ? undefined : f.provider_id,
    to: localFilters.has('to') ? undefined : f.to.trim(),
    since,
    until,
    limit: local ? 200 : PAGE_SIZE,
    cursor,
  });
}

export function providerName(providers: Provider[] | undefined, m: Pick<Message, 'provider_id' | 'provider_kind'>): string {
  if (!m.provider_id) return '—';
  const p = providers?.find((x) => x.id === m.provider_id);
  if (p) return p.name;
  return m.provider_kind ? `${m.provider_kind} (platform)` : 'platform provider';
}

export function MessagesScreen() {
  const [draft, setDraft] = useState<Filters>(EMPTY);
  const [filters, setFilters] = useState<Filters>(EMPTY);
  const [extra, setExtra] = useState<Message[]>([]);
  const [cursor, setCursor] = useState<string | null | undefined>();
  const [moreError, setMoreError] = useState<ApiError | undefined>();
  const [loadingMore, setLoadingMore] = useState(false);
  const [updates, setUpdates] = useState<Record<string, Message>>({});
  const providers = useResource((signal) => api<{ items: Provider[] }>('/v1/providers', { signal }), []);
  const page = useResource(
    (signal) => fetchPage(filters, undefined, signal),
    [filters],
  );
  useEffect(() => {
    setExtra([]);
    setUpdates({});
    setCursor(page.data?.next_cursor ?? null);
  }, [page.data]);

  // Rows that were in flight are shown from `updates` (fresh copies by id).
  const loaded = [...(page.data?.items ?? []), ...extra].map((m) => updates[m.id] ?? m);
  const rows = loaded.filter((m) => matchesLocally(m, filters));
  const local = narrowsLocally(filters);
  const rowsRef = useRef(rows);
  rowsRef.current = rows;

  // Refresh the rows still in flight (queued, sending) until they settle.
  const inFlight = rows.filter((m) => !TERMINAL_STATUSES.includes(m.status) && m.status !== 'sent').length;
  useEffect(() => {
    if (inFlight === 0) return;
    const timer = window.setInterval(async () => {
      const pending = rowsRef.current
        .filter((m) => !TERMINAL_STATUSES.includes(m.status) && m.status !== 'sent')
        .slice(0, 20);
      const fresh = await Promise.all(
        pending.map((m) => api<Message>(`/v1/messages/${encodeURIComponent(m.id)}`).catch(() => m)),
      );
      setUpdates((u) => {
        const next = { ...u };
        for (const f of fresh) next[f.id] = { ...f, events: undefined };
        return next;
      });
    }, REFRESH_IN_FLIGHT_MS);
    return () => window.clearInterval(timer);
  }, [inFlight]);

  const loadMore = async () => {
    if (!cursor) return;
    setLoadingMore(true);
    setMoreError(undefined);
    try {
      const next = await fetchPage(filters, cursor);
      setExtra([...extra, ...next.items]);
      setCursor(next.next_cursor ?? null);
    } catch (e) {
      setMoreError(asApiError(e));
    } finally {
      setLoadingMore(false);
    }
  };

  const filtered = JSON.stringify(filters) !== JSON.stringify(EMPTY);
  const set = (k: keyof Filters) => (e: Event) => setDraft({ ...draft, [k]: (e.target as HTMLInputElement).value });
  const providerList = (providers.data?.items ?? []).slice().sort((a, b) => a.name.localeCompare(b.name));
  return (
    <>
      <PageHeader
        title="Messages"
        explanation="Every message you sent, newest first, with its status and the provider that carried it. Open one to see each step."
        actions={
          <button type="button" class="button" onClick={page.reload}>
            Refresh
          </button>
        }
      />
      <form
        class="filters"
        role="search"
        aria-label="Filter messages"
        onSubmit={(e) => {
          e.preventDefault();
          setFilters({ ...draft });
        }}
      >
        <div>
          <label for="filter-status">Status</label>
          <select id="filter-status" value={draft.status} onChange={set('status')}>
            <option value="">Any status</option>
            {MESSAGE_STATUSES.map((s) => (
              <option key={s} value={s}>
                {STATUS_LABEL[s]}
              </option>
            ))}
          </select>
        </div>
        <div>
          <label for="filter-channel">Channel</label>
          <select id="filter-channel" value={draft.channel} onChange={set('channel')}>
            <option value="">Any channel</option>
            <option value="email">Email</option>
            <option value="sms">SMS</option>
          </select>
        </div>
        <div>
          <label for="filter-provider">Provider</label>
          <select id="filter-provider" value={draft.provider_id} onChange={set('provider_id')}>
            <option value="">Any provider</option>
            {providerList.map((p) => (
              <option key={p.id} value={p.id}>
                {p.name}
              </option>
            ))}
          </select>
        </div>
        <div>
          <label for="filter-range">Time range</label>
          <select id="filter-range" value={draft.range} onChange={set('range')}>
            <option value="">Any time</option>
            <option value="1h">Last hour</option>
            <option value="24h">Last day</option>
            <option value="7d">Last 7 days</option>
            <option value="custom">Custom…</option>
          </select>
        </div>
        {draft.range === 'custom' ? (
          <>
            <div>
              <label for="filter-since">From</label>
              <input id="filter-since" type="datetime-local" value={draft.since} onInput={set('since')} />
            </div>
            <div>
              <label for="filter-until">Until</label>
              <input id="filter-until" type="datetime-local" value={draft.until} onInput={set('until')} />
            </div>
          </>
        ) : null}
        <div>
          <label for="filter-to">Recipient (exact)</label>
          <input id="filter-to" type="search" value={draft.to} onInput={set('to')} placeholder="ada@example.com" spellcheck={false} />
        </div>
        <div class="filter-actions">
          <button type="submit" class="button primary">
            Apply filters
          </button>
          {filtered ? (
            <button
              type="button"
              class="button subtle"
              onClick={() => {
                setDraft(EMPTY);
                setFilters(EMPTY);
              }}
            >
              Clear
            </button>
          ) : null}
        </div>
      </form>

      {page.loading && !page.data ? <Skeleton rows={6} label="Loading messages…" /> : null}
      {page.error ? <ErrorPanel error={page.error} onRetry={page.reload} /> : null}
      {local && page.data ? (
        <p class="muted" role="status">
          Provider and recipient filters look through the {loaded.length} most recent messages loaded
          {cursor ? '; use “Load more” to search further back.' : '.'}
        </p>
      ) : null}
      {page.data && rows.length === 0 ? (
        filtered ? (
          <EmptyState title="No message matches these filters">
            <p>Widen the time range or clear the filters.</p>
          </EmptyState>
        ) : (
          <EmptyState title="No messages yet">
            <p>
              Send one with <code>POST /v1/send</code>, or test a provider on the <a href="#/providers">Providers</a> page with
              "Send a test message".
            </p>
          </EmptyState>
        )
      ) : null}
      {rows.length > 0 ? (
        <div class="table-wrap">
          <table>
            <caption class="visually-hidden">Messages, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">Channel</th>
                <th scope="col">Recipient</th>
                <th scope="col">Status</th>
                <th scope="col" class="hide-narrow">
                  Provider
                </th>
                <th scope="col" class="num hide-narrow">
                  Attempts
                </th>
              </tr>
            </thead>
            <tbody>
              {rows.map((m) => (
                <tr
                  key={m.id}
                  class="clickable"
                  onClick={(e) => {
                    if ((e.target as HTMLElement).closest('a')) return;
                    location.hash = `#/messages/${encodeURIComponent(m.id)}`;
                  }}
                >
                  <td>
                    <a href={`#/messages/${encodeURIComponent(m.id)}`} aria-label={`Open the message to ${m.to} of ${formatTime(m.created_at)}`}>
                      {formatTime(m.created_at)}
                    </a>
                  </td>
                  <td>{CHANNEL_LABEL[m.channel] ?? m.channel}</td>
                  <td class="recipient">{m.to}</td>
                  <td>
                    <StatusBadge status={m.status} />
                  </td>
                  <td class="hide-narrow">{providerName(providers.data?.items, m)}</td>
                  <td class="num hide-narrow">{m.attempts}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      {moreError ? <ErrorPanel error={moreError} onRetry={() => void loadMore()} /> : null}
      {cursor && (rows.length > 0 || local) ? (
        <div class="load-more">
          <button type="button" class="button" onClick={() => void loadMore()} disabled={loadingMore}>
            {loadingMore ? 'Loading…' : 'Load more'}
          </button>
        </div>
      ) : null}
    </>
  );
}
