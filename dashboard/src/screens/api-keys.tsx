// API keys: list (name, prefix, created, last used), create (the key shown once, with a
// copy button), revoke (after a confirmation naming the key).
import { useRef, useState } from 'preact/hooks';
import { api, storedKey } from '../api';
import { formatTime, timeAgo } from '../format';
import type { ApiKey, CreatedApiKey, Page } from '../types';
import { asApiError, ConfirmDialog, EmptyState, ErrorPanel, Modal, PageHeader, Skeleton, useResource } from '../ui';
import type { ApiError } from '../api';

function keyTitle(k: ApiKey): string {
  return k.name ? `“${k.name}” (${k.prefix}…)` : `${k.prefix}…`;
}

export function ApiKeysScreen() {
  const keys = useResource((signal) => api<Page<ApiKey>>('/v1/api-keys?limit=200', { signal }), []);
  const [creating, setCreating] = useState(false);
  const [revoking, setRevoking] = useState<ApiKey | undefined>();
  const current = storedKey();
  const items = keys.data?.items ?? [];
  return (
    <>
      <PageHeader
        title="API keys"
        explanation="Keys your programs use to send and read messages for this tenant. Revoke a key the moment it leaks."
        actions={
          <button type="button" class="button primary" onClick={() => setCreating(true)}>
            Create key
          </button>
        }
      />
      {keys.loading && !keys.data ? <Skeleton rows={3} label="Loading API keys…" /> : null}
      {keys.error ? <ErrorPanel error={keys.error} onRetry={keys.reload} /> : null}
      {keys.data && items.length === 0 ? (
        <EmptyState title="No API keys">
          <p>Create a key for each program that sends messages, so you can revoke one without stopping the others.</p>
        </EmptyState>
      ) : null}
      {items.length > 0 ? (
        <div class="table-wrap">
          <table>
            <caption class="visually-hidden">Active API keys</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Key</th>
                <th scope="col" class="hide-narrow">
                  Created
                </th>
                <th scope="col">Last used</th>
                <th scope="col">
                  <span class="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {items.map((k) => {
                const mine = current !== null && current.startsWith(k.prefix);
                return (
                  <tr key={k.id}>
                    <td>
                      {k.name ?? <span class="muted">(no name)</span>}
                      {mine ? <span class="badge tone-neutral badge-gap">this browser</span> : null}
                    </td>
                    <td class="mono">{k.prefix}…</td>
                    <td class="hide-narrow">{formatTime(k.created_at)}</td>
                    <td title={k.last_used_at ? formatTime(k.last_used_at) : undefined}>{timeAgo(k.last_used_at)}</td>
                    <td class="num">
                      <button
                        type="button"
                        class="button small"
                        onClick={() => setRevoking(k)}
                        aria-label={`Revoke ${k.name ?? k.prefix}`}
                      >
                        Revoke
                      </button>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      ) : null}
      {creating ? (
        <CreateKeyDialog
          onClose={() => setCreating(false)}
          onCreated={(k) => keys.set({ items: [k, ...items], next_cursor: keys.data?.next_cursor ?? null })}
        />
      ) : null}
      {revoking ? (
        <ConfirmDialog
          title={`Revoke ${keyTitle(revoking)}?`}
          message={
            <>
              Programs using the key {keyTitle(revoking)} get “401 Unauthorized” from now on. This cannot be undone.
              {current?.startsWith(revoking.prefix) ? ' It is the key this browser is signed in with: you will be signed out.' : ''}
            </>
          }
          confirmLabel="Revoke key"
          onClose={() => setRevoking(undefined)}
          onConfirm={async () => {
            await api(`/v1/api-keys/${encodeURIComponent(revoking.id)}`, { method: 'DELETE' });
            keys.set({ items: items.filter((k) => k.id !== revoking.id), next_cursor: keys.data?.next_cursor ?? null });
          }}
        />
      ) : null}
    </>
  );
}

function CreateKeyDialog(props: { onClose: () => void; onCreated: (k: ApiKey) => void }) {
  const [name, setName] = useState('');
  const [created, setCreated] = useState<CreatedApiKey | undefined>();
  const [error, setError] = useState<ApiError | undefined>();
  const [busy, setBusy] = useState(false);
  const [copied, setCopied] = useState<string | undefined>();
  const keyRef = useRef<HTMLInputElement>(null);

  const create = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const k = await api<CreatedApiKey>('/v1/api-keys', {
        method: 'POST',
        body: name.trim() ? { name: name.trim() } : {},
      });
      setCreated(k);
      const { key: _secret, ...listed } = k;
      props.onCreated({ ...listed, last_used_at: null });
    } catch (err) {
      setError(asApiError(err));
    } finally {
      setBusy(false);
    }
  };

  const copy = async () => {
    if (!created) return;
    try {
      await navigator.clipboard.writeText(created.key);
      setCopied('Copied to the clipboard.');
    } catch {
      // No clipboard access (e.g. plain http): select it for Ctrl+C instead.
      keyRef.current?.select();
      setCopied('Selected: press Ctrl+C (⌘C) to copy.');
    }
  };

  return (
    <Modal title={created ? 'Your new API key' : 'Create an API key'} onClose={props.onClose}>
      {created ? (
        <>
          <p>
            <strong>Copy it now: you will not see it again.</strong> Store it where your program reads its secrets.
          </p>
          <label for="new-key">API key{created.name ? ` “${created.name}”` : ''}</label>
          <div class="key-reveal">
            <input id="new-key" ref={keyRef} type="text" readOnly value={created.key} class="mono" spellcheck={false} />
            <button type="button" class="button" onClick={() => void copy()} data-autofocus>
              Copy
            </button>
          </div>
          <p role="status" class="muted">
            {copied ?? ''}
          </p>
          <div class="form-actions">
            <button type="button" class="button primary" onClick={props.onClose}>
              Done
            </button>
          </div>
        </>
      ) : (
        <form onSubmit={create} noValidate>
          {error ? <ErrorPanel error={error} /> : null}
          <label for="key-name">Name</label>
          <input
            id="key-name"
            type="text"
            value={name}
            maxLength={100}
            placeholder="checkout backend"
            onInput={(e) => setName((e.target as HTMLInputElement).value)}
            aria-describedby="key-name-help"
            aria-invalid={error?.fieldError('name') ? 'true' : undefined}
            data-autofocus
          />
          <p class="field-help" id="key-name-help">
            Say which program uses it, so you know what stops working if you revoke it.
          </p>
          {error?.fieldError('name') ? <p class="field-error">{error.fieldError('name')}</p> : null}
          <div class="form-actions">
            <button type="button" class="button" onClick={props.onClose}>
              Cancel
            </button>
            <button type="submit" class="button primary" disabled={busy}>
              {busy ? 'Creating…' : 'Create key'}
            </button>
          </div>
        </form>
      )}
    </Modal>
  );
}
