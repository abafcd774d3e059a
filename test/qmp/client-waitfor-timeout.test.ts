// waitFor's own timeout (src/qmp/client.ts) is one of the package's errors: an
// EventTimeoutError with a stable code, not the DOMException of the AbortSignal.timeout()
// behind it; an AbortSignal the caller passes still rejects with the caller's reason.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { QmigrateError } from '../../src/errors.js';
import { QmpClient } from '../../src/qmp/client.js';
import { EventTimeoutError, QmpClientError } from '../../src/qmp/errors.js';

const GREETING = {
  QMP: { version: { qemu: { major: 10, minor: 0, micro: 2 }, package: '' }, capabilities: [] },
};

/** A peer that negotiates and then says nothing. */
async function quietPeer(t: TestContext): Promise<QmpClient> {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-waitfor-'));
  const path = join(dir, 'qmp.sock');
  const server = createServer((s) => {
    s.on('error', () => {});
    s.on('data', (d) => {
      for (const line of String(d).split('\n').filter(Boolean)) {
        s.write(`${JSON.stringify({ return: {}, id: JSON.parse(line).id })}\r\n`);
      }
    });
    s.write(`${JSON.stringify(GREETING)}\r\n`);
  });
  await new Promise<void>((r) => server.listen(path, r));
  const c = await QmpClient.connect(path);
  t.after(async () => {
    await c.close().catch(() => {});
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return c;
}

test('waitFor past its timeout rejects with EventTimeoutError (QMP_EVENT_TIMEOUT)', async (t) => {
  const c = await quietPeer(t);
  await assert.rejects(
    c.waitFor('MIGRATION', () => true, { timeout: 50 }),
    (e: unknown) => {
      assert.ok(e instanceof EventTimeoutError, String(e));
      assert.ok(e instanceof QmpClientError && e instanceof QmigrateError);
      assert.equal(e.code, 'QMP_EVENT_TIMEOUT');
      assert.equal(e.message, 'no MIGRATION event within 50 ms');
      return true;
    },
  );
  assert.equal(c.isClosed, false);
});

test("waitFor with the caller's AbortSignal rejects with the caller's reason", async (t) => {
  const c = await quietPeer(t);
  const ac = new AbortController();
  const reason = new Error('mine');
  setTimeout(() => ac.abort(reason), 20);
  await assert.rejects(
    c.waitFor('STOP', () => true, { signal: ac.signal, timeout: 10_000 }),
    (e) => e === reason,
  );
});
