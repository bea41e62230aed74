// How the manager builds its client: from Worker bindings or from process.env alike.
// COMMUNICATION_URL, COMMUNICATION_TOKEN (the service token) and COMMUNICATION_TENANT.

import { CommunicationClient, type Fetcher } from '@logicspike/communication-client';

export interface CommunicationEnv {
  COMMUNICATION_URL?: string;
  COMMUNICATION_TOKEN?: string;
  COMMUNICATION_TENANT?: string;
  /** A Workers service binding to the service, when the manager has one. */
  COMMUNICATION?: Fetcher;
}

export function communicationFromEnv(env: CommunicationEnv): CommunicationClient {
  const missing = [
    ...(env.COMMUNICATION || env.COMMUNICATION_URL ? [] : ['COMMUNICATION_URL']),
    ...(env.COMMUNICATION_TOKEN ? [] : ['COMMUNICATION_TOKEN']),
    ...(env.COMMUNICATION_TENANT ? [] : ['COMMUNICATION_TENANT']),
  ];
  if (missing.length > 0) throw new Error(`set ${missing.join(', ')}`);
  return new CommunicationClient({
    baseUrl: env.COMMUNICATION_URL ?? 'https://communication.internal',
    token: env.COMMUNICATION_TOKEN!,
    tenantId: env.COMMUNICATION_TENANT!,
    ...(env.COMMUNICATION ? { fetch: env.COMMUNICATION } : {}),
    timeoutMs: 10_000,
  });
}

/** True when this module is the script being run (`npx tsx file.ts`), not an import. */
export function isMain(moduleUrl: string): boolean {
  const argv = (globalThis as { process?: { argv?: string[] } }).process?.argv;
  return !!argv?.[1] && new URL(moduleUrl).pathname === argv[1];
}
