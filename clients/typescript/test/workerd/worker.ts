// A tiny Worker that sends through the client, bundled with esbuild for workerd by
// test/integration/workerd.test.ts. `?via=binding` passes the service binding COMMUNICATION
// itself, `?via=bound` its bound fetch method, `?via=unbound` the bare `env.COMMUNICATION.fetch`
// (which workerd refuses); otherwise the global fetch and COMMUNICATION_URL.

import { CommunicationClient, CommunicationError } from '../../src/index.ts';

interface Env {
  COMMUNICATION: { fetch: typeof fetch };
  COMMUNICATION_URL: string;
  COMMUNICATION_TOKEN: string;
  COMMUNICATION_TENANT: string;
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    const via = url.searchParams.get('via');
    const fetchers = {
      binding: env.COMMUNICATION,
      bound: env.COMMUNICATION.fetch.bind(env.COMMUNICATION),
      unbound: env.COMMUNICATION.fetch,
    };
    const injected = via === 'binding' || via === 'bound' || via === 'unbound' ? fetchers[via] : undefined;
    const client = new CommunicationClient({
      baseUrl: injected ? 'https://communication.internal' : env.COMMUNICATION_URL,
      token: env.COMMUNICATION_TOKEN,
      tenantId: env.COMMUNICATION_TENANT,
      ...(injected ? { fetch: injected } : {}),
    });
    try {
      if (url.pathname === '/invalid') {
        await client.send({ channel: 'sms', to: 'not a number', content: { text: 'x' } });
        return Response.json({ unexpected: 'accepted' }, { status: 500 });
      }
      const sent = await client.send({ channel: 'sms', to: '+14155550100', content: { text: 'Your code is 314159' }, ttl_seconds: 300 });
      const message = await client.waitForStatus(sent.id, 'sent', { timeoutMs: 20_000 });
      return Response.json({ id: sent.id, idempotencyKey: sent.idempotencyKey, status: message.status, runtime: navigator.userAgent });
    } catch (e) {
      if (e instanceof CommunicationError) {
        return Response.json({ error: e.name, status: e.status, code: e.code, errors: e.errors }, { status: 200 });
      }
      return Response.json({ error: String(e) }, { status: 500 });
    }
  },
};
