// `qmigrate migrate` run on the host against two "hosts" (network namespaces joined by a veth,
// test/helpers/netns.ts): the monitors are unix socket paths, the stream goes over tcp across
// the veth (`--tcp <destination's address>:0`). The link is cut mid-way; `--timeout` then
// cancels: exit 4 as README documents, the source's guest running with its RAM intact, the
// destination never running it. Unthrottled by the cut, the same run would complete well
// within the timeout.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnQmigrate } from '../helpers/qmigrate.js';
import { onTwoHosts } from '../migration/two-hosts-peers.js';

const MiB = 64;

test('qmigrate migrate across a veth whose link is cut: --timeout cancels, exit 4, the source runs', async (t) => {
  // A monitor serves one client at a time: a second one on each peer for the CLI.
  const cliQmp = (dir: string, name: string) => ['-qmp', `unix:${join(dir, name)},server=on,wait=off`];
  const on = await onTwoHosts(t, '10.0', 'qmigrate', MiB, (_net, dir) => ({
    src: cliQmp(dir, 'src-cli.qmp'),
    dst: cliQmp(dir, 'dst-cli.qmp'),
  }));
  if (!on) return;
  const { net, src, dst, dir } = on;
  const child = spawnQmigrate([
    ...['migrate', '--from', join(dir, 'src-cli.qmp'), '--to', join(dir, 'dst-cli.qmp')],
    ...['--tcp', `${net.dst.addr}:0`, '--max-bandwidth', '16M', '--timeout', '8'],
  ]);
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let out = '';
  child.stdout?.on('data', (d) => {
    out += d;
  });
  child.stderr?.on('data', (d) => {
    out += d;
  });
  const code = new Promise<number | null>((r) => child.on('close', r));
  // Cut once the stream is under way (some 43 MiB of non-zero pages at 16 MiB/s: ~3 s).
  for (const end = Date.now() + 20_000; ; ) {
    const m = await src.qmp.queryMigrate();
    if (m.status === 'active' && Number(m.ram?.transferred) > 4 << 20) break;
    assert.ok(Date.now() < end && child.exitCode === null, `the migration never got going: ${out}`);
    await sleep(20);
  }
  net.linkDown(net.src);
  const started = Date.now();
  assert.equal(await code, 4, out);
  assert.ok(Date.now() - started < 15_000, 'ended within the timeout and a bounded cancel');
  assert.match(
    out,
    /^migration cancelled(?: after [^:]*)?: the timeout passed and the migration was cancelled/m,
  );
  assert.match(out, /^ {2}the source's guest is still running$/m);
  assert.equal((await src.qmp.queryStatus()).status, 'running');
  assert.equal((await src.qmp.queryMigrate()).status, 'cancelled');
  await src.qmp.pmemsave({ val: 0, size: MiB << 20, filename: join(dir, 'src.dump') });
  assert.ok(
    readFileSync(join(dir, 'src.dump')).equals(readFileSync(on.srcImg)),
    "the source's RAM is intact",
  );
  assert.notEqual((await dst.qmp.queryStatus()).status, 'running', 'the destination never runs the guest');
});
