// The argument and rule table (cases.ts) against qmigrate's QAPI layer.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { parseJson } from '../../src/qapi/json.js';
import { CASES } from './cases.js';
import { QapiModel } from './model.js';
import { argsText, assertReply, withTmp } from './run-case.js';

const tmp = mkdtempSync(join(tmpdir(), 'qmigrate-table-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

test('the table has at least 80 cases', () => {
  assert.ok(CASES.length >= 80, `${CASES.length} cases`);
});

for (const c of CASES) {
  test(`qmigrate: ${c.name}`, () => {
    const model = new QapiModel(c.incoming === null ? undefined : (c.incoming ?? 'defer'));
    for (const [cmd, args] of c.setup ?? [])
      assertReply(model.execute(cmd, withTmp(args, tmp)), { ok: true }, `setup ${cmd}`);
    const text = argsText(c, tmp);
    assertReply(model.execute(c.execute, text === undefined ? undefined : parseJson(text)), c.expect, c.name);
  });
}
