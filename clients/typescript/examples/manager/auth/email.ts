// Email verification: the manager mails a link that confirms the address belongs to the user.
//
//   COMMUNICATION_URL=http://127.0.0.1:8080 COMMUNICATION_TOKEN=… COMMUNICATION_TENANT=acme \
//     npx tsx examples/manager/auth/email.ts ada@example.com [verification-id]
//
// The Idempotency-Key is derived from the verification (one per address change), so retries
// and double submits send one email.

import type { CommunicationClient, SendResult } from '@logicspike/communication-client';
import { communicationFromEnv, isMain } from '../communication.ts';

/** The link is refused after a day; an email stuck longer than that is not worth sending. */
export const VERIFICATION_TTL_SECONDS = 24 * 3600;

export interface EmailVerification {
  /** The manager's id of this verification (a new one per address change). */
  id: string;
  email: string;
  /** The link with the verification token, e.g. https://app.logicspike.dev/verify?token=… */
  verifyUrl: string;
}

const escapeHtml = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

export function sendVerificationEmail(communication: CommunicationClient, verification: EmailVerification): Promise<SendResult> {
  const link = escapeHtml(verification.verifyUrl);
  return communication.send(
    {
      channel: 'email',
      to: verification.email,
      content: {
        subject: 'Confirm your email address',
        text: `Confirm your email address for LogicSpike by opening this link within 24 hours:\n\n${verification.verifyUrl}\n\nIf you did not ask for this, ignore this email.`,
        html: `<p>Confirm your email address for LogicSpike within 24 hours:</p><p><a href="${link}">Confirm my address</a></p><p>If you did not ask for this, ignore this email.</p>`,
      },
      ttl_seconds: VERIFICATION_TTL_SECONDS,
      metadata: { purpose: 'verify-email', verification_id: verification.id },
    },
    { idempotencyKey: `verify-email:${verification.id}` },
  );
}

if (isMain(import.meta.url)) {
  const env = process.env;
  const id = process.argv[3] ?? env.VERIFICATION_ID ?? globalThis.crypto.randomUUID();
  const verification: EmailVerification = {
    id,
    email: process.argv[2] ?? 'ada@example.com',
    verifyUrl: `https://app.logicspike.dev/verify?token=${encodeURIComponent(id)}`,
  };
  const sent = await sendVerificationEmail(communicationFromEnv(env), verification);
  console.log(JSON.stringify({ id: sent.id, status: sent.status, idempotencyKey: sent.idempotencyKey, replayed: sent.replayed }));
}
