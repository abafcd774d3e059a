// Files are opened the way QEMU 10.0 opens them, so nothing outside what is written changes:
// `file:PATH,offset=N` keeps the N bytes before the offset (QEMU opens without O_TRUNC and cuts
// the file at the offset), an fd set's descriptor stays usable for the next migration, and a
// shared memory-backend-file longer than the backend keeps its tail.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import {
  closeSync,
  constants,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { guestArgs, writeMixedImage } from '../helpers/guest.js';
import { connectRetry, startPeer, waitMigration } from '../helpers/peers.js';
import { requireQemu } from '../helpers/qemu.js';
import { spawnQmigrate } from '../helpers/qmigrate.js';

const MiB = 16;
const OFFSET = 0x1000;

function tmp(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-file-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Another program's 4 KiB header, then junk that the stream must replace. */
function headerFile(path: string): Buffer {
  const header = Buffer.alloc(OFFSET);
  for (let i = 0; i < OFFSET; i++) header[i] = (i * 13 + 7) & 0xff;
  writeFileSync(path, Buffer.concat([header, Buffer.alloc(48 << 20, 0xee)]));
  return header;
}

for (const kind of ['10.0', 'qmigrate'] as const) {
  test(`${kind} source: file:...,offset=0x1000 leaves the header before the offset intact`, async (t) => {
    const dir = tmp(t);
    const image = join(dir, 'src.img');
    writeMixedImage(image, MiB << 20, 6);
    const src = await startPeer(t, kind, dir, 'src', image, MiB);
    if (!src) return;
    const file = join(dir, 'saved.mig');
    const header = headerFile(file);
    await src.qmp.migrate({
      channels: [{ 'channel-type': 'main', addr: { transport: 'file', filename: file, offset: OFFSET } }],
    });
    const info = await waitMigration(src.qmp);
    assert.equal(info.status, 'completed', info['error-desc']);
    const saved = readFileSync(file);
    assert.ok(saved.subarray(0, OFFSET).equals(header), 'the bytes before the offset changed');
    assert.equal(saved.readUInt32BE(OFFSET), 0x5145564d, 'the stream starts at the offset (QEVM)');
    // The file ends where the stream does (QEMU cut it at the offset first): no old junk after.
    assert.notEqual(saved.at(-1), 0xee);

    // And the stream loads back from the offset, on both kinds of destination.
    for (const to of ['qmigrate', '10.0'] as const) {
      writeFileSync(join(dir, `dst-${to}.img`), '');
      const dst = await startPeer(t, to, dir, `dst-${to}`, join(dir, `dst-${to}.img`), MiB, [
        '-incoming',
        'defer',
      ]);
      if (!dst) return;
      await dst.qmp.migrateIncoming({
        channels: [{ 'channel-type': 'main', addr: { transport: 'file', filename: file, offset: OFFSET } }],
      });
      assert.equal((await waitMigration(dst.qmp)).status, 'completed');
      const dump = join(dir, `dst-${to}.dump`);
      await dst.qmp.pmemsave({ val: 0, size: MiB << 20, filename: dump });
      assert.ok(readFileSync(dump).equals(readFileSync(image)), `${to} destination RAM differs`);
      await dst.stop();
    }
  });
}

test('file:/dev/fdset/N: the set keeps its descriptor, so a second migration to it works', async (t) => {
  const dir = tmp(t);
  const image = join(dir, 'src.img');
  writeMixedImage(image, MiB << 20, 7);
  const file = join(dir, 'fdset.mig');
  const header = headerFile(file);
  // Write-only, the mode QEMU 10.0 looks for in the set for an outgoing file.
  const fd = openSync(file, constants.O_WRONLY);
  t.after(() => closeSync(fd));
  const sock = join(dir, 'src.qmp');
  const child = spawnQmigrate(
    ['vm', ...guestArgs(image, MiB), '-qmp', `unix:${sock},server=on,wait=off`, '-add-fd', 'fd=3,set=1'],
    { stdio: ['ignore', 'inherit', 'inherit', fd] },
  );
  const exited = new Promise((r) => child.once('exit', r));
  t.after(async () => {
    child.kill('SIGKILL');
    await exited;
  });
  const qmp = await connectRetry(sock);
  t.after(() => qmp.close().catch(() => {}));
  for (let round = 1; round <= 2; round++) {
    await qmp.migrate({
      channels: [
        { 'channel-type': 'main', addr: { transport: 'file', filename: '/dev/fdset/1', offset: OFFSET } },
      ],
    });
    const info = await waitMigration(qmp);
    assert.equal(info.status, 'completed', `round ${round}: ${info['error-desc']}`);
    await qmp.cont();
  }
  const saved = readFileSync(file);
  assert.ok(saved.subarray(0, OFFSET).equals(header), 'the bytes before the offset changed');
  assert.equal(saved.readUInt32BE(OFFSET), 0x5145564d);
});

for (const kind of ['10.0', 'qmigrate'] as const) {
  test(`${kind}: a shared memory-backend-file longer than the backend keeps its tail`, async (t) => {
    const dir = tmp(t);
    const image = join(dir, 'ram.img');
    writeMixedImage(image, MiB << 20, 8);
    const tail = Buffer.alloc(8192, 0x5a);
    writeFileSync(image, tail, { flag: 'a' });
    const peer = await startPeer(t, kind, dir, 'vm', image, MiB);
    if (!peer) return;
    await peer.qmp.execute('quit').catch(() => {});
    await peer.exited;
    assert.equal(statSync(image).size, (MiB << 20) + tail.length, 'the file was cut');
    assert.ok(
      readFileSync(image)
        .subarray(MiB << 20)
        .equals(tail),
      'the bytes after the backend changed',
    );
  });
}

/**
 * Starts a `kind` VM whose fds 3, 4, ... are `fds` (closed here once inherited), each put in
 * a set by `-add-fd`; resolves with its QMP client.
 */
async function withFds(
  t: TestContext,
  kind: '10.0' | 'qmigrate',
  dir: string,
  image: string,
  fds: number[],
  extra: string[],
) {
  const bin = kind === '10.0' ? requireQemu(t, '10.0') : undefined;
  if (kind === '10.0' && !bin) return undefined;
  const sock = join(dir, `${kind}.qmp`);
  const args = [
    ...guestArgs(image, MiB),
    '-display',
    'none',
    '-nodefaults',
    '-qmp',
    `unix:${sock},server=on,wait=off`,
    ...extra,
  ];
  const stdio = ['ignore', 'inherit', 'inherit', ...fds] as const;
  const child = bin
    ? spawn(bin.path, [...bin.args, ...args], { env: bin.env, stdio: [...stdio] })
    : spawnQmigrate(['vm', ...args], { stdio: [...stdio] });
  for (const fd of fds) closeSync(fd);
  const exited = new Promise((r) => child.once('exit', r));
  t.after(async () => {
    child.kill('SIGKILL');
    await exited;
  });
  const qmp = await connectRetry(sock);
  t.after(() => qmp.close().catch(() => {}));
  return qmp;
}

const fileAt = (filename: string) => [
  { 'channel-type': 'main' as const, addr: { transport: 'file' as const, filename, offset: 0 } },
];

test('file:/dev/fdset/N takes the member of the access mode asked for, or refuses as QEMU 10.0', async (t) => {
  const dir = tmp(t);
  const image = join(dir, 'src.img');
  writeMixedImage(image, MiB << 20, 9);
  const results: Record<string, unknown>[] = [];
  for (const kind of ['10.0', 'qmigrate'] as const) {
    const own = join(dir, kind);
    mkdirSync(own);
    const files = ['ro', 'wo', 'rw'].map((n) => join(own, n));
    for (const f of files) writeFileSync(f, 'untouched');
    // Set 1: read-only, then write-only; set 2: read-write only (QEMU wants write-only).
    const fds = [constants.O_RDONLY, constants.O_WRONLY, constants.O_RDWR].map((m, i) =>
      openSync(files[i]!, m),
    );
    const qmp = await withFds(t, kind, own, image, fds, [
      ...['-add-fd', 'fd=3,set=1', '-add-fd', 'fd=4,set=1', '-add-fd', 'fd=5,set=2'],
    ]);
    if (!qmp) return;
    const r: Record<string, unknown> = {};
    for (const filename of ['/dev/fdset/1', '/dev/fdset/2', '/dev/fdset/7', '/dev/fdset/x']) {
      r[filename] = await qmp.migrate({ channels: fileAt(filename) }).then(
        async () => (await waitMigration(qmp)).status,
        (e: Error) => e.message,
      );
      if (r[filename] === 'completed') await qmp.cont();
      assert.equal((await qmp.queryStatus()).status, 'running');
    }
    r.files = files.map((f) => readFileSync(f).subarray(0, 4).toString('latin1'));
    results.push(r);
  }
  assert.deepEqual(results[1], {
    '/dev/fdset/1': 'completed',
    '/dev/fdset/2': 'Failed to find file descriptor with matching flags=0x41',
    '/dev/fdset/7': 'Failed to find fdset /dev/fdset/7',
    '/dev/fdset/x': 'Could not parse fdset /dev/fdset/x',
    files: ['unto', 'QEVM', 'unto'],
  });
  assert.deepEqual(results[1], results[0]);
});

test('an incoming /dev/fdset/N without a readable member is refused at once, as by QEMU 10.0', async (t) => {
  const dir = tmp(t);
  const image = join(dir, 'src.img');
  writeMixedImage(image, MiB << 20, 10);
  // A stream to load, saved by a qmigrate source.
  const saved = join(dir, 'saved.mig');
  const src = (await startPeer(t, 'qmigrate', dir, 'src', image, MiB))!;
  await src.qmp.migrate({ channels: fileAt(saved) });
  assert.equal((await waitMigration(src.qmp)).status, 'completed');
  const results: Record<string, unknown>[] = [];
  for (const kind of ['10.0', 'qmigrate'] as const) {
    const r: Record<string, unknown> = {};
    for (const mode of ['writeOnly', 'readOnly'] as const) {
      const own = join(dir, `${kind}-${mode}`);
      mkdirSync(own);
      const dstImage = join(own, 'dst.img');
      writeFileSync(dstImage, '');
      const flags = mode === 'readOnly' ? constants.O_RDONLY : constants.O_WRONLY | constants.O_APPEND;
      const qmp = await withFds(
        t,
        kind,
        own,
        dstImage,
        [openSync(saved, flags)],
        [...['-add-fd', 'fd=3,set=1', '-incoming', 'defer']],
      );
      if (!qmp) return;
      // A write-only member: QEMU refuses the command; qmigrate used to read it and die of EBADF.
      r[mode] = await qmp.migrateIncoming({ channels: fileAt('/dev/fdset/1') }).then(
        async () => (await waitMigration(qmp)).status,
        async (e: Error) => [e.message, (await qmp.queryMigrate()).status, (await qmp.queryStatus()).status],
      );
    }
    results.push(r);
  }
  assert.deepEqual(results[1], {
    writeOnly: ['Failed to find file descriptor with matching flags=0x0', 'setup', 'inmigrate'],
    readOnly: 'completed',
  });
  assert.deepEqual(results[1], results[0]);
});

test('an incoming file that cannot be read fails with glibc’s text, not Node’s', async (t) => {
  const dir = tmp(t);
  writeFileSync(join(dir, 'dst.img'), '');
  const dst = (await startPeer(t, 'qmigrate', dir, 'dst', join(dir, 'dst.img'), MiB, [
    '-incoming',
    'defer',
  ]))!;
  // A directory opens read-only and fails at the first read (QEMU 10.0: "Invalid argument").
  await dst.qmp.migrateIncoming({ channels: fileAt(dir), 'exit-on-error': false });
  const info = await waitMigration(dst.qmp);
  assert.deepEqual([info.status, info['error-desc']], ['failed', 'load of migration failed: Is a directory']);
});

test('file: a name with U+0000 is the file QEMU 10.0 writes (C0 80); exec refuses one clearly', async (t) => {
  const dir = tmp(t);
  const image = join(dir, 'src.img');
  writeMixedImage(image, MiB << 20, 11);
  const names: Record<string, string[]> = {};
  for (const kind of ['10.0', 'qmigrate'] as const) {
    const own = join(dir, kind);
    mkdirSync(own);
    const src = await startPeer(t, kind, dir, `src-${kind}`, image, MiB);
    if (!src) return;
    await src.qmp.migrate({ channels: fileAt(join(own, 'a\u0000b')) });
    const info = await waitMigration(src.qmp);
    assert.equal(info.status, 'completed', info['error-desc']);
    names[kind] = readdirSync(own, { encoding: 'buffer' }).map((n) => n.toString('hex'));
  }
  assert.deepEqual(names.qmigrate, [Buffer.from('a\xc0\x80b', 'latin1').toString('hex')]);
  assert.deepEqual(names.qmigrate, names['10.0']);
  // Node cannot pass those bytes to a program: a clear refusal, not Node's own text.
  writeFileSync(join(dir, 'e.img'), '');
  const e = (await startPeer(t, 'qmigrate', dir, 'e', image, MiB))!;
  await assert.rejects(
    e.qmp.migrate({
      channels: [{ 'channel-type': 'main', addr: { transport: 'exec', args: ['/bin/sh', '-c', 'x\u0000'] } }],
    }),
    (err: Error) =>
      err.message ===
      'Failed to execute child process \u201c/bin/sh\u201d (argument 2 has a NUL character, which qmigrate cannot pass on)',
  );
  assert.equal((await e.qmp.queryStatus()).status, 'running');
});

// Bounded: a qmigrate that opened the FIFO blocking would freeze as QEMU does.
test('file: on a FIFO with no peer: a clear error or a wait with the monitors up (QEMU 10.0 freezes)', {
  timeout: 60_000,
}, async (t) => {
  const dir = tmp(t);
  const image = join(dir, 'src.img');
  writeMixedImage(image, MiB << 20, 12);
  // QEMU 10.0 opens the FIFO blocking: with nobody at the other end its monitor stops.
  const q = await startPeer(t, '10.0', dir, 'q', image, MiB);
  if (!q) return;
  execFileSync('mkfifo', [join(dir, 'q.fifo')]);
  void q.qmp.migrate({ channels: fileAt(join(dir, 'q.fifo')) }).catch(() => {});
  await sleep(500);
  const answer = await Promise.race([
    q.qmp.queryStatus().then(() => 'answered'),
    sleep(2000).then(() => 'frozen'),
  ]);
  assert.equal(answer, 'frozen', 'QEMU 10.0 hangs here');
  q.child.kill('SIGKILL');

  const src = (await startPeer(t, 'qmigrate', dir, 'src', image, MiB))!;
  const out = join(dir, 'out.fifo');
  execFileSync('mkfifo', [out]);
  await assert.rejects(src.qmp.migrate({ channels: fileAt(out) }), (e: Error) => {
    assert.equal(e.message, `Could not create '${out}': No such device or address`);
    return true;
  });
  assert.equal((await src.qmp.queryStatus()).status, 'running');
  // Incoming: the VM waits for a writer, answering meanwhile, then loads what it writes.
  const saved = join(dir, 'saved.mig');
  await src.qmp.migrate({ channels: fileAt(saved) });
  assert.equal((await waitMigration(src.qmp)).status, 'completed');
  writeFileSync(join(dir, 'dst.img'), '');
  const dst = (await startPeer(t, 'qmigrate', dir, 'dst', join(dir, 'dst.img'), MiB, [
    '-incoming',
    'defer',
  ]))!;
  const inFifo = join(dir, 'in.fifo');
  execFileSync('mkfifo', [inFifo]);
  await dst.qmp.migrateIncoming({ channels: fileAt(inFifo) });
  await sleep(500);
  assert.equal((await dst.qmp.queryStatus()).status, 'inmigrate');
  writeFileSync(inFifo, readFileSync(saved));
  assert.equal((await waitMigration(dst.qmp)).status, 'completed');
  // At an offset a FIFO cannot seek: QEMU 10.0's text.
  const dst2 = (await startPeer(t, 'qmigrate', dir, 'dst2', join(dir, 'dst.img'), MiB, [
    '-incoming',
    'defer',
  ]))!;
  await assert.rejects(
    dst2.qmp.migrateIncoming({
      channels: [{ 'channel-type': 'main', addr: { transport: 'file', filename: inFifo, offset: OFFSET } }],
    }),
    (e: Error) => {
      assert.equal(e.message, `Unable to seek to offset ${OFFSET} whence 0 in file: Illegal seek`);
      return true;
    },
  );
});
