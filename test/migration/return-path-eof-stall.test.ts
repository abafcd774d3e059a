// A destination that ends the return path (FIN) and stops reading while the source still has
// pages to send, as a killed destination looks through a proxy that half-closes: the source's
// writes block for ever, so only the return path's end can fail the migration. The source
// must end `failed` within seconds, its guest running and its RAM intact (the fault matrix's
// tcp dst-kill-10 row found qmigrate waiting there for good). QEMU 10.0's outcome is printed.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MigrationInfo } from '../../src/qapi/types.js';
import { writeMixedImage } from '../helpers/guest.js';
import { type PeerKind, startPeer } from '../helpers/peers.js';

const MiB = 32;

/** Takes the connection, reads nothing, and ends its side after `ms`. */
async function halfCloser(t: TestContext, path: string, ms: number): Promise<void> {
  const held: Socket[] = [];
  const server = createServer({ pauseOnConnect: true }, (s) => {
    held.push(s);
    s.on('error', () => {});
    setTimeout(() => s.end(), ms);
  });
  await new Promise<void>((r) => server.listen(path, r));
  t.after(() => {
    for (const s of held) s.destroy();
    server.close();
  });
}

async function run(t: TestContext, kind: PeerKind) {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-rpeof-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const img = join(dir, 'src.img');
  writeMixedImage(img, MiB << 20, 5);
  const src = await startPeer(t, kind, dir, 'src', img, MiB);
  if (!src) return undefined;
  const sock = join(dir, 'dst.sock');
  await halfCloser(t, sock, 200);
  await src.qmp.migrateSetCapabilities({ capabilities: [{ capability: 'return-path', state: true }] });
  await src.qmp.migrate({ uri: `unix:${sock}` });
  let info: MigrationInfo = await src.qmp.queryMigrate();
  for (const end = Date.now() + 8000; Date.now() < end; await sleep(20)) {
    info = await src.qmp.queryMigrate();
    if (info.status === 'failed' || info.status === 'cancelled' || info.status === 'completed') break;
  }
  const status = await src.qmp.queryStatus();
  if (info.status === 'active') {
    // Leave no migration behind (QEMU 10.0 waits here too): cancel it before the test ends.
    await src.qmp.migrateCancel().catch(() => {});
  }
  const dump = join(dir, 'src.dump');
  await src.qmp.pmemsave({ val: 0, size: MiB << 20, filename: dump });
  return { info, running: status.running, intact: readFileSync(dump).equals(readFileSync(img)) };
}

test('qmigrate: the return path ended while the stream is blocked fails the migration', async (t) => {
  const r = await run(t, 'qmigrate');
  assert.ok(r);
  assert.equal(r.info.status, 'failed', JSON.stringify(r.info));
  assert.match(r.info['error-desc'] ?? '', /return path/);
  assert.equal(r.running, true, 'the source guest runs');
  assert.equal(r.intact, true, 'the source RAM is intact');
});

test('QEMU 10.0 with the same destination (reference, printed)', async (t) => {
  const r = await run(t, '10.0');
  if (!r) return;
  t.diagnostic(`QEMU 10.0: ${r.info.status} ${r.info['error-desc'] ?? ''}; running ${r.running}`);
  assert.equal(r.running, true);
  assert.equal(r.intact, true);
});
