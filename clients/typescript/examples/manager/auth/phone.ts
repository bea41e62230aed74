// Sign-in by SMS: the manager sends a one-time code that is worthless after five minutes.
//
//   COMMUNICATION_URL=http://127.0.0.1:8080 COMMUNICATION_TOKEN=… COMMUNICATION_TENANT=acme \
//     npx tsx examples/manager/auth/phone.ts +14155550100 [login-attempt-id]
//
// The Idempotency-Key is derived from the login attempt, so a double click or a retried request
// sends the attempt's code once (same key, same body: the same message). A new attempt gets a
// new code and a new key; the same key with another body is refused (422).

import type { CommunicationClient, SendResult } from '@logicspike/communication-client';
import { communicationFromEnv, isMain } from '../communication.ts';

/** Codes older than this are refused at sign-in; the SMS expires with them. */
export const SIGN_IN_CODE_TTL_SECONDS = 300;

export interface LoginAttempt {
  /** The manager's id of this sign-in attempt. */
  id: string;
  /** E.164, e.g. +14155550100. */
  phone: string;
  /** The one-time code the manager stored (hashed) for this attempt. */
  code: string;
}

export function sendSignInCode(communication: CommunicationClient, attempt: LoginAttempt): Promise<SendResult> {
  return communication.send(
    {
      channel: 'sms',
      to: attempt.phone,
      content: { text: `Your LogicSpike sign-in code is ${attempt.code}. It expires in 5 minutes.` },
      ttl_seconds: SIGN_IN_CODE_TTL_SECONDS,
      // Never the code itself: metadata is stored and shown.
      metadata: { purpose: 'sign-in', login_attempt_id: attempt.id },
    },
    { idempotencyKey: `sign-in-sms:${attempt.id}` },
  );
}

/** Six uniformly random digits. */
export function newSignInCode(): string {
  const n = new Uint32Array(1);
  do globalThis.crypto.getRandomValues(n);
  while (n[0]! >= 4_294_000_000); // a multiple of 10^6 keeps every code equally likely
  return String(n[0]! % 1_000_000).padStart(6, '0');
}

if (isMain(import.meta.url)) {
  const env = process.env;
  const attempt: LoginAttempt = {
    id: process.argv[3] ?? env.LOGIN_ATTEMPT_ID ?? globalThis.crypto.randomUUID(),
    phone: process.argv[2] ?? '+14155550100',
    code: env.SIGN_IN_CODE ?? newSignInCode(),
  };
  const sent = await sendSignInCode(communicationFromEnv(env), attempt);
  console.log(JSON.stringify({ id: sent.id, status: sent.status, idempotencyKey: sent.idempotencyKey, replayed: sent.replayed }));
}
