// Building blocks every screen shares: page header, loading skeleton, error panel with
// retry, empty state, status badge, and an accessible modal dialog.
import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from './api';
import { STATUS_LABEL, statusTone } from './format';
import type { MessageStatus } from './types';

export interface Resource<T> {
  data: T | undefined;
  error: ApiError | undefined;
  loading: boolean;
  reload: () => void;
  /** Replaces the data in place (after a change the caller already knows the result of). */
  set: (data: T) => void;
}

function asApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  return new ApiError(0, 'unexpected', e instanceof Error ? e.message : String(e));
}

/** Loads `load()` now and whenever `deps` change; `reload` loads again. */
export function useResource<T>(load: (signal: AbortSignal) => Promise<T>, deps: unknown[]): Resource<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<ApiError | undefined>(undefined);
  const [loading, setLoading] = useState(true);
  const [generation, setGeneration] = useState(0);
  useEffect(() => {
    const abort = new AbortController();
    setLoading(true);
    setError(undefined);
    load(abort.signal).then(
      (d) => {
        if (abort.signal.aborted) return;
        setData(d);
        setLoading(false);
      },
      (e: unknown) => {
        if (abort.signal.aborted) return;
        setError(asApiError(e));
        setLoading(false);
      },
    );
    return () => abort.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, generation]);
  const reload = useCallback(() => setGeneration((g) => g + 1), []);
  return { data, error, loading, reload, set: setData };
}

export function PageHeader(props: { title: string; explanation: string; actions?: ComponentChildren }) {
  return (
    <header class="page-header">
      <div>
        <h1 tabIndex={-1} id="page-title">
          {props.title}
        </h1>
        <p class="explanation">{props.explanation}</p>
      </div>
      {props.actions ? <div class="page-actions">{props.actions}</div> : null}
    </header>
  );
}

export function Skeleton(props: { rows?: number; label?: string }) {
  const rows = Array.from({ length: props.rows ?? 4 }, (_, i) => i);
  return (
    <div class="skeleton" role="status" aria-live="polite">
      <span class="visually-hidden">{props.label ?? 'Loading…'}</span>
      {rows.map((i) => (
        <div key={i} class="skeleton-row" aria-hidden="true" />
      ))}
    </div>
  );
}

export function ErrorPanel(props: { error: ApiError; onRetry?: () => void; title?: string }) {
  return (
    <div class="error-panel" role="alert">
      <p class="error-title">{props.title ?? 'Something went wrong'}</p>
      <p>{props.error.detail}</p>
      {props.onRetry ? (
        <button type="button" class="button" onClick={props.onRetry}>
          Retry
        </button>
      ) : null}
    </div>
  );
}

export function EmptyState(props: { title: string; children?: ComponentChildren }) {
  return (
    <div class="empty-state">
      <p class="empty-title">{props.title}</p>
      {props.children}
    </div>
  );
}

export function StatusBadge(props: { status: MessageStatus | string }) {
  const label = STATUS_LABEL[props.status as MessageStatus] ?? props.status;
  return <span class={`badge tone-${statusTone(props.status)}`}>{label}</span>;
}

/**
 * The control that was last clicked (or pressed with Enter/Space, which also clicks): the
 * opener a dialog returns focus to, even where a click does not focus the button itself.
 */
let lastActivated: HTMLElement | null = null;
document.addEventListener(
  'click',
  (e) => {
    const target = e.target instanceof Element ? e.target.closest<HTMLElement>('button, a[href], [tabindex]') : null;
    if (target) lastActivated = target;
  },
  true,
);

function openerOf(): HTMLElement | null {
  const active = document.activeElement as HTMLElement | null;
  if (active && active !== document.body && !active.closest('[role="dialog"], [role="alertdialog"]')) return active;
  return lastActivated;
}

const FOCUSABLE =
  'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

/**
 * A modal dialog: focus moves in and stays in (Tab wraps), Escape or the close button
 * closes it, and focus returns to the element that opened it.
 */
export function Modal(props: {
  title: string;
  onClose: () => void;
  children: ComponentChildren;
  wide?: boolean;
  /** A dialog that asks for a decision is an alertdialog. */
  alert?: boolean;
}) {
  const ref = useRef<HTMLDivElement>(null);
  const onClose = useRef(props.onClose);
  onClose.current = props.onClose;
  // Captured while rendering, before anything inside the dialog can take the focus.
  const [opener] = useState(openerOf);
  useEffect(() => {
    const dialog = ref.current;
    const first = dialog?.querySelector<HTMLElement>('[data-autofocus]') ?? dialog?.querySelector<HTMLElement>(FOCUSABLE);
    (first ?? dialog)?.focus();
    const onKey = (e: KeyboardEvent) => {
      if (!dialog) return;
      if (e.key === 'Escape') {
        e.preventDefault();
        onClose.current();
        return;
      }
      if (e.key !== 'Tab') return;
      const items = Array.from(dialog.querySelectorAll<HTMLElement>(FOCUSABLE)).filter((el) => el.offsetParent !== null);
      if (items.length === 0) {
        e.preventDefault();
        return;
      }
      const firstItem = items[0];
      const lastItem = items[items.length - 1];
      if (e.shiftKey && (document.activeElement === firstItem || !dialog.contains(document.activeElement))) {
        e.preventDefault();
        lastItem.focus();
      } else if (!e.shiftKey && (document.activeElement === lastItem || !dialog.contains(document.activeElement))) {
        e.preventDefault();
        firstItem.focus();
      }
    };
    document.addEventListener('keydown', onKey);
    document.body.classList.add('modal-open');
    return () => {
      document.removeEventListener('keydown', onKey);
      document.body.classList.remove('modal-open');
      if (opener && document.contains(opener)) opener.focus();
    };
  }, []);
  return (
    <div class="modal-backdrop">
      <div
        ref={ref}
        class={props.wide ? 'modal modal-wide' : 'modal'}
        role={props.alert ? 'alertdialog' : 'dialog'}
        aria-modal="true"
        aria-labelledby="modal-title"
        tabIndex={-1}
      >
        <div class="modal-head">
          <h2 id="modal-title">{props.title}</h2>
          <button type="button" class="icon-button" aria-label="Close" onClick={props.onClose}>
            ×
          </button>
        </div>
        <div class="modal-body">{props.children}</div>
      </div>
    </div>
  );
}

/** Asks before doing something that cannot be undone. */
export function ConfirmDialog(props: {
  title: string;
  message: ComponentChildren;
  confirmLabel: string;
  onConfirm: () => Promise<void>;
  onClose: () => void;
}) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | undefined>();
  const confirm = async () => {
    setBusy(true);
    setError(undefined);
    try {
      await props.onConfirm();
      props.onClose();
    } catch (e) {
      setError(asApiError(e));
      setBusy(false);
    }
  };
  return (
    <Modal title={props.title} onClose={props.onClose} alert>
      <p>{props.message}</p>
      {error ? <ErrorPanel error={error} /> : null}
      <div class="form-actions">
        <button type="button" class="button" onClick={props.onClose} data-autofocus>
          Cancel
        </button>
        <button type="button" class="button danger" onClick={confirm} disabled={busy}>
          {busy ? 'Working…' : props.confirmLabel}
        </button>
      </div>
    </Modal>
  );
}

export { asApiError };
