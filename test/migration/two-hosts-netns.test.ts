// The two-host helper (test/helpers/netns.ts): the /30 exists only inside the two namespaces
// (the host has neither address nor route for it), the link carries packets until it is taken
// down, and no namespace of a test is left behind, whether the test passes, fails, or its
// process gets SIGTERM or SIGINT; nor, on such a signal, a peer process or a temp directory.
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { requireTwoHosts, twoHosts } from '../helpers/netns.js';
import { requireQemu } from '../helpers/qemu.js';

const fixture = fileURLToPath(new URL('../fixtures/netns/two-hosts-then.ts', import.meta.url));
const peersFixture = fileURLToPath(new URL('../fixtures/netns/two-hosts-peers-then.ts', import.meta.url));

// Under `node --test` this process's node:test reports to its runner in a binary form, which a
// fixture would inherit: its report here is TAP, its name lines on lines of their own.
const { NODE_TEST_CONTEXT: _, ...fixtureEnv } = process.env;

const namespaces = () => execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });

test('two hosts: addresses only inside the namespaces; the link is up, then down', (t) => {
  const net = twoHosts(t);
  if (!net) return;
  const host = execFileSync('ip', ['-4', 'addr', 'show'], { encoding: 'utf8' });
  const routes = execFileSync('ip', ['-4', 'route', 'show', 'table', 'all'], { encoding: 'utf8' });
  const prefix = net.src.addr.replace(/\.\d+$/, '.');
  for (const h of [net.src, net.dst]) {
    assert.ok(!host.includes(h.addr), `${h.addr} is not the host's`);
    assert.match(net.exec(h, ['ip', '-4', 'addr', 'show', 'dev', h.ifname]), new RegExp(`inet ${h.addr}/30`));
    assert.match(net.exec(h, ['ip', 'link', 'show', 'lo']), /\bUP\b/);
  }
  assert.ok(!routes.includes(prefix), 'the host has no route to the link');
  assert.match(net.exec(net.src, ['ip', 'route', 'get', net.dst.addr]), new RegExp(`dev ${net.src.ifname}`));
  assert.match(net.exec(net.src, ['ip', 'link', 'show', net.src.ifname]), /state UP/);
  net.linkDown(net.dst);
  assert.match(net.exec(net.src, ['ip', 'link', 'show', net.src.ifname]), /NO-CARRIER/);
  net.linkUp(net.dst);
  assert.match(net.exec(net.src, ['ip', 'link', 'show', net.src.ifname]), /state UP/);
});

/** Starts the fixture in `mode` and resolves with the two namespaces it made. */
function fixtureHosts(mode: string): { child: ChildProcess; names: Promise<string[]> } {
  const child = spawn(process.execPath, ['--import', 'tsx', fixture, mode], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: fixtureEnv,
  });
  const names = new Promise<string[]>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = /^(qmig-\S+-src) (qmig-\S+-dst)$/m.exec(out);
      if (m) resolve([m[1]!, m[2]!]);
    });
    child.stderr.on('data', (d) => {
      out += d;
    });
    child.once('exit', () => reject(new Error(`the fixture ended first: ${out}`)));
  });
  return { child, names };
}

test('two hosts: a namespace an earlier process with the same pid left does not stop the next', async (t) => {
  if (!requireTwoHosts(t)) return;
  const { child, names } = fixtureHosts('stale');
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const s of ['src', 'dst'])
      spawnSync('ip', ['netns', 'del', `qmig-${child.pid}-0-${s}`], { stdio: 'ignore' });
  });
  const got = await names;
  assert.deepEqual(got, [`qmig-${child.pid}-0-src`, `qmig-${child.pid}-0-dst`]);
  const exited = new Promise<unknown>((r) => child.once('exit', (code, signal) => r(signal ?? code)));
  child.kill('SIGTERM');
  assert.equal(await exited, 'SIGTERM');
  for (const n of got) assert.doesNotMatch(namespaces(), new RegExp(`^${n}\\b`, 'm'));
});

test('two hosts: the namespaces of a test process killed with SIGKILL go with the next two hosts made', async (t) => {
  if (!requireTwoHosts(t)) return;
  const { child, names } = fixtureHosts('wait');
  let got: string[] = [];
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const n of got) spawnSync('ip', ['netns', 'del', n], { stdio: 'ignore' });
  });
  got = await names;
  const exited = new Promise<unknown>((r) => child.once('exit', (code, signal) => r(signal ?? code)));
  child.kill('SIGKILL');
  assert.equal(await exited, 'SIGKILL');
  // Nothing can run on SIGKILL: they are still there...
  for (const n of got) assert.match(namespaces(), new RegExp(`^${n}\\b`, 'm'));
  // ...until the next two hosts, whose maker sees their process is gone.
  assert.ok(twoHosts(t));
  for (const n of got) assert.doesNotMatch(namespaces(), new RegExp(`^${n}\\b`, 'm'));
});

for (const end of ['fail', 'SIGTERM', 'SIGINT'] as const) {
  test(`two hosts: no namespace is left behind when the test process ends by ${end}`, async (t) => {
    if (!requireTwoHosts(t)) return;
    const child = spawn(process.execPath, ['--import', 'tsx', fixture, end === 'fail' ? 'fail' : 'wait'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: fixtureEnv,
    });
    let names: string[] = [];
    t.after(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      // Whatever happened, this test leaves nothing behind either.
      for (const n of names) spawnSync('ip', ['netns', 'del', n], { stdio: 'ignore' });
    });
    names = await new Promise<string[]>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d) => {
        out += d;
        // (stdout also carries the fixture's TAP report.)
        const m = /^(qmig-\S+-src) (qmig-\S+-dst)$/m.exec(out);
        if (m) resolve([m[1]!, m[2]!]);
      });
      child.once('exit', () => reject(new Error(`the fixture ended first: ${out}`)));
    });
    // (A failing test removes them at once: only a waiting one is sure to still have them.)
    if (end !== 'fail') for (const n of names) assert.match(namespaces(), new RegExp(`^${n}\\b`, 'm'));
    const exited = new Promise<unknown>((r) => child.once('exit', (code, signal) => r(signal ?? code)));
    if (end !== 'fail') child.kill(end);
    const how = await exited;
    assert.equal(how, end === 'fail' ? 1 : end, 'the process ends as it would have');
    for (const n of names) assert.doesNotMatch(namespaces(), new RegExp(`^${n}\\b`, 'm'));
  });
}

/** The process `pid` is gone (or a zombie nobody reaps), within `ms`. */
async function gone(pid: number, ms = 5000): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(50)) {
    try {
      if (/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))) return true;
    } catch {
      return true;
    }
  }
  return false;
}

for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  test(`two hosts: ${sig} to a test process with peers leaves no peer, namespace or temp dir`, async (t) => {
    if (!requireTwoHosts(t) || !requireQemu(t, '10.0')) return;
    const child = spawn(process.execPath, ['--import', 'tsx', peersFixture], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: fixtureEnv,
    });
    let left: { names: string[]; pids: number[]; dirs: string[] } = { names: [], pids: [], dirs: [] };
    t.after(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      for (const p of left.pids) spawnSync('kill', ['-9', String(p)], { stdio: 'ignore' });
      for (const n of left.names) spawnSync('ip', ['netns', 'del', n], { stdio: 'ignore' });
      for (const d of left.dirs) rmSync(d, { recursive: true, force: true });
    });
    left = await new Promise<typeof left>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d) => {
        out += d;
        const m = /^peers (\S+) (\S+) (\d+) (\d+) (\S+)$/m.exec(out);
        if (!m) return;
        const pids = [Number(m[3]), Number(m[4])];
        // QEMU's own directory (its QMP socket's) is in its command line.
        const qemuArgs = readFileSync(`/proc/${pids[1]}/cmdline`, 'utf8');
        const qemuDir = /unix:(\S+)\/qmp\.sock/.exec(qemuArgs)?.[1];
        assert.ok(qemuDir, qemuArgs);
        resolve({ names: [m[1]!, m[2]!], pids, dirs: [m[5]!, qemuDir] });
      });
      child.once('exit', () => reject(new Error(`the fixture ended first: ${out}`)));
    });
    const exited = new Promise<unknown>((r) => child.once('exit', (code, signal) => r(signal ?? code)));
    child.kill(sig);
    assert.equal(await exited, sig, 'the process ends as it would have');
    for (const p of left.pids) assert.ok(await gone(p), `peer ${p} is gone`);
    for (const n of left.names) assert.doesNotMatch(namespaces(), new RegExp(`^${n}\\b`, 'm'));
    for (const d of left.dirs) assert.ok(!existsSync(d), `${d} is removed`);
  });
}
