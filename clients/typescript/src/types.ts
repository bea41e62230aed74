// The client's public types, derived from the service's generated OpenAPI types by path and
// method (not by schema name), so renaming a schema struct in the service does not break them.

import type { paths } from './generated/openapi.js';

type JsonOf<T> = T extends { content: { 'application/json': infer B } } ? B : never;

/** The JSON request body of an operation. */
export type RequestBody<Op> = Op extends { requestBody?: infer R } ? JsonOf<NonNullable<R>> : never;

/** The JSON body of an operation's response with status `S`. */
export type ResponseBody<Op, S extends number> = Op extends { responses: infer R }
  ? S extends keyof R
    ? JsonOf<R[S]>
    : never
  : never;

type Get<P extends keyof paths> = paths[P] extends { get: infer Op } ? Op : never;
type Post<P extends keyof paths> = paths[P] extends { post: infer Op } ? Op : never;
type Patch<P extends keyof paths> = paths[P] extends { patch: infer Op } ? Op : never;

/** Body of `POST /v1/send`: `{channel, to, content, provider_id?, metadata?, ttl_seconds?, …}`. */
export type SendMessage = RequestBody<Post<'/v1/send'>>;
/** 202 answer of `POST /v1/send`. */
export type SendAccepted = ResponseBody<Post<'/v1/send'>, 202>;
/** A message with its events (`GET /v1/messages/{id}`). */
export type Message = ResponseBody<Get<'/v1/messages/{id}'>, 200>;
/** One page of `GET /v1/messages`. */
export type MessagePage = ResponseBody<Get<'/v1/messages'>, 200>;
export type MessageStatus =
  | 'queued'
  | 'sending'
  | 'sent'
  | 'delivered'
  | 'undelivered'
  | 'bounced'
  | 'failed'
  | 'expired'
  | 'suppressed';
export type Channel = 'email' | 'sms';

export type ProviderCreate = RequestBody<Post<'/v1/providers'>>;
export type Provider = ResponseBody<Post<'/v1/providers'>, 201>;
export type ProviderList = ResponseBody<Get<'/v1/providers'>, 200>;
export type ProviderPatch = RequestBody<Patch<'/v1/providers/{id}'>>;
export type ProviderCheck = ResponseBody<Post<'/v1/providers/{id}/test'>, 200>;

/** One input of a provider kind's settings form. */
export interface ProviderKindField {
  name: string;
  label: string;
  type: 'text' | 'secret' | 'select' | 'number' | 'bool';
  required: boolean;
  options?: string[] | null;
  help?: string | null;
  example?: string | null;
}

/** Used until the service documents `GET /v1/provider-kinds` itself. */
export interface ProviderKindListFallback {
  items: Array<{
    kind: string;
    label: string;
    description: string;
    channels: Channel[];
    receipts: boolean;
    fields: ProviderKindField[];
  }>;
}

/** `GET /v1/provider-kinds`: every provider kind with the fields of its settings form. */
export type ProviderKindList = paths extends { '/v1/provider-kinds': { get: infer Op } }
  ? ResponseBody<Op, 200>
  : ProviderKindListFallback;

/** Filters of `GET /v1/messages` (the page size is `limit`, 1–200). */
export interface MessageFilter {
  status?: MessageStatus;
  channel?: Channel;
  /** Inclusive; a Date or an RFC 3339 string. */
  since?: Date | string;
  /** Exclusive; a Date or an RFC 3339 string. */
  until?: Date | string;
  /** Only messages sent (or last tried) through this provider (its id). */
  providerId?: string;
  /**
   * Exactly this recipient, normalized as a send normalizes it: with `channel`, an email
   * address or an E.164 number of that channel; without, matched as given (trimmed).
   */
  to?: string;
  /** Page size (1–200); the iterator still walks every page. */
  limit?: number;
}
