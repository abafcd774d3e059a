// What options do on a running VM, beyond the pair tests: downtime-limit and
// avail-switchover-bandwidth decide how much of a dirtying guest is left for the downtime;
// the options docs/options.md calls vacuous change nothing for a RAM-only guest, in QEMU 10.0
// (its stream's bytes) as in qmigrate, on either side; a source ignores the listening-only
// socket options as QEMU does; return-path over a file is refused before anything starts.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { guestArgs, writeWorkloadImage } from '../helpers/guest.js';
import {
  emptyGuest,
  finished,
  KINDS,
  type Kind,
  sharedGuest,
  startVm,
  tmpDir,
  type Vm,
  waitInfo,
} from './options-peers.js';

const SINK = { uri: 'exec:/bin/sh -c "cat >/dev/null"' };

/** A qmigrate source whose guest dirties 16 MB/s, sending at 32 MiB/s into a sink. */
async function dirtyingSource(t: TestContext): Promise<Vm> {
  const dir = tmpDir(t);
  writeWorkloadImage(join(dir, 'img'), 32 << 20);
  const src = (await startVm(
    t,
    'qmigrate',
    [...guestArgs(join(dir, 'img'), 32), '-object', 'qmigrate-workload,id=w0,rate=4000'],
    dir,
  ))!;
  await src.ok('migrate-set-parameters', { 'max-bandwidth': 32 << 20 });
  return src;
}

/** Runs the migration into the sink; the `ram` of its final query-migrate. */
async function run(src: Vm, params: Record<string, unknown>): Promise<Record<string, number>> {
  await src.ok('migrate-set-parameters', params);
  await src.ok('migrate', SINK);
  const info = await waitInfo(src, finished, 60_000);
  assert.equal(info.status, 'completed', JSON.stringify(info));
  return info.ram as Record<string, number>;
}

// With a limit nothing can miss, the first pass ends the iterations and what the guest dirtied
// meanwhile goes out in downtime; with 10 ms the iterations go on until far less is left.
test('downtime-limit decides how much is left for the downtime', async (t) => {
  const loose = await run(await dirtyingSource(t), { 'downtime-limit': 2_000_000 });
  const tight = await run(await dirtyingSource(t), { 'downtime-limit': 10 });
  t.diagnostic(`loose ${JSON.stringify(loose)}`);
  t.diagnostic(`tight ${JSON.stringify(tight)}`);
  assert.ok(loose['dirty-sync-count']! <= 3, `syncs ${loose['dirty-sync-count']}`);
  assert.ok(tight['dirty-sync-count']! > loose['dirty-sync-count']!, 'more passes with 10 ms');
  assert.ok(tight['downtime-bytes']! * 2 < loose['downtime-bytes']!, 'less left for the downtime');
});

test('avail-switchover-bandwidth replaces the measured rate in that decision', async (t) => {
  // 1 TB/s "available": its 10 ms are more than the whole guest.
  const ram = await run(await dirtyingSource(t), {
    'downtime-limit': 10,
    'avail-switchover-bandwidth': 1e12,
  });
  assert.ok(ram['downtime-bytes']! > 2 << 20, `downtime-bytes ${ram['downtime-bytes']}`);
  assert.ok(ram['dirty-sync-count']! <= 3, `syncs ${ram['dirty-sync-count']}`);
});

/** Everything docs/options.md calls vacuous for a RAM-only guest, set to a non-default value. */
const VACUOUS_CAPS = [
  'rdma-pin-all',
  'zero-blocks',
  'release-ram',
  'postcopy-blocktime',
  'late-block-activate',
  'validate-uuid',
];
const VACUOUS_PARAMS = {
  'announce-initial': 1,
  'announce-max': 2,
  'announce-rounds': 3,
  'announce-step': 4,
  'throttle-trigger-threshold': 5,
  'cpu-throttle-initial': 6,
  'cpu-throttle-increment': 7,
  'cpu-throttle-tailslow': true,
  'max-cpu-throttle': 10,
  'x-checkpoint-delay': 8,
  'xbzrle-cache-size': 8192,
  'max-postcopy-bandwidth': 9,
  'multifd-channels': 5,
  'multifd-compression': 'zstd',
  'multifd-zlib-level': 2,
  'multifd-zstd-level': 3,
  'multifd-qatzip-level': 4,
  'block-bitmap-mapping': [{ 'node-name': 'n', alias: 'a', bitmaps: [{ name: 'b', alias: 'c' }] }],
  'x-vcpu-dirty-limit-period': 11,
  'vcpu-dirty-limit': 12,
  'direct-io': true,
};

/** auto-converge throttles a source; QEMU reads it nowhere else. */
const DESTINATION_VACUOUS_CAPS = ['auto-converge'];

async function setVacuous(vm: Vm, side: 'source' | 'destination' = 'source'): Promise<void> {
  const caps = side === 'source' ? VACUOUS_CAPS : [...VACUOUS_CAPS, ...DESTINATION_VACUOUS_CAPS];
  await vm.ok('migrate-set-capabilities', {
    capabilities: caps.map((capability) => ({ capability, state: true })),
  });
  await vm.ok('migrate-set-parameters', VACUOUS_PARAMS);
}

/** The stream with the timer's host-clock offsets zeroed (they differ on every run). */
function withoutClocks(path: string): Buffer {
  const b = Buffer.from(readFileSync(path));
  const timer = b.indexOf(Buffer.from('\x05timer\x00\x00\x00\x00\x00\x00\x00\x02', 'latin1')) + 14;
  assert.ok(timer > 14, 'timer section found');
  return b.fill(0, timer, timer + 24);
}

/** The members query-migrate shows, and those of its `ram`. */
const shape = (i: Record<string, unknown>) => [...Object.keys(i), ...Object.keys(i.ram ?? {})].sort();

// QEMU's stream for this guest is the same bytes on every run (but the timer's clocks);
// qmigrate ends its iteration chunks by time, so its bytes vary from run to run and the
// destination's RAM is what is compared.
for (const kind of KINDS) {
  test(`${kind}: the vacuous options change nothing, on the source or the destination`, async (t) => {
    const dir = tmpDir(t);
    const runs: { stream: Buffer; shape: string[] }[] = [];
    for (const vacuous of [false, true]) {
      const src = await startVm(t, kind, sharedGuest(dir), dir);
      if (!src) return;
      if (vacuous) await setVacuous(src);
      const file = join(dir, `${vacuous}.mig`);
      await src.ok('migrate', { uri: `file:${file}`, ...(vacuous ? { detach: true } : {}) });
      const info = await waitInfo(src, finished);
      assert.equal(info.status, 'completed');
      runs.push({ stream: withoutClocks(file), shape: shape(info) });
    }
    assert.deepEqual(runs[1]!.shape, runs[0]!.shape, 'query-migrate shows the same members');
    if (kind === '10.0')
      assert.ok(runs[0]!.stream.equals(runs[1]!.stream), 'streams differ outside the timer');

    const dst = (await startVm(t, kind, [...emptyGuest(dir, 'dst.img'), '-incoming', 'defer'], dir))!;
    await setVacuous(dst, 'destination');
    await dst.ok('migrate-incoming', { uri: `file:${join(dir, 'true.mig')}`, 'exit-on-error': false });
    assert.equal((await waitInfo(dst, finished)).status, 'completed');
    assert.equal((await dst.ok('query-status')).status, 'running');
    await dst.ok('pmemsave', { val: 0, size: 16 << 20, filename: join(dir, 'dst.dump') });
    assert.ok(readFileSync(join(dir, 'dst.dump')).equals(readFileSync(join(dir, 'img'))));
  });
}

for (const kind of KINDS) {
  test(`${kind}: a source ignores 'numeric' and 'to', which only a listener reads`, async (t) => {
    const dir = tmpDir(t);
    const src = await startVm(t, kind, sharedGuest(dir), dir);
    if (!src) return;
    let connections = 0;
    const server = createServer((s) => {
      connections++;
      s.destroy();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    t.after(() => server.close());
    const port = (server.address() as { port: number }).port;
    await src.ok('migrate', {
      channels: [
        {
          'channel-type': 'main',
          addr: {
            transport: 'socket',
            type: 'inet',
            host: 'localhost',
            port: String(port),
            numeric: true,
            to: port + 3,
          },
        },
      ],
    });
    await waitInfo(src, finished);
    assert.equal(connections, 1, 'connected to the host name and the first port');
  });
}

test('return-path over a file: QEMU 10.0 fails reading the file, qmigrate refuses before starting', async (t) => {
  const dir = tmpDir(t);
  const rp = { capabilities: [{ capability: 'return-path', state: true }] };
  const results: Partial<Record<Kind, unknown>> = {};
  for (const kind of KINDS) {
    const src = await startVm(t, kind, sharedGuest(dir), dir);
    if (!src) return;
    await src.ok('migrate-set-capabilities', rp);
    const r = await src.x('migrate', { uri: `file:${join(dir, `${kind}.mig`)}` });
    results[kind] = 'error' in r ? r : await waitInfo(src, finished);
    assert.deepEqual(await src.ok('query-status'), { status: 'running', running: true });
  }
  assert.deepEqual(results['10.0'], {
    status: 'failed',
    'error-desc': 'Unable to read from file: Bad file descriptor',
  });
  assert.deepEqual(results.qmigrate, {
    error: {
      class: 'GenericError',
      desc: "Capability 'return-path' needs a transport that carries replies; a file cannot",
    },
  });
});

test('postcopy-ram over a file: QEMU 10.0 fails reading the file, qmigrate refuses it and exec before starting', async (t) => {
  const dir = tmpDir(t);
  const pc = { capabilities: [{ capability: 'postcopy-ram', state: true }] };
  const results: Partial<Record<Kind, unknown>> = {};
  for (const kind of KINDS) {
    const src = await startVm(t, kind, sharedGuest(dir), dir);
    if (!src) return;
    await src.ok('migrate-set-capabilities', pc);
    const r = await src.x('migrate', { uri: `file:${join(dir, `${kind}-pc.mig`)}` });
    results[kind] = 'error' in r ? r : await waitInfo(src, finished);
    assert.deepEqual(await src.ok('query-status'), { status: 'running', running: true });
    if (kind === 'qmigrate') {
      // QEMU 10.0 reads the child's output as the return path: with `cat > /dev/null` its
      // postcopy stays postcopy-active for good, the guest stopped. qmigrate does not read it.
      assert.deepEqual(await src.x('migrate', { uri: 'exec:cat > /dev/null' }), {
        error: {
          class: 'GenericError',
          desc: "Capability 'postcopy-ram' over exec is not supported by qmigrate: the child's output is not read",
        },
      });
      assert.equal(((await src.ok('query-migrate')) as { status?: string }).status, undefined);
    }
  }
  assert.deepEqual(results['10.0'], {
    status: 'failed',
    'error-desc': 'Unable to read from file: Bad file descriptor',
  });
  assert.deepEqual(results.qmigrate, {
    error: {
      class: 'GenericError',
      desc: "Capability 'postcopy-ram' needs a transport that carries replies; a file cannot",
    },
  });
});

test('zero-page-detection=none without multifd: zero pages go as normal pages, as in QEMU 10.0', async (t) => {
  const dir = tmpDir(t);
  const counts: Partial<Record<Kind, unknown>> = {};
  for (const kind of KINDS) {
    const src = await startVm(t, kind, sharedGuest(dir), dir);
    if (!src) return;
    await src.ok('migrate-set-parameters', { 'zero-page-detection': 'none' });
    await src.ok('migrate', { uri: `file:${join(dir, `${kind}.mig`)}` });
    const ram = (await waitInfo(src, finished)).ram as Record<string, number>;
    counts[kind] = { duplicate: ram.duplicate, normal: ram.normal };
  }
  assert.deepEqual(counts.qmigrate, { duplicate: 0, normal: 4096 });
  assert.deepEqual(counts['10.0'], counts.qmigrate);
});

test('abstract unix sockets with tight off carry a migration: QEMU 10.0 -> qmigrate', async (t) => {
  const dir = tmpDir(t);
  const src = await startVm(t, '10.0', sharedGuest(dir), dir);
  if (!src) return;
  const dst = (await startVm(t, 'qmigrate', [...emptyGuest(dir, 'dst.img'), '-incoming', 'defer'], dir))!;
  const path = `qmigrate-test-${process.pid}`;
  const loose = { transport: 'socket', type: 'unix', path, abstract: true, tight: false };
  // (The tight form, QEMU's default, is proven in socket-address.test.ts.)
  await dst.ok('migrate-incoming', { channels: [{ 'channel-type': 'main', addr: loose }] });
  await src.ok('migrate', { channels: [{ 'channel-type': 'main', addr: loose }] });
  assert.equal((await waitInfo(src, finished)).status, 'completed');
  assert.equal((await waitInfo(dst, finished)).status, 'completed');
  await dst.ok('pmemsave', { val: 0, size: 16 << 20, filename: join(dir, 'dst.dump') });
  assert.ok(readFileSync(join(dir, 'dst.dump')).equals(readFileSync(join(dir, 'img'))));
});
