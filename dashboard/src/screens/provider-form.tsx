// Add / edit a provider: pick a kind from cards, then the kind's fields exactly as
// GET /v1/provider-kinds describes them (no per-kind code here). Secrets are write-only:
// on edit the stored value shows only as its mask, and a blank input keeps it.
import { useState } from 'preact/hooks';
import { api, ApiError } from '../api';
import { CHANNEL_LABEL } from '../format';
import type { Channel, KindField, Provider, ProviderKind } from '../types';
import { asApiError, ErrorPanel, Modal } from '../ui';

export type SaveIntent = 'save' | 'save-and-test';

interface Props {
  kinds: ProviderKind[];
  /** The provider being edited; absent when adding. */
  provider?: Provider;
  /** Preselected channel when adding from a channel's section. */
  channel?: Channel;
  onClose: () => void;
  onSaved: (provider: Provider, intent: SaveIntent) => void;
}

type Values = Record<string, string | boolean>;

/** Preact types `<input>` by a literal `type`; a type chosen at run time needs this widening. */
export function inputType(t: 'text' | 'password' | 'number' | 'email'): 'text' {
  return t as 'text';
}

export function kindLabel(kinds: ProviderKind[] | undefined, kind: string): string {
  return kinds?.find((k) => k.kind === kind)?.label ?? kind.charAt(0).toUpperCase() + kind.slice(1);
}

function fieldLabel(f: KindField): string {
  return f.label ?? f.name.replace(/_/g, ' ').replace(/^./, (c) => c.toUpperCase());
}

function initialValues(kind: ProviderKind, provider?: Provider): Values {
  const values: Values = {};
  for (const f of kind.fields) {
    const stored = provider?.config[f.name];
    if (f.type === 'secret') values[f.name] = '';
    else if (f.type === 'bool') values[f.name] = stored === undefined ? f.default === true : stored === true;
    else if (stored !== undefined && stored !== null) values[f.name] = String(stored);
    else if (f.type === 'select' && f.required && f.options?.length)
      values[f.name] = String(f.default ?? f.options[0]);
    else values[f.name] = f.default !== undefined && f.default !== null ? String(f.default) : '';
  }
  return values;
}

/** The `config` to send: typed values; on edit, blank secrets left out (kept), cleared fields null. */
function configOf(kind: ProviderKind, values: Values, editing: boolean): Record<string, unknown> {
  const config: Record<string, unknown> = {};
  for (const f of kind.fields) {
    const v = values[f.name];
    if (f.type === 'bool') {
      config[f.name] = v === true;
      continue;
    }
    const s = typeof v === 'string' ? v.trim() : '';
    if (s === '') {
      if (editing && f.type !== 'secret') config[f.name] = null;
      continue;
    }
    if (f.type === 'number') {
      const n = Number(s);
      config[f.name] = Number.isFinite(n) ? n : s;
    } else {
      config[f.name] = f.type === 'secret' ? v : s;
    }
  }
  return config;
}

export function ProviderForm(props: Props) {
  const editing = props.provider !== undefined;
  const [kind, setKind] = useState<ProviderKind | undefined>(
    editing ? props.kinds.find((k) => k.kind === props.provider?.kind) : undefined,
  );
  const title = editing
    ? `Edit ${props.provider?.name}`
    : kind
      ? `Add a ${kind.label ?? kind.kind} provider`
      : 'Add a provider';
  return (
    <Modal title={title} onClose={props.onClose} wide>
      {kind ? (
        <KindForm {...props} kind={kind} onBack={editing ? undefined : () => setKind(undefined)} />
      ) : editing ? (
        <ErrorPanel error={new ApiError(0, 'unknown_kind', `This service does not describe the kind "${props.provider?.kind}".`)} />
      ) : (
        <KindPicker kinds={props.kinds} channel={props.channel} onPick={setKind} />
      )}
    </Modal>
  );
}

function KindPicker(props: { kinds: ProviderKind[]; channel?: Channel; onPick: (k: ProviderKind) => void }) {
  const kinds = props.channel ? props.kinds.filter((k) => k.channels.includes(props.channel as Channel)) : props.kinds;
  return (
    <div>
      <p class="explanation">Choose the service you have an account with.</p>
      <ul class="kind-cards">
        {kinds.map((k) => (
          <li key={k.kind}>
            <button type="button" class="kind-card" onClick={() => props.onPick(k)}>
              <strong>{k.label ?? k.kind}</strong>
              <span>{k.channels.map((c) => CHANNEL_LABEL[c] ?? c).join(' and ')}</span>
              {k.description ? <span>{k.description}</span> : null}
            </button>
          </li>
        ))}
      </ul>
    </div>
  );
}

function KindForm(props: Props & { kind: ProviderKind; onBack?: () => void }) {
  const { kind, provider } = props;
  const editing = provider !== undefined;
  const [name, setName] = useState(provider?.name ?? '');
  const [channel, setChannel] = useState<Channel>(
    provider?.channel ?? (props.channel && kind.channels.includes(props.channel) ? props.channel : kind.channels[0]),
  );
  const [enabled, setEnabled] = useState(provider?.enabled ?? true);
  const [values, setValues] = useState<Values>(() => initialValues(kind, provider));
  const [shown, setShown] = useState<Record<string, boolean>>({});
  const [error, setError] = useState<ApiError | undefined>();
  const [busy, setBusy] = useState(false);

  const set = (field: string, value: string | boolean) => setValues({ ...values, [field]: value });
  /** The API's message for a field, as a sentence: "is required" becomes "API key is required". */
  const fieldError = (field: string) => {
    const message = error?.fieldError(field);
    if (!message) return undefined;
    if (!/^(is|must|should|cannot|may|has|needs|was)\b/.test(message)) return message;
    const name = field.replace(/^config\./, '');
    const f = kind.fields.find((x) => x.name === name);
    const label = field === 'name' ? 'Name' : f ? fieldLabel(f) : name;
    return `${label} ${message}`;
  };
  const knownFields = new Set(['name', 'channel', 'enabled', ...kind.fields.map((f) => `config.${f.name}`)]);
  const generalErrors = error?.errors.filter((e) => !knownFields.has(e.field)) ?? [];

  const submit = async (intent: SaveIntent) => {
    setBusy(true);
    setError(undefined);
    const config = configOf(kind, values, editing);
    try {
      const saved = editing
        ? await api<Provider>(`/v1/providers/${encodeURIComponent(provider.id)}`, {
            method: 'PATCH',
            body: { name: name.trim(), enabled, config },
          })
        : await api<Provider>('/v1/providers', {
            method: 'POST',
            body: { name: name.trim(), channel, kind: kind.kind, enabled, config },
          });
      props.onSaved(saved, intent);
    } catch (e) {
      setError(asApiError(e));
      setBusy(false);
    }
  };

  const describedBy = (id: string, help: boolean, err: boolean) =>
    [help ? `${id}-help` : '', err ? `${id}-error` : ''].filter(Boolean).join(' ') || undefined;

  return (
    <form
      noValidate
      onSubmit={(e) => {
        e.preventDefault();
        void submit('save');
      }}
    >
      {error ? (
        <div class="error-panel general-error" role="alert">
          <p class="error-title">{error.errors.length ? 'Some fields need attention' : 'Saving failed'}</p>
          <p>{error.detail}</p>
          {generalErrors.map((e) => (
            <p key={e.field}>
              {e.field ? `${e.field}: ` : ''}
              {e.message}
            </p>
          ))}
        </div>
      ) : null}
      {kind.description ? <p class="explanation">{kind.description}</p> : null}

      <label for="provider-name">
        Name<span class="required-mark" aria-hidden="true">*</span>
      </label>
      <input
        id="provider-name"
        type="text"
        required
        aria-required="true"
        value={name}
        placeholder={`${kind.kind}-main`}
        onInput={(e) => setName((e.target as HTMLInputElement).value)}
        aria-invalid={fieldError('name') ? 'true' : undefined}
        aria-describedby={describedBy('provider-name', true, !!fieldError('name'))}
        data-autofocus
      />
      <p class="field-help" id="provider-name-help">
        Your own name for this account, shown in logs and the message timeline.
      </p>
      {fieldError('name') ? (
        <p class="field-error" id="provider-name-error">
          {fieldError('name')}
        </p>
      ) : null}

      {!editing && kind.channels.length > 1 ? (
        <>
          <label for="provider-channel">Channel</label>
          <select
            id="provider-channel"
            value={channel}
            onChange={(e) => setChannel((e.target as HTMLSelectElement).value as Channel)}
          >
            {kind.channels.map((c) => (
              <option key={c} value={c}>
                {CHANNEL_LABEL[c] ?? c}
              </option>
            ))}
          </select>
          {fieldError('channel') ? <p class="field-error">{fieldError('channel')}</p> : null}
        </>
      ) : null}

      {kind.fields.map((f) => {
        const id = `field-${f.name}`;
        const err = fieldError(`config.${f.name}`);
        const stored = provider?.config[f.name];
        const secretStored = editing && f.type === 'secret' && stored !== undefined && stored !== null;
        const help = secretStored
          ? `Stored: ${String(stored)} — leave blank to keep it.${f.help ? ` ${f.help}` : ''}`
          : f.help;
        const required = f.required && !secretStored;
        const common = {
          id,
          'aria-invalid': err ? ('true' as const) : undefined,
          'aria-describedby': describedBy(id, !!help, !!err),
          'aria-required': required ? ('true' as const) : undefined,
        };
        if (f.type === 'bool') {
          return (
            <div key={f.name}>
              <div class="checkbox-row">
                <input
                  {...common}
                  type="checkbox"
                  checked={values[f.name] === true}
                  onChange={(e) => set(f.name, (e.target as HTMLInputElement).checked)}
                />
                <label for={id}>{fieldLabel(f)}</label>
              </div>
              {help ? <p class="field-help" id={`${id}-help`}>{help}</p> : null}
              {err ? <p class="field-error" id={`${id}-error`}>{err}</p> : null}
            </div>
          );
        }
        const value = typeof values[f.name] === 'string' ? (values[f.name] as string) : '';
        const example = f.example !== undefined && f.example !== null && f.example !== '' ? `e.g. ${String(f.example)}` : undefined;
        let input;
        if (f.type === 'select') {
          input = (
            <select {...common} value={value} onChange={(e) => set(f.name, (e.target as HTMLSelectElement).value)}>
              {!f.required ? <option value="">(not set)</option> : null}
              {(f.options ?? []).map((o) => (
                <option key={o} value={o}>
                  {o}
                </option>
              ))}
            </select>
          );
        } else if (f.type === 'secret') {
          input = (
            <div class="secret-row">
              <input
                {...common}
                type={inputType(shown[f.name] ? 'text' : 'password')}
                autoComplete="new-password"
                spellcheck={false}
                value={value}
                placeholder={secretStored ? 'Leave blank to keep' : example}
                onInput={(e) => set(f.name, (e.target as HTMLInputElement).value)}
              />
              <button
                type="button"
                class="button small"
                aria-pressed={shown[f.name] ? 'true' : 'false'}
                aria-label={`${shown[f.name] ? 'Hide' : 'Show'} ${fieldLabel(f)}`}
                onClick={() => setShown({ ...shown, [f.name]: !shown[f.name] })}
              >
                {shown[f.name] ? 'Hide' : 'Show'}
              </button>
            </div>
          );
        } else {
          input = (
            <input
              {...common}
              type={inputType(f.type === 'number' ? 'number' : 'text')}
              inputMode={f.type === 'number' ? 'numeric' : undefined}
              spellcheck={false}
              value={value}
              placeholder={example}
              onInput={(e) => set(f.name, (e.target as HTMLInputElement).value)}
            />
          );
        }
        return (
          <div key={f.name}>
            <label for={id}>
              {fieldLabel(f)}
              {required ? <span class="required-mark" aria-hidden="true">*</span> : null}
              {!f.required ? <span class="muted"> (optional)</span> : null}
            </label>
            {input}
            {help ? <p class="field-help" id={`${id}-help`}>{help}</p> : null}
            {err ? <p class="field-error" id={`${id}-error`}>{err}</p> : null}
          </div>
        );
      })}

      <div class="checkbox-row">
        <input
          id="provider-enabled"
          type="checkbox"
          checked={enabled}
          onChange={(e) => setEnabled((e.target as HTMLInputElement).checked)}
        />
        <label for="provider-enabled">Enabled (tried when sending)</label>
      </div>

      <div class="form-actions">
        {props.onBack ? (
          <button type="button" class="button subtle" onClick={props.onBack}>
            ← Other kind
          </button>
        ) : null}
        <span class="spacer" />
        <button type="button" class="button" onClick={props.onClose}>
          Cancel
        </button>
        <button type="submit" class="button" disabled={busy}>
          Save
        </button>
        <button type="button" class="button primary" disabled={busy} onClick={() => void submit('save-and-test')}>
          Save and test
        </button>
      </div>
    </form>
  );
}
