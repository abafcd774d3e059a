// A source without multifd into a destination that waits for multifd channels: QEMU 10.0's
// destination only peeks at the main channel until every channel is there, so the source
// meets back-pressure and stays `active` with its guest running, and a cancel ends it. A
// destination that read the main channel ahead (qmigrate's did, 16 MiB) let the source
// finish, stop its guest and report `completed` for a stream nobody will ever load.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { writeMixedImage } from '../helpers/guest.js';
import { type PeerKind, startPeer, waitMigration } from '../helpers/peers.js';

const MiB = 24;

async function mismatch(t: TestContext, dstKind: PeerKind) {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-mfd-mismatch-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeMixedImage(join(dir, 'src.img'), MiB << 20, 3);
  writeFileSync(join(dir, 'dst.img'), '');
  const dst = await startPeer(t, dstKind, dir, 'dst', join(dir, 'dst.img'), MiB, ['-incoming', 'defer']);
  if (!dst) return undefined;
  const src = (await startPeer(t, 'qmigrate', dir, 'src', join(dir, 'src.img'), MiB))!;
  await dst.qmp.migrateSetCapabilities({ capabilities: [{ capability: 'multifd', state: true }] });
  await dst.qmp.migrateIncoming({ uri: 'tcp:127.0.0.1:0', 'exit-on-error': false });
  const addr = (await dst.qmp.queryMigrate())['socket-address']?.[0];
  assert.ok(addr?.type === 'inet');
  await src.qmp.migrate({ uri: `tcp:127.0.0.1:${addr.port}` });
  await sleep(3000);
  const seen = {
    migration: (await src.qmp.queryMigrate()).status,
    guest: (await src.qmp.queryStatus()).status,
  };
  await src.qmp.migrateCancel();
  const after = {
    migration: (await waitMigration(src.qmp, 10_000)).status,
    guest: (await src.qmp.queryStatus()).status,
  };
  return { seen, after };
}

test('a source without multifd into a multifd destination stays active, its guest running', async (t) => {
  const theirs = await mismatch(t, '10.0');
  if (theirs) {
    assert.deepEqual(theirs, {
      seen: { migration: 'active', guest: 'running' },
      after: { migration: 'cancelled', guest: 'running' },
    });
  }
  assert.deepEqual(await mismatch(t, 'qmigrate'), {
    seen: { migration: 'active', guest: 'running' },
    after: { migration: 'cancelled', guest: 'running' },
  });
});
