// Once the whole stream, QEMU_VM_EOF included, is in an exec child's pipe, the child delivers it
// whatever the source does. QEMU 10.0 then completes (its monitor is blocked until the child
// exits, so the cancel lands after `completed` and does nothing). qmigrate refuses the cancel
// as too late and completes when the child exits: it never resumes a guest that the child's
// copy of the stream starts on a destination.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type PeerKind, startPeer, waitMigration } from '../helpers/peers.js';

async function run(t: TestContext, kind: PeerKind) {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-exec-eof-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'src.img'), '');
  const src = await startPeer(t, kind, dir, 'src', join(dir, 'src.img'), 16);
  if (!src) return undefined;
  const out = join(dir, 'stream');
  await src.qmp.migrate({
    channels: [
      {
        'channel-type': 'main',
        addr: { transport: 'exec', args: ['/bin/sh', '-c', `cat > ${out}; sleep 2`] },
      },
    ],
  });
  await sleep(700); // the child has the whole stream by now and sleeps
  await src.qmp.migrateCancel();
  const info = await waitMigration(src.qmp, 10_000);
  const status = await src.qmp.queryStatus();
  // What the child passed on: a destination loads it.
  writeFileSync(join(dir, 'dst.img'), '');
  const dst = (await startPeer(t, 'qmigrate', dir, 'dst', join(dir, 'dst.img'), 16, ['-incoming', 'defer']))!;
  await dst.qmp.migrateIncoming({ uri: `file:${out}`, 'exit-on-error': false });
  await waitMigration(dst.qmp, 10_000);
  const dstStatus = await dst.qmp.queryStatus();
  return { status: info.status, src: status.status, dst: dstStatus.status };
}

test('a cancel after the exec child has the whole stream does not leave two running guests', async (t) => {
  const theirs = await run(t, '10.0');
  if (theirs) assert.deepEqual(theirs, { status: 'completed', src: 'postmigrate', dst: 'running' });
  const ours = await run(t, 'qmigrate');
  assert.deepEqual(ours, { status: 'completed', src: 'postmigrate', dst: 'running' });
});
