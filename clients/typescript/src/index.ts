// @logicspike/communication-client: the HTTP client. Runs on Cloudflare Workers, Node ≥ 20,
// Deno and browsers (fetch only; no Node built-ins). Direct AMQP publishing for Node lives in
// the separate entry point `@logicspike/communication-client/amqp`.

export {
  CommunicationClient,
  FINAL_STATUSES,
  UnexpectedStatusError,
  type CallOptions,
  type CommunicationClientOptions,
  type FetchLike,
  type Fetcher,
  type SendOptions,
  type SendResult,
  type WaitOptions,
} from './client.js';
export {
  CommunicationError,
  CommunicationNetworkError,
  CommunicationTimeoutError,
  MessageValidationError,
  parseRetryAfter,
  type FieldError,
} from './errors.js';
export { RETRYABLE_STATUSES, type RetryOptions } from './retry.js';
export { validateSend, type SendDraft } from './validation.js';
export type * from './types.js';
export type { paths, components } from './generated/openapi.js';
