// The dashboard's one way to the service: the public /v1 API with the tenant's key as a
// Bearer token. The key lives in sessionStorage only (no cookies, so no CSRF surface) and is
// forgotten on sign-out or when the API answers 401.

const KEY_STORAGE = 'communication.apiKey';

/** A field the API rejected, e.g. `{field: "config.host", message: "is required"}`. */
export interface FieldError {
  field: string;
  message: string;
}

/** An RFC 9457 problem from the API (or a network failure dressed as one). */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly detail: string;
  readonly errors: FieldError[];

  constructor(status: number, code: string, detail: string, errors: FieldError[] = []) {
    super(detail);
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.errors = errors;
  }

  /** The message for field `name` (e.g. `config.api_key`), if the API rejected it. */
  fieldError(name: string): string | undefined {
    return this.errors.find((e) => e.field === name)?.message;
  }
}

type Unauthorized = () => void;
let onUnauthorized: Unauthorized = () => {};

/** Called when a signed-in request answers 401: the key was revoked or is wrong. */
export function setUnauthorizedHandler(handler: Unauthorized): void {
  onUnauthorized = handler;
}

export function storedKey(): string | null {
  try {
    return sessionStorage.getItem(KEY_STORAGE);
  } catch {
    return null;
  }
}

export function storeKey(key: string): void {
  sessionStorage.setItem(KEY_STORAGE, key);
}

export function forgetKey(): void {
  sessionStorage.removeItem(KEY_STORAGE);
}

interface RequestOptions {
  method?: string;
  body?: unknown;
  /** Use this key instead of the stored one (signing in), and do not treat 401 as sign-out. */
  key?: string;
  signal?: AbortSignal;
}

async function problemOf(response: Response): Promise<ApiError> {
  let body: Record<string, unknown> = {};
  try {
    body = (await response.json()) as Record<string, unknown>;
  } catch {
    // Not JSON (a proxy's error page): fall back to the status text below.
  }
  const detail =
    typeof body.detail === 'string' && body.detail
      ? body.detail
      : `The service answered ${response.status} ${response.statusText}`.trim();
  const code = typeof body.code === 'string' ? body.code : `http_${response.status}`;
  const errors = Array.isArray(body.errors)
    ? (body.errors as unknown[]).flatMap((e) => {
        if (e && typeof e === 'object' && 'field' in e && 'message' in e) {
          const fe = e as { field: unknown; message: unknown };
          return [{ field: String(fe.field), message: String(fe.message) }];
        }
        return [];
      })
    : [];
  return new ApiError(response.status, code, detail, errors);
}

/** Calls the API and returns its JSON (or null for 204). Throws ApiError. */
export async function api<T>(path: string, options: RequestOptions = {}): Promise<T> {
  const key = options.key ?? storedKey();
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (key) headers.Authorization = `Bearer ${key}`;
  let body: string | undefined;
  if (options.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(options.body);
  }
  let response: Response;
  try {
    response = await fetch(path, {
      method: options.method ?? 'GET',
      headers,
      body,
      credentials: 'omit',
      cache: 'no-store',
      signal: options.signal,
    });
  } catch (e) {
    if (e instanceof DOMException && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'The service cannot be reached. Check your connection and try again.');
  }
  if (response.status === 401 && options.key === undefined) {
    onUnauthorized();
  }
  if (!response.ok) throw await problemOf(response);
  if (response.status === 204) return null as T;
  return (await response.json()) as T;
}

/** Builds a query string from the defined, non-empty values. */
export function query(params: Record<string, string | number | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}
