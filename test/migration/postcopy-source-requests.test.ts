// qmigrate as a postcopy source to a scripted destination (test/helpers/fake-postcopy-dest.ts):
// the stream's postcopy layout as QEMU 10.0 writes it, page requests (REQ_PAGES_ID, REQ_PAGES)
// served before the pages' turn, bad requests refused with QEMU's texts, and the recovery
// handshake (RECV_BITMAP / POSTCOPY_RESUME) against a peer that never answers and one that does.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { encodeCountedName, encodeRecvBitmap, encodeReqPages } from '../../src/migration/stream/postcopy.js';
import { type FakeDest, fakePostcopyDest, type StreamEvent } from '../helpers/fake-postcopy-dest.js';
import { writeMixedImage } from '../helpers/guest.js';
import { type Peer, startPeer, waitMigration, waitMigrationStatus } from '../helpers/peers.js';

const MiB = 16;
const SIZE = MiB << 20;
const PING = 2;
const REQ_PAGES_ID = 3;
const REQ_PAGES = 4;
const RP_RECV_BITMAP = 5;
const RESUME_ACK = 6;

async function source(t: TestContext, name: string): Promise<{ dir: string; src: Peer }> {
  const dir = mkdtempSync(join(tmpdir(), `qmigrate-pcreq-${name}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeMixedImage(join(dir, 'src.img'), SIZE, 21);
  const src = (await startPeer(t, 'qmigrate', dir, 'src', join(dir, 'src.img'), MiB))!;
  await src.qmp.migrateSetCapabilities({ capabilities: [{ capability: 'postcopy-ram', state: true }] });
  await src.qmp.migrateSetParameters({ 'max-bandwidth': 4 << 20, 'max-postcopy-bandwidth': 4 << 20 });
  return { dir, src };
}

const isPing = (ev: StreamEvent, n: number) =>
  ev.kind === 'cmd' && ev.cmd === PING && ev.data.readUInt32BE(0) === n;

/** The commands of the stream, in order, as `cmd:arg` strings (sections and pages left out). */
function commands(events: StreamEvent[]): string[] {
  const out: string[] = [];
  for (const ev of events) {
    if (ev.kind === 'cmd' && ev.cmd === PING) out.push(`ping:${ev.data.readUInt32BE(0)}`);
    else if (ev.kind === 'cmd') out.push(`cmd${ev.cmd}:${ev.data.length}`);
    else if (ev.kind === 'package') out.push(`package[${commands(ev.events).join(' ')}]`);
    else if (ev.kind === 'section' && ev.type === 4) out.push(`full:${ev.name}`);
    else if (ev.kind === 'eof') out.push('eof');
  }
  return out;
}

test('postcopy stream as QEMU 10.0 lays it out; requested pages come before their turn', async (t) => {
  const { dir, src } = await source(t, 'order');
  let afterPing4 = -1;
  const fake = await fakePostcopyDest(
    join(dir, 'd.sock'),
    { m0: SIZE },
    {
      onEvent(ev, send) {
        if (isPing(ev, 4)) {
          afterPing4 = fake.events.length;
          // The last pages of the block: by the scan, they would come last of all.
          send(REQ_PAGES_ID, encodeReqPages(SIZE - 4 * 4096, 4 * 4096, 'm0'));
          send(REQ_PAGES, encodeReqPages(SIZE - 8 * 4096, 4096));
        }
      },
    },
  );
  t.after(() => fake.close());
  await src.qmp.migrate({ uri: `unix:${join(dir, 'd.sock')}` });
  await waitMigrationStatus(src.qmp, 'active');
  await src.qmp.migrateStartPostcopy();
  const info = await waitMigration(src.qmp, 60_000);
  assert.equal(info.status, 'completed', JSON.stringify(info));
  assert.equal(await fake.done, undefined);
  const cmds = commands(fake.events);
  // QEMU 10.0's own source, recorded between two QEMU 10.0: OPEN_RETURN_PATH, PING 1,
  // ADVISE (16 bytes), ..., SWITCHOVER_START, RAM_DISCARD, PING 2, PACKAGED [LISTEN, timer,
  // globalstate, PING 3, RUN], PING 4, ..., EOF (no VM description).
  assert.deepEqual(cmds[0], 'cmd1:0');
  assert.deepEqual(cmds.slice(1, 4), ['ping:1', 'cmd3:16', 'cmd11:0']);
  const discards = cmds.slice(4, cmds.indexOf('ping:2'));
  assert.ok(discards.length >= 1 && discards.every((c) => c.startsWith('cmd6:')), cmds.join(' '));
  assert.deepEqual(cmds.slice(cmds.indexOf('ping:2')), [
    'ping:2',
    'cmd7:4',
    'package[cmd4:0 full:timer full:globalstate ping:3 cmd5:0]',
    'ping:4',
    'eof',
  ]);
  const adv = (fake.events[2] as { data: Buffer }).data;
  assert.equal(adv.readBigUInt64BE(0), 4096n);
  assert.equal(adv.readBigUInt64BE(8), 4096n);
  // Served first: within the first sections after the request, with thousands still to go.
  const pages = fake.events.slice(afterPing4).filter((e) => e.kind === 'page');
  const at = (off: number) => pages.findIndex((p) => p.kind === 'page' && p.offset === off);
  assert.ok(pages.length > 1000, `${pages.length} pages in postcopy`);
  t.diagnostic(`requested pages came ${[SIZE - 4 * 4096, SIZE - 8 * 4096].map(at)} of ${pages.length}`);
  for (const off of [SIZE - 4 * 4096, SIZE - 3 * 4096, SIZE - 4096, SIZE - 8 * 4096]) {
    assert.ok(
      at(off) >= 0 && at(off) < 1000,
      `page 0x${off.toString(16)} came ${at(off)}th of ${pages.length}`,
    );
  }
  assert.equal(info.ram?.['postcopy-requests'], 2);
  assert.ok(Number(info.ram?.['postcopy-bytes']) > 4 << 20);
  assert.ok(fake.ram.get('m0')!.equals(readFileSync(join(dir, 'src.img'))), 'RAM as the source has it');
  assert.equal((await src.qmp.queryStatus()).status, 'postmigrate');
});

test('bad page requests fail the migration with QEMU 10.0 texts; the guest runs on', async (t) => {
  const { dir, src } = await source(t, 'bad');
  const cases: [string, number, Buffer, string][] = [
    ['no previous block', REQ_PAGES, encodeReqPages(0, 4096), 'MIG_RP_MSG_REQ_PAGES has no previous block'],
    [
      'unknown block',
      REQ_PAGES_ID,
      encodeReqPages(0, 4096, 'nope'),
      "MIG_RP_MSG_REQ_PAGES has no block 'nope'",
    ],
    [
      'overrun',
      REQ_PAGES_ID,
      encodeReqPages(SIZE, 4096, 'm0'),
      'MIG_RP_MSG_REQ_PAGES request overrun, start=1000000 len=1000 blocklen=1000000',
    ],
    [
      'misaligned',
      REQ_PAGES_ID,
      encodeReqPages(100, 4096, 'm0'),
      'MIG_RP_MSG_REQ_PAGES: Misaligned page request, start:64 len: 4096',
    ],
    [
      'REQ_PAGES_ID length',
      REQ_PAGES_ID,
      Buffer.concat([encodeReqPages(0, 4096, ''), Buffer.from('x')]),
      'Req_Page_id with length 14 expecting 13',
    ],
  ];
  for (const [what, type, payload, text] of cases) {
    const path = join(dir, `${what.replaceAll(' ', '-')}.sock`);
    let sent = false;
    const fake: FakeDest = await fakePostcopyDest(
      path,
      { m0: SIZE },
      {
        onEvent(_ev, send) {
          if (!sent) send(type, payload);
          sent = true;
        },
      },
    );
    await src.qmp.migrate({ uri: `unix:${path}` });
    const info = await waitMigration(src.qmp, 20_000);
    fake.close();
    assert.equal(info.status, 'failed', what);
    assert.equal(info['error-desc'], text, what);
    assert.equal((await src.qmp.queryStatus()).status, 'running', what);
  }
});

test('postcopy recovery: a peer that never answers the handshake leaves postcopy-paused; one that does completes it', async (t) => {
  const { dir, src } = await source(t, 'resume');
  const fake: FakeDest = await fakePostcopyDest(
    join(dir, 'd.sock'),
    { m0: SIZE },
    {
      onEvent(ev) {
        // Some postcopy pages in, then the link is gone.
        const n = fake.events.length;
        if (ev.kind === 'page' && fake.events.findIndex((e) => isPing(e, 4)) > 0 && n % 500 === 0) {
          for (const s of fake.sockets) s.destroy();
        }
      },
    },
  );
  t.after(() => fake.close());
  await src.qmp.migrate({ uri: `unix:${join(dir, 'd.sock')}` });
  await waitMigrationStatus(src.qmp, 'active');
  await src.qmp.migrateStartPostcopy();
  await waitMigrationStatus(src.qmp, 'postcopy-paused', 20_000);
  assert.equal((await src.qmp.queryStatus()).status, 'finish-migrate');
  // migrate-pause is for postcopy-active/-recover only; resume needs a paused postcopy.
  await assert.rejects(src.qmp.migratePause(), /only supported during postcopy-active or postcopy-recover/);

  // A peer that accepts and says nothing.
  const silent = createServer((s) => s.on('error', () => {}));
  await new Promise<void>((r) => silent.listen(join(dir, 'silent.sock'), r));
  t.after(() => silent.close());
  const t0 = Date.now();
  await src.qmp.migrate({ uri: `unix:${join(dir, 'silent.sock')}`, resume: true });
  await waitMigrationStatus(src.qmp, 'postcopy-recover');
  await waitMigrationStatus(src.qmp, 'postcopy-paused', 20_000);
  assert.ok(Date.now() - t0 >= 9000, 'waited for the handshake');
  const paused = await src.qmp.queryMigrate();
  assert.match(String(paused['error-desc']), /did not send its received bitmaps \(RECV_BITMAP\) within 10 s/);

  // A peer that answers: its received bitmap is what the first connection delivered.
  const ram = fake.ram;
  const got = new Uint32Array(SIZE / 4096 / 32);
  for (const e of fake.events)
    if (e.kind === 'page') got[(e.offset / 4096) >>> 5]! |= 1 << ((e.offset / 4096) & 31);
  const discarded = fake.events.filter((e) => e.kind === 'cmd' && e.cmd === 6).length;
  assert.ok(discarded > 0);
  const again = await fakePostcopyDest(
    join(dir, 'r.sock'),
    { m0: SIZE },
    {
      resumed: true,
      ram,
      onEvent(ev, send) {
        if (ev.kind === 'cmd' && ev.cmd === 10) {
          assert.deepEqual(ev.data, encodeCountedName('m0'));
          send(RP_RECV_BITMAP, encodeCountedName('m0'), encodeRecvBitmap(got, SIZE / 4096));
        }
        if (ev.kind === 'cmd' && ev.cmd === 9) send(RESUME_ACK, Buffer.from([0, 0, 0, 1]));
      },
    },
  );
  t.after(() => again.close());
  await src.qmp.migrateSetParameters({ 'max-postcopy-bandwidth': 0 });
  await src.qmp.migrate({ uri: `unix:${join(dir, 'r.sock')}`, resume: true });
  const info = await waitMigration(src.qmp, 30_000);
  assert.equal(info.status, 'completed', JSON.stringify(info));
  assert.equal(info['error-desc'], undefined);
  assert.equal(await again.done, undefined);
  const resent = again.events.filter((e) => e.kind === 'page');
  // Exactly the pages not received were sent again, each once.
  const missing = SIZE / 4096 - got.reduce((n, w) => n + popcount(w), 0);
  assert.equal(resent.length, missing);
  assert.ok(ram.get('m0')!.equals(readFileSync(join(dir, 'src.img'))), 'RAM as the source has it');
});

function popcount(x: number): number {
  let n = 0;
  for (let v = x >>> 0; v; v &= v - 1) n++;
  return n;
}
