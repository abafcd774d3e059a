// A pass's sections end by the rate budget or the clock while pages are left, never just
// after the pass's last page for a reason the stream should not show: a transport that was
// still busy then used to leave an empty RAM section (18 bytes: part header, EOS, footer)
// that QEMU's stream for the same guest does not have, so a slow reader changed the bytes.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { connectRetry, waitMigration } from '../helpers/peers.js';
import { spawnQmigrate } from '../helpers/qmigrate.js';

const QEMU_VM_SECTION_PART = 0x02;
const QEMU_VM_SECTION_FOOTER = 0x7e;
const RAM_SAVE_FLAG_EOS = 0x10;

/** Offsets of RAM section parts that hold nothing but EOS: 0x02 id, be64 EOS, 0x7e id. */
function emptySections(stream: Buffer): number[] {
  const out: number[] = [];
  for (
    let at = stream.indexOf(QEMU_VM_SECTION_PART);
    at >= 0;
    at = stream.indexOf(QEMU_VM_SECTION_PART, at + 1)
  ) {
    if (at + 18 > stream.length) break;
    const id = stream.readUInt32BE(at + 1);
    const eos = stream.readUInt32BE(at + 5) === 0 && stream.readUInt32BE(at + 9) === RAM_SAVE_FLAG_EOS;
    if (eos && stream[at + 13] === QEMU_VM_SECTION_FOOTER && stream.readUInt32BE(at + 14) === id)
      out.push(at);
  }
  return out;
}

test('a reader slower than the source leaves no empty RAM section in the stream', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-sections-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // Random pages: every record is a whole page, so the write queue is full at the last one.
  writeFileSync(join(dir, 'img'), randomBytes(32 << 20));
  const sock = join(dir, 'q.sock');
  const child = spawnQmigrate([
    'vm',
    ...['-machine', 'none,memory-backend=m0'],
    ...['-object', `memory-backend-file,id=m0,size=32M,mem-path=${join(dir, 'img')},share=on`],
    ...['-qmp', `unix:${sock},server=on,wait=off`],
  ]);
  t.after(() => child.kill('SIGKILL'));
  const q = await connectRetry(sock);
  t.after(() => q.close());
  // A reader that pauses 2 ms after each read keeps the pipe full, so the source's transport
  // is busy whenever the pass's last page goes out.
  const out = join(dir, 'out.mig');
  const reader = [
    "const w = require('fs').createWriteStream(process.argv[1]);",
    "process.stdin.on('data', (c) => { w.write(c); process.stdin.pause(); setTimeout(() => process.stdin.resume(), 2); });",
    "process.stdin.on('end', () => w.end());",
  ].join('\n');
  // A finite limit that never binds: the source then checks after every page.
  await q.migrateSetParameters({ 'max-bandwidth': 100 * 2 ** 30 });
  await q.migrate({
    channels: [
      { 'channel-type': 'main', addr: { transport: 'exec', args: [process.execPath, '-e', reader, out] } },
    ],
  });
  assert.equal((await waitMigration(q, 60_000)).status, 'completed');
  const stream = readFileSync(out);
  assert.ok(stream.length > 32 << 20, `the stream has ${stream.length} bytes`);
  assert.deepEqual(emptySections(stream), [], 'empty RAM sections at these offsets');
});
