// Overview: sends per day by outcome (7 or 30 days, stacked bars), delivery rate and
// accept→sent p50/p95 per provider, from GET /v1/stats.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, query } from '../api';
import { CHANNEL_LABEL, formatCount, formatMs, formatPercent } from '../format';
import type { Stats, StatsBucket } from '../types';
import { EmptyState, ErrorPanel, PageHeader, Skeleton, useResource } from '../ui';

/** Chart.js loads with the first chart (its own hashed file), not with the sign-in page. */
async function loadChart() {
  const { BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, Tooltip } = await import('chart.js');
  Chart.register(BarController, BarElement, CategoryScale, LinearScale, Tooltip, Legend);
  return Chart;
}

/** Outcomes drawn in the chart: statuses grouped, coloured like the status badges. */
const OUTCOMES: { label: string; statuses: string[]; color: string }[] = [
  { label: 'Sent or delivered', statuses: ['sent', 'delivered'], color: '--good' },
  { label: 'Undelivered or bounced', statuses: ['undelivered', 'bounced'], color: '--warn' },
  { label: 'Failed', statuses: ['failed'], color: '--bad' },
  { label: 'Expired', statuses: ['expired'], color: '--grey' },
  { label: 'Suppressed', statuses: ['suppressed'], color: '--purple' },
  { label: 'In flight', statuses: ['queued', 'sending'], color: '--neutral' },
];

function outcomeCount(b: { by_status: Record<string, number> }, statuses: string[]): number {
  return statuses.reduce((n, s) => n + (b.by_status[s] ?? 0), 0);
}

function dayLabel(iso: string): string {
  const d = new Date(iso);
  return d.toLocaleDateString(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' });
}

function cssColor(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}

function statsPath(days: number): string {
  const until = new Date();
  const since = new Date(Date.UTC(until.getUTCFullYear(), until.getUTCMonth(), until.getUTCDate() - (days - 1)));
  return `/v1/stats${query({ bucket: 'day', since: since.toISOString(), until: until.toISOString() })}`;
}

export function OverviewScreen() {
  const [days, setDays] = useState<7 | 30>(7);
  const stats = useResource((signal) => api<Stats>(statsPath(days), { signal }), [days]);
  const s = stats.data;
  const totals = s?.totals;
  const finished = totals
    ? outcomeCount(totals, ['sent', 'delivered', 'undelivered', 'bounced', 'failed', 'expired'])
    : 0;
  const good = totals ? outcomeCount(totals, ['sent', 'delivered']) : 0;
  const today = s?.buckets[s.buckets.length - 1];
  return (
    <>
      <PageHeader
        title="Overview"
        explanation="How your messages fared: sends per day by outcome, and how each provider is doing."
        actions={
          <div class="segmented" role="group" aria-label="Period">
            <button type="button" aria-pressed={days === 7 ? 'true' : 'false'} onClick={() => setDays(7)}>
              7 days
            </button>
            <button type="button" aria-pressed={days === 30 ? 'true' : 'false'} onClick={() => setDays(30)}>
              30 days
            </button>
          </div>
        }
      />
      {stats.loading && !s ? <Skeleton rows={5} label="Loading the overview…" /> : null}
      {stats.error ? <ErrorPanel error={stats.error} onRetry={stats.reload} /> : null}
      {s && totals ? (
        <>
          <section class="tiles" aria-label="Totals">
            <Tile label={`Messages, last ${days} days`} value={formatCount(totals.total)} />
            <Tile label="Today (UTC)" value={formatCount(today?.total ?? 0)} />
            <Tile label="Delivery rate" value={finished ? formatPercent(good / finished) : '—'} />
            <Tile label="Failed" value={formatCount(outcomeCount(totals, ['failed']))} />
            <Tile label="In flight" value={formatCount(outcomeCount(totals, ['queued', 'sending']))} />
          </section>
          {totals.total === 0 ? (
            <EmptyState title={`No messages in the last ${days} days`}>
              <p>
                Add a provider on the <a href="#/providers">Providers</a> page, then send with <code>POST /v1/send</code>.
                Counts and charts appear here as messages go out.
              </p>
            </EmptyState>
          ) : (
            <>
              <section class="panel" aria-labelledby="chart-title">
                <h2 id="chart-title">Sends per day by outcome</h2>
                <SendsChart buckets={s.buckets} />
                <details>
                  <summary>Show as a table</summary>
                  <OutcomeTable buckets={s.buckets} />
                </details>
              </section>
              <section aria-labelledby="providers-title">
                <div class="section-head">
                  <h2 id="providers-title">Providers</h2>
                  <p>Delivery rate and time from accepted to sent, last {days} days.</p>
                </div>
                <ProviderTable stats={s} />
              </section>
            </>
          )}
        </>
      ) : null}
    </>
  );
}

function Tile(props: { label: string; value: string }) {
  return (
    <div class="tile">
      <p class="tile-label">{props.label}</p>
      <p class="tile-value">{props.value}</p>
    </div>
  );
}

function SendsChart(props: { buckets: StatsBucket[] }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    let chart: { destroy: () => void } | undefined;
    let cancelled = false;
    const labels = props.buckets.map((b) => dayLabel(b.start));
    const datasets = OUTCOMES.map((o) => ({
      label: o.label,
      data: props.buckets.map((b) => outcomeCount(b, o.statuses)),
      backgroundColor: cssColor(o.color),
      stack: 'outcomes',
      maxBarThickness: 56,
    })).filter((d) => d.data.some((n) => n > 0));
    void loadChart().then((Chart) => {
      if (cancelled || !canvas.current) return;
      chart = new Chart(canvas.current, {
        type: 'bar',
        data: { labels, datasets },
        options: {
          responsive: true,
          maintainAspectRatio: false,
          animation: false,
          scales: {
            x: { stacked: true, grid: { display: false } },
            y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } },
          },
          plugins: { legend: { position: 'bottom' } },
        },
      });
    });
    return () => {
      cancelled = true;
      chart?.destroy();
    };
  }, [props.buckets]);
  const total = props.buckets.reduce((n, b) => n + b.total, 0);
  return (
    <div class="chart-box">
      <canvas
        ref={canvas}
        role="img"
        aria-label={`Stacked bar chart of ${total} messages over ${props.buckets.length} days by outcome; the table below has the numbers.`}
      />
    </div>
  );
}

function OutcomeTable(props: { buckets: StatsBucket[] }) {
  return (
    <div class="table-wrap">
      <table>
        <thead>
          <tr>
            <th scope="col">Day (UTC)</th>
            {OUTCOMES.map((o) => (
              <th key={o.label} scope="col" class="num">
                {o.label}
              </th>
            ))}
            <th scope="col" class="num">
              Total
            </th>
          </tr>
        </thead>
        <tbody>
          {props.buckets.map((b) => (
            <tr key={b.start}>
              <th scope="row">{dayLabel(b.start)}</th>
              {OUTCOMES.map((o) => (
                <td key={o.label} class="num">
                  {outcomeCount(b, o.statuses)}
                </td>
              ))}
              <td class="num">{b.total}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function ProviderTable(props: { stats: Stats }) {
  const rows = props.stats.providers.slice().sort((a, b) => b.total - a.total);
  if (rows.length === 0) {
    return (
      <EmptyState title="No provider has handled a message yet">
        <p>Messages still queued or suppressed count above but have no provider.</p>
      </EmptyState>
    );
  }
  return (
    <div class="table-wrap">
      <table>
        <caption class="visually-hidden">Delivery per provider</caption>
        <thead>
          <tr>
            <th scope="col">Provider</th>
            <th scope="col">Channel</th>
            <th scope="col" class="num">
              Messages
            </th>
            <th scope="col" class="num">
              Delivery rate
            </th>
            <th scope="col" class="num">
              p50 accept→sent
            </th>
            <th scope="col" class="num">
              p95 accept→sent
            </th>
          </tr>
        </thead>
        <tbody>
          {rows.map((p) => (
            <tr key={p.provider_id}>
              <td>
                {p.name ?? '(deleted provider)'}
                {p.platform ? <span class="muted"> · platform default</span> : null}
              </td>
              <td>{CHANNEL_LABEL[p.channel] ?? p.channel}</td>
              <td class="num">{formatCount(p.total)}</td>
              <td class="num">{formatPercent(p.delivery_rate)}</td>
              <td class="num">{formatMs(p.latency_ms?.p50)}</td>
              <td class="num">{formatMs(p.latency_ms?.p95)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
