// Only for working on the page before the server serves it (DASHBOARD_DEV_PROXY=1): serves
// dist/ under /dashboard/ with the intake's Content-Security-Policy and passes /v1 to the
// binary.
// The real suite (npm test without that variable) runs against the binary alone.
import http from 'node:http';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml' };

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
