// migrate_cancel sent right after migrate must cancel, whenever it reaches the source before
// the migration is over: the monitor is read while RAM moves (the passes yield to the event
// loop), and the source polls its monitors once more before it hands over the end of the
// stream. A 128 MiB all-zero guest over unix is the hardest case: it migrates in a few ms.
// A run that completes counts only if it completed before the cancel was even sent (by the
// MIGRATION event's timestamp); QEMU 10.0 is held to the same rule.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { type PeerKind, startPeer, waitMigration } from '../helpers/peers.js';

const RUNS = 20;

async function race(t: TestContext, kind: PeerKind): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-race-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'src.img'), '');
  // QEMU 10.0 refuses a migrate issued right after a cancelled one ("duplicate yank
  // instance") and then crashes (SIGSEGV): it gets a fresh process for every run.
  const fresh = kind !== 'qmigrate';
  let src = await startPeer(t, kind, dir, 'src', join(dir, 'src.img'), 128);
  if (!src) return;
  // A destination that takes everything: the source is never held back by its peer.
  const path = join(dir, 'sink.sock');
  const sink = createServer((s) => s.resume());
  await new Promise<void>((r) => sink.listen(path, r));
  t.after(() => sink.close());
  let cancelled = 0;
  for (let i = 0; i < RUNS; i++) {
    if (fresh && i > 0) {
      await src.stop();
      src = (await startPeer(t, kind, dir, `src${i}`, join(dir, 'src.img'), 128))!;
    }
    if (i === 0 || fresh) {
      await src.qmp.migrateSetCapabilities({ capabilities: [{ capability: 'events', state: true }] });
    }
    const events = src.qmp.listen('MIGRATION');
    await src.qmp.migrate({ uri: `unix:${path}` });
    const sentAt = Date.now();
    await src.qmp.migrateCancel();
    const info = await waitMigration(src.qmp);
    const done = events.drain().find((e) => e.data.status === info.status);
    events.close();
    if (info.status === 'cancelled') {
      cancelled++;
      assert.deepEqual(await src.qmp.queryStatus(), { status: 'running', running: true });
      continue;
    }
    assert.equal(info.status, 'completed', `${kind} run ${i}: ${info['error-desc']}`);
    // Completed: only acceptable if it was over before the cancel left the client.
    const at = done ? done.timestamp.seconds * 1000 + done.timestamp.microseconds / 1000 : Number.NaN;
    assert.ok(
      at <= sentAt + 1,
      `${kind} run ${i}: completed ${(at - sentAt).toFixed(1)} ms after the cancel`,
    );
    // The guest is paused after a completed migration; start it for the next run.
    await src.qmp.cont();
  }
  t.diagnostic(`${kind}: ${cancelled}/${RUNS} cancelled, the rest completed before the cancel was sent`);
}

test('QEMU 10.0: migrate_cancel right after migrate cancels', (t) => race(t, '10.0'));
test('qmigrate: migrate_cancel right after migrate cancels', (t) => race(t, 'qmigrate'));
