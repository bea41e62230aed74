// A tiny HTTP server playing Resend for the browser tests: `GET /domains` answers 200 for the
// good key and 401 for any other, `POST /emails` answers 200 {id}. It records every request
// so tests can check which key a provider really used.
import http from 'node:http';
import { randomUUID } from 'node:crypto';

export async function startResendStub({ goodKeys, senderDomain }) {
  const requests = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const auth = req.headers.authorization ?? '';
      const key = auth.startsWith('Bearer ') ? auth.slice(7) : '';
      requests.push({ method: req.method, url: req.url, key, body });
      const json = (status, value) => {
        res.writeHead(status, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(value));
      };
      if (!goodKeys.includes(key)) {
        return json(401, { statusCode: 401, message: 'API key is invalid', name: 'validation_error' });
      }
      if (req.method === 'GET' && req.url.startsWith('/domains')) {
        return json(200, {
          object: 'list',
          has_more: false,
          data: [{ id: randomUUID(), name: senderDomain, status: 'verified', region: 'us-east-1' }],
        });
      }
      if (req.method === 'POST' && req.url.startsWith('/emails')) {
        return json(200, { id: randomUUID() });
      }
      return json(404, { statusCode: 404, message: 'not found', name: 'not_found' });
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
