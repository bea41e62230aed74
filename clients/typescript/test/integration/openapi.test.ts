// The committed types (src/generated/openapi.ts) are what the current binary serves.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { PACKAGE_ROOT, startService, type Service } from '../harness/service.ts';
import { GENERATED_FILE, REGENERATE_COMMAND, renderTypes } from '../../scripts/openapi-types.ts';

let service: Service | undefined;
after(() => service?.stop());

test('the committed OpenAPI types match the running service', async () => {
  service = await startService({ command: 'serve' });
  const document = await (await fetch(`${service.baseUrl}/openapi.json`)).text();
  const expected = await renderTypes(document);
  const committed = await readFile(path.join(PACKAGE_ROOT, GENERATED_FILE), 'utf8');
  if (committed !== expected) {
    const a = committed.split('\n');
    const b = expected.split('\n');
    const line = a.findIndex((l, i) => l !== b[i]);
    assert.fail(
      `${GENERATED_FILE} differs from what the service binary serves at /openapi.json ` +
        `(first difference at line ${line + 1}: committed ${JSON.stringify(a[line])}, served ${JSON.stringify(b[line])}).\n` +
        `Fix: rebuild the binary (cargo build) and run \`${REGENERATE_COMMAND}\`, then commit the result.`,
    );
  }
});
