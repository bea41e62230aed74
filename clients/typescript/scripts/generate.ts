// `npm run generate`: starts the service binary (COMMUNICATION_BIN, default the workspace's
// debug build) on a scratch database and namespace, reads its /openapi.json, and rewrites
// src/generated/openapi.ts. With OPENAPI_URL set, reads that running service's document instead.

import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PACKAGE_ROOT, startService } from '../test/harness/service.ts';
import { GENERATED_FILE, renderTypes } from './openapi-types.ts';

async function fetchDocument(url: string): Promise<string> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url} answered ${response.status}`);
  return response.text();
}

let document: string;
if (process.env.OPENAPI_URL) {
  document = await fetchDocument(process.env.OPENAPI_URL);
} else {
  const service = await startService({ command: 'serve' });
  try {
    document = await fetchDocument(`${service.baseUrl}/openapi.json`);
  } finally {
    await service.stop();
  }
}
const target = path.join(PACKAGE_ROOT, GENERATED_FILE);
await writeFile(target, await renderTypes(document));
console.log(`wrote ${GENERATED_FILE}`);
