// A unix listener whose backlog is full: QEMU's connect blocks until the listener takes the
// connection, so the migration waits in `setup` and then runs. Node's non-blocking connect
// fails with EAGAIN instead; qmigrate waits and retries, as QEMU does (and a cancel ends the
// wait, see socket-cancel.test.ts).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startBlackhole } from '../helpers/blackhole.js';
import { writeMixedImage } from '../helpers/guest.js';
import { startPeer, waitMigration } from '../helpers/peers.js';

const MiB = 16;

function tmp(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-backlog-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

for (const kind of ['qmigrate', '10.0'] as const) {
  test(`${kind} source: a full unix backlog is waited out, then the migration completes`, async (t) => {
    const dir = tmp(t);
    const image = join(dir, 'src.img');
    writeMixedImage(image, MiB << 20, 4);
    const src = await startPeer(t, kind, dir, 'src', image, MiB);
    if (!src) return;
    writeFileSync(join(dir, 'dst.img'), '');
    const dst = (await startPeer(t, 'qmigrate', dir, 'dst', join(dir, 'dst.img'), MiB, [
      '-incoming',
      'defer',
    ]))!;
    const real = join(dir, 'real.sock');
    await dst.qmp.migrateIncoming({
      channels: [{ 'channel-type': 'main', addr: { transport: 'socket', type: 'unix', path: real } }],
    });
    // The listener the source dials is full for 2 s, then relays to the destination.
    const hole = await startBlackhole(t, 'unix', {
      path: join(dir, 'full.sock'),
      acceptAfterMs: 2000,
      relayTo: real,
    });
    await src.qmp.migrate({
      channels: [{ 'channel-type': 'main', addr: { transport: 'socket', type: 'unix', path: hole.path } }],
    });
    await sleep(800);
    const waiting = await src.qmp.queryMigrate();
    assert.equal(waiting.status, 'setup', `still waiting for the listener: ${JSON.stringify(waiting)}`);
    const info = await waitMigration(src.qmp);
    assert.equal(info.status, 'completed', info['error-desc']);
    assert.equal((await waitMigration(dst.qmp)).status, 'completed');
    const dump = join(dir, 'dst.dump');
    await dst.qmp.pmemsave({ val: 0, size: MiB << 20, filename: dump });
    assert.ok(readFileSync(dump).equals(readFileSync(image)), 'destination RAM differs from the source');
  });
}
