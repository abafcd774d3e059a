// A destination that takes the whole stream and then closes without answering SHUT on the
// return path: the migration failed (the source cannot know whether the guest runs there), it
// was not cancelled, and the source's guest runs on. QEMU 10.0 is the reference.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import type { MigrationInfo } from '../../src/qapi/types.js';
import { type PeerKind, startPeer, waitMigration } from '../helpers/peers.js';

/** Reads everything; closes once nothing came for `quietMs` after the first byte. */
async function sinkThenClose(t: TestContext, path: string, quietMs: number): Promise<void> {
  const server = createServer((s: Socket) => {
    let timer: NodeJS.Timeout | undefined;
    s.on('data', () => {
      clearTimeout(timer);
      timer = setTimeout(() => s.destroy(), quietMs);
    });
    s.on('error', () => {});
    s.on('close', () => clearTimeout(timer));
  });
  await new Promise<void>((r) => server.listen(path, r));
  t.after(() => server.close());
}

async function run(
  t: TestContext,
  kind: PeerKind,
): Promise<{ info: MigrationInfo; running: boolean } | undefined> {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-rpclose-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'src.img'), '');
  const src = await startPeer(t, kind, dir, 'src', join(dir, 'src.img'), 32);
  if (!src) return undefined;
  const sock = join(dir, 'dst.sock');
  await sinkThenClose(t, sock, 300);
  await src.qmp.migrateSetCapabilities({ capabilities: [{ capability: 'return-path', state: true }] });
  await src.qmp.migrate({
    channels: [{ 'channel-type': 'main', addr: { transport: 'socket', type: 'unix', path: sock } }],
  });
  const info = await waitMigration(src.qmp, 20_000);
  return { info, running: (await src.qmp.queryStatus()).running };
}

for (const kind of ['10.0', 'qmigrate'] as const) {
  test(`${kind}: a destination that closes before SHUT fails the migration; the guest runs on`, async (t) => {
    const r = await run(t, kind);
    if (!r) return;
    assert.equal(r.info.status, 'failed', `${kind}: ${JSON.stringify(r.info)}`);
    assert.ok(r.info['error-desc'], `${kind}: an error-desc says why`);
    assert.equal(r.running, true, `${kind}: the source's guest runs`);
    t.diagnostic(`${kind}: ${r.info['error-desc']}`);
  });
}
