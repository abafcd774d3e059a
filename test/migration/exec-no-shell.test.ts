// exec: the channels form (`{transport: exec, args: [...]}`) runs its args without a shell, so
// shell metacharacters in them are plain bytes; the URI form `exec:CMD` is QEMU's
// `/bin/sh -c CMD`. For a peer that takes only a URI, args become a shell command that runs
// exactly them (addressToEquivalentUri's quoting), checked here against /bin/sh itself.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { addressToEquivalentUri } from '../../src/qapi/uri.js';
import { startBareVm, waitMigration } from '../helpers/peers.js';

/** File names no shell would leave alone (no '/', so each is one name in a directory). */
const META = ['a;touch b|c&d$(touch e)`touch f`\'g"h>i<j*k\\l', ' $HOME ~ {m,n} #o', '-p\n!q'];

test('the channels form runs exec args without a shell: metacharacters reach the program as they are', async (t) => {
  const { dir, qmp: q } = await startBareVm(t);
  const out = join(dir, 'out');
  mkdirSync(out);
  await q.migrate({
    channels: [
      {
        'channel-type': 'main',
        addr: { transport: 'exec', args: ['/usr/bin/tee', ...META.map((m) => join(out, m))] },
      },
    ],
  });
  assert.equal((await waitMigration(q)).status, 'completed');
  assert.deepEqual(readdirSync(out).sort(), [...META].sort());
  const sizes = META.map((m) => statSync(join(out, m)).size);
  assert.ok(
    sizes.every((s) => s > 0 && s === sizes[0]),
    `${sizes}`,
  );
});

test('args given to a URI-only peer become a shell command that runs exactly them', () => {
  const args = [
    process.execPath,
    '-e',
    'process.stdout.write(JSON.stringify(process.argv.slice(1)))',
    '--',
    ...META,
    '',
  ];
  const uri = addressToEquivalentUri({ transport: 'exec', args }) ?? '';
  assert.ok(uri.startsWith('exec:'), uri);
  const r = spawnSync('/bin/sh', ['-c', uri.slice('exec:'.length)], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), [...META, '']);
});
