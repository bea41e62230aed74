// Only for working on the page before the server serves it (DASHBOARD_DEV_PROXY=1): serves
// dist/ under /dashboard/ with the intake's Content-Security-Policy and passes /v1 to the
// binary; answers GET /v1/provider-kinds from a fixture when the binary does not know it yet.
// The real suite (npm test without that variable) runs against the binary alone.
import http from 'node:http';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml' };

const KINDS_FIXTURE = {
  items: [
    {
      kind: 'resend',
      label: 'Resend',
      description: 'Email through Resend’s API.',
      channels: ['email'],
      receipts: true,
      fields: [
        { name: 'api_key', label: 'API key', type: 'secret', required: true, help: 'A sending key from Resend.', example: 're_123…' },
        { name: 'from', label: 'From address', type: 'text', required: true, help: 'On a verified domain.', example: 'Shop <hello@shop.example>' },
        { name: 'webhook_secret', label: 'Webhook signing secret', type: 'secret', required: false, help: 'Verifies delivery receipts.', example: 'whsec_…' },
      ],
    },
    {
      kind: 'system',
      label: 'Console (test)',
      description: 'Pretends to deliver; for trying things out.',
      channels: ['email', 'sms'],
      receipts: false,
      fields: [{ name: 'behavior', label: 'Behaviour', type: 'select', required: true, options: ['deliver', 'fail_transient', 'fail_permanent'] }],
    },
  ],
};

export async function startDevProxy(upstream, distDir) {
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname.startsWith('/v1/')) {
      const chunks = [];
      for await (const c of req) chunks.push(c);
      const headers = { ...req.headers };
      delete headers.host;
      const r = await fetch(`${upstream}${req.url}`, {
        method: req.method,
        headers,
        body: chunks.length ? Buffer.concat(chunks) : undefined,
      });
      if (r.status === 404 && url.pathname === '/v1/provider-kinds') {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        return res.end(JSON.stringify(KINDS_FIXTURE));
      }
      const body = Buffer.from(await r.arrayBuffer());
      const out = {};
      r.headers.forEach((v, k) => {
        if (!['content-encoding', 'transfer-encoding', 'content-length', 'connection'].includes(k)) out[k] = v;
      });
      res.writeHead(r.status, out);
      return res.end(body);
    }
    if (!url.pathname.startsWith('/dashboard/')) {
      res.writeHead(404);
      return res.end();
    }
    const rel = url.pathname.slice('/dashboard/'.length) || 'index.html';
    const file = path.join(distDir, path.normalize(rel).replace(/^(\.\.[/\\])+/, ''));
    try {
      const data = await readFile(file);
      res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] ?? 'application/octet-stream', 'Content-Security-Policy': CSP });
      res.end(data);
    } catch {
      const data = await readFile(path.join(distDir, 'index.html'));
      res.writeHead(200, { 'Content-Type': 'text/html', 'Content-Security-Policy': CSP });
      res.end(data);
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => server.close(() => r())) };
}
