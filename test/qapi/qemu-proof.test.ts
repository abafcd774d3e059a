// The argument and rule table (cases.ts) against a real QEMU 10.0: proves every expected text
// is QEMU's own. Each case gets a fresh QEMU so no state leaks between cases.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { parseJson, stringifyJson } from '../../src/qapi/json.js';
import { requireQemu, startQemu } from '../helpers/qemu.js';
import { CASES } from './cases.js';
import { argsText, assertReply } from './run-case.js';

const tmp = mkdtempSync(join(tmpdir(), 'qmigrate-proof-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

describe('QEMU 10.0 answers the table as written', { concurrency: 4 }, () => {
  for (const c of CASES) {
    const expect = c.qemu ?? c.expect;
    if (expect === 'crash') continue; // documented in the case; never sent, it kills QEMU
    test(`qemu 10.0: ${c.name}`, async (t) => {
      const bin = requireQemu(t, '10.0');
      if (!bin) return;
      const dir = mkdtempSync(join(tmp, 'case-'));
      const incoming = c.incoming === null ? [] : ['-incoming', c.incoming ?? 'defer'];
      const q = await startQemu(bin, incoming);
      try {
        for (const [cmd, args] of c.setup ?? []) {
          const text = stringifyJson(args).replaceAll('$TMP', dir);
          const reply = parseJson(await q.qmp.sendRaw(`{"execute": "${cmd}", "arguments": ${text}}`));
          assertReply(reply, { ok: true }, `setup ${cmd}`);
        }
        const text = argsText(c, dir);
        const msg =
          text === undefined
            ? `{"execute": "${c.execute}"}`
            : `{"execute": "${c.execute}", "arguments": ${text}}`;
        const reply = parseJson(await q.qmp.sendRaw(msg));
        assertReply(reply, expect, c.name);
      } finally {
        await q.stop();
      }
    });
  }
});
