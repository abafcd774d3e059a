// An exec migration whose program cannot run fails `migrate` at once with the reason in
// glibc's words (src/util/errno.ts), as QEMU 10.0's spawn says it: a missing file, a path
// through a regular file, a symbolic link loop, a file without execute permission, an empty
// name, a directory, a name with a NUL character (which names no file).
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { writeMixedImage } from '../helpers/guest.js';
import { startPeer } from '../helpers/peers.js';

test('exec programs that cannot run: the same errors as QEMU 10.0, state failed', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-exec-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'plain'), '#!/bin/sh\n');
  chmodSync(join(dir, 'plain'), 0o644);
  symlinkSync(join(dir, 'loop-b'), join(dir, 'loop-a'));
  symlinkSync(join(dir, 'loop-a'), join(dir, 'loop-b'));
  const programs = [
    '/nonexistent/bin',
    join(dir, 'plain', 'x'),
    join(dir, 'loop-a'),
    join(dir, 'plain'),
    '',
    dir,
    `${join(dir, 'plain')}\0x`,
  ];
  const results: string[][] = [];
  for (const kind of ['10.0', 'qmigrate'] as const) {
    const image = join(dir, `${kind}.img`);
    writeMixedImage(image, 16 << 20, 3);
    const src = await startPeer(t, kind, dir, `src-${kind}`, image, 16);
    if (!src) return;
    const r: string[] = [];
    for (const prog of programs) {
      const err = await src.qmp
        .migrate({ channels: [{ 'channel-type': 'main', addr: { transport: 'exec', args: [prog] } }] })
        .then(
          () => 'accepted',
          (e: Error) => e.message,
        );
      r.push(`${err} / ${(await src.qmp.queryMigrate()).status}`);
    }
    results.push(r);
  }
  const q = (p: string) => `Failed to execute child process \u201c${p}\u201d`;
  assert.deepEqual(results[1], [
    `${q(programs[0]!)} (No such file or directory) / failed`,
    `${q(programs[1]!)} (Not a directory) / failed`,
    `${q(programs[2]!)} (Too many levels of symbolic links) / failed`,
    `${q(programs[3]!)} (Permission denied) / failed`,
    `${q('')} (No such file or directory) / failed`,
    `${q(dir)} (Permission denied) / failed`,
    `${q(programs[6]!)} (No such file or directory) / failed`,
  ]);
  assert.deepEqual(results[1], results[0]);
});
