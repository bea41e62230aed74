// Errors the client throws. Every one carries enough to decide what to do next without parsing
// messages: an HTTP answer becomes a CommunicationError with the service's problem+json fields.

/** One invalid field, as the service names it (`to`, `content.text`, `Idempotency-Key`, …). */
export interface FieldError {
  field: string;
  message: string;
}

/** The service answered with an error status (RFC 9457 problem details). */
export class CommunicationError extends Error {
  override readonly name = 'CommunicationError';
  /** HTTP status. */
  readonly status: number;
  /** Stable machine code (`validation_failed`, `not_found`, `dependency_unavailable`, …). */
  readonly code: string;
  /** Human explanation from the service. */
  readonly detail: string;
  /** Field errors of a validation failure (empty otherwise). */
  readonly errors: FieldError[];
  /** `Retry-After` of the answer, in milliseconds, when it had one. */
  readonly retryAfterMs: number | undefined;

  constructor(init: { status: number; code: string; detail: string; errors?: FieldError[]; retryAfterMs?: number }) {
    super(`${init.status} ${init.code}: ${init.detail}`);
    this.status = init.status;
    this.code = init.code;
    this.detail = init.detail;
    this.errors = init.errors ?? [];
    this.retryAfterMs = init.retryAfterMs;
  }

  /** Reads a failed response's problem+json body (tolerating any other body). */
  static async fromResponse(response: Response): Promise<CommunicationError> {
    let body: unknown;
    try {
      body = await response.json();
    } catch {
      body = undefined;
    }
    const problem = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
    const errors = Array.isArray(problem.errors)
      ? problem.errors
          .filter((e): e is Record<string, unknown> => typeof e === 'object' && e !== null)
          .map((e) => ({ field: String(e.field ?? ''), message: String(e.message ?? '') }))
      : [];
    return new CommunicationError({
      status: response.status,
      code: typeof problem.code === 'string' ? problem.code : `http_${response.status}`,
      detail:
        typeof problem.detail === 'string'
          ? problem.detail
          : typeof problem.title === 'string'
            ? problem.title
            : response.statusText || `HTTP ${response.status}`,
      errors,
      retryAfterMs: parseRetryAfter(response.headers.get('retry-after')),
    });
  }
}

/** The request never got an answer (connection refused or reset, DNS, TLS, …). */
export class CommunicationNetworkError extends Error {
  override readonly name = 'CommunicationNetworkError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The overall deadline (`timeoutMs`) passed before an answer, retries included. */
export class CommunicationTimeoutError extends Error {
  override readonly name = 'CommunicationTimeoutError';
  /** The failure of the last attempt, if one failed before time ran out. */
  readonly lastError: unknown;
  constructor(message: string, lastError?: unknown) {
    super(message, lastError === undefined ? undefined : { cause: lastError });
    this.lastError = lastError;
  }
}

/** A message failed the service's rules before anything was sent (direct publishing). */
export class MessageValidationError extends Error {
  override readonly name = 'MessageValidationError';
  readonly errors: FieldError[];
  constructor(errors: FieldError[]) {
    super(`invalid message: ${errors.map((e) => (e.field ? `${e.field} ${e.message}` : e.message)).join('; ')}`);
    this.errors = errors;
  }
}

/** `Retry-After` as milliseconds: delta-seconds or an HTTP date; undefined when absent/invalid. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value === null) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}
