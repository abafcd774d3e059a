// qmigrate's HMP against QEMU 10.0's own, differentially: two identical QEMU 10.0 instances,
// A and B; every scripted line runs on A through QMP `human-monitor-command` and on B through
// our Hmp, whose backend forwards to B's QMP. Outputs must be identical; only the time figures
// of `info migrate` (and the throughput derived from them) are normalised, number by number.
// Where a state is stable, our Hmp is also run over A's own QMP and must match A byte for byte.
// Last, serveHmp against QEMU's `-monitor unix:...`: same keystrokes in, same bytes out.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Hmp, type HmpBackend, serveHmp } from '../../src/hmp/index.js';
import { QapiError, type QmpErrorClass } from '../../src/qapi/errors.js';
import { parseJson, stringifyJson } from '../../src/qapi/json.js';
import { guestArgs, writeMixedImage } from '../helpers/guest.js';
import { type QemuBinary, type RunningQemu, requireQemu, startQemu } from '../helpers/qemu.js';

type Reply = { return: unknown } | { error: { class: QmpErrorClass; desc: string } };

async function qmp(q: RunningQemu, command: string, args?: Record<string, unknown>): Promise<Reply> {
  const msg = args === undefined ? { execute: command } : { execute: command, arguments: args };
  // qmigrate's JSON keeps integers past 2^53 exact (max-bandwidth can be 2^63 - 2^50).
  return parseJson(await q.qmp.sendRaw(stringifyJson(msg))) as Reply;
}

/** An HmpBackend on a QEMU's QMP socket; QMP error replies become QapiError. */
function backendFor(q: RunningQemu): HmpBackend {
  return {
    async execute(command, args) {
      const r = await qmp(q, command, args);
      if ('error' in r) throw new QapiError(r.error.desc, r.error.class);
      return r.return;
    },
  };
}

async function viaQemu(q: RunningQemu, line: string): Promise<string> {
  const r = await qmp(q, 'human-monitor-command', { 'command-line': line });
  if ('error' in r) throw new Error(`human-monitor-command ${JSON.stringify(line)}: ${r.error.desc}`);
  return r.return as string;
}

function versionOf(q: RunningQemu): string {
  const v = (
    q.qmp.greeting as { QMP: { version: { qemu: { major: number; minor: number; micro: number } } } }
  ).QMP.version.qemu;
  return `${v.major}.${v.minor}.${v.micro}`;
}

/** The time figures of `info migrate`, which no two runs share; the rest of the line stays. */
const TIME_LINE = /^(total time: |expected downtime: |downtime: |setup: )\d+( ms)$/;
const THROUGHPUT_LINE = /^(throughput: )\d+\.\d\d( mbps)$/;
function normaliseTimes(text: string): string {
  return text
    .split('\r\n')
    .map((l) => l.replace(TIME_LINE, '$1#$2').replace(THROUGHPUT_LINE, '$1#$2'))
    .join('\r\n');
}

/** `help` / `info` listings split into entries: a line plus its tab-indented continuation lines. */
function helpEntries(text: string): Map<string, string> {
  const entries = new Map<string, string>();
  let key = '';
  for (const line of text.split('\r\n')) {
    if (line === '') continue;
    if (line.startsWith('\t')) entries.set(key, `${entries.get(key)}\r\n${line}`);
    else {
      key = line.split(' -- ')[0]!;
      entries.set(key, line);
    }
  }
  return entries;
}

/** Our listing must be QEMU's entries for our commands, verbatim and in QEMU's order. */
function assertHelpSubset(ours: string, qemu: string, expectedCount: number, what: string): void {
  const mine = helpEntries(ours);
  const theirs = helpEntries(qemu);
  assert.equal(mine.size, expectedCount, `${what}: ${[...mine.keys()].join(' | ')}`);
  let last = -1;
  const order = [...theirs.keys()];
  for (const [key, entry] of mine) {
    assert.equal(entry, theirs.get(key), `${what}: entry ${key}`);
    const at = order.indexOf(key);
    assert.ok(at > last, `${what}: ${key} out of QEMU's order`);
    last = at;
  }
  assert.ok(ours.endsWith('\r\n'));
}

type Compare = 'exact' | 'times' | { subset: number };
type Step =
  | string
  | { line: string; compare?: Compare; sameInstance?: boolean }
  | { qmp: string; args?: Record<string, unknown> }
  | { until: string[] }
  | { sleep: number }
  | { expectExit: true };

let compared = 0;

interface Pair {
  a: RunningQemu;
  b: RunningQemu;
  hmpB: Hmp;
  hmpA: Hmp;
}

async function untilStatus(q: RunningQemu, statuses: string[]): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const r = await qmp(q, 'query-migrate');
    const status = 'return' in r ? (r.return as { status?: string }).status : undefined;
    if (status !== undefined && statuses.includes(status)) return;
    if (Date.now() > deadline)
      throw new Error(`migration status ${status}, waited for ${statuses.join('/')}`);
    await sleep(20);
  }
}

function compareOutputs(line: string, qemu: string, ours: string, how: Compare): void {
  const what = `line ${JSON.stringify(line)}`;
  if (how === 'exact') assert.equal(ours, qemu, what);
  else if (how === 'times') {
    // The normalisation must have something to do, and must leave the layout alone.
    assert.match(qemu, /total time: \d+ ms/, what);
    assert.equal(normaliseTimes(ours), normaliseTimes(qemu), what);
    assert.equal(ours.split('\r\n').length, qemu.split('\r\n').length, what);
  } else assertHelpSubset(ours, qemu, how.subset, what);
}

/** Runs every step on A (QEMU's HMP) and on B (ours), interleaved, comparing as it goes. */
async function interleaved(p: Pair, steps: Step[]): Promise<void> {
  for (const step of steps) {
    if (typeof step === 'object' && 'qmp' in step) {
      const [ra, rb] = [await qmp(p.a, step.qmp, step.args), await qmp(p.b, step.qmp, step.args)];
      assert.deepEqual(rb, ra, `qmp ${step.qmp}`);
      continue;
    }
    if (typeof step === 'object' && 'until' in step) {
      await untilStatus(p.a, step.until);
      await untilStatus(p.b, step.until);
      continue;
    }
    if (typeof step === 'object' && 'sleep' in step) {
      await sleep(step.sleep);
      continue;
    }
    if (typeof step === 'object' && 'expectExit' in step) {
      const exited = (q: RunningQemu) =>
        q.child.exitCode !== null || q.child.signalCode !== null
          ? Promise.resolve()
          : new Promise<void>((res) => q.child.once('exit', () => res()));
      await Promise.all([exited(p.a), exited(p.b)]);
      continue;
    }
    const {
      line,
      compare = 'exact',
      sameInstance = false,
    } = typeof step === 'string' ? { line: step } : step;
    const qemu = await viaQemu(p.a, line);
    const ours = await p.hmpB.run(line);
    compareOutputs(line, qemu, ours, compare);
    compared++;
    if (sameInstance) {
      // Same QEMU, same moment: nothing to normalise but a clock that keeps running.
      const [mine, theirs] = [await p.hmpA.run(line), await viaQemu(p.a, line)];
      if (compare === 'exact') assert.equal(mine, theirs, `${line} (over A's own QMP)`);
      else compareOutputs(`${line} (over A's own QMP)`, theirs, mine, compare);
    }
  }
}

async function startPair(
  bin: QemuBinary,
  args: string[],
  machine?: (which: 'a' | 'b') => string[],
): Promise<Pair> {
  const a = await startQemu(bin, args, machine?.('a'));
  const b = await startQemu(bin, args, machine?.('b'));
  const info = { version: versionOf(b) };
  return { a, b, hmpB: new Hmp(backendFor(b), info), hmpA: new Hmp(backendFor(a), info) };
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((res) => srv.listen(0, '127.0.0.1', () => res()));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((res) => srv.close(() => res()));
  return port;
}

/**
 * For sessions that listen on a fixed port: the whole script on A, then A stopped (freeing
 * the port), then the whole script on B; line by line equal.
 */
async function sequential(bin: QemuBinary, args: string[], lines: string[]): Promise<void> {
  const a = await startQemu(bin, args);
  const qemuOut: string[] = [];
  try {
    for (const l of lines) qemuOut.push(await viaQemu(a, l));
  } finally {
    await a.stop();
  }
  const b = await startQemu(bin, args);
  try {
    const hmp = new Hmp(backendFor(b), { version: versionOf(b) });
    for (const [i, l] of lines.entries()) {
      assert.equal(await hmp.run(l), qemuOut[i], `line ${JSON.stringify(l)}`);
      compared++;
    }
  } finally {
    await b.stop();
  }
}

test('running source: syntax errors, help, capabilities, parameters, exec migration', async (t) => {
  const bin = requireQemu(t, '10.0');
  if (!bin) return;
  const p = await startPair(bin, []);
  t.after(() => Promise.all([p.a.stop(), p.b.stop()]));
  await interleaved(p, [
    { line: 'info status', sameInstance: true },
    { line: 'info migrate', sameInstance: true },
    { line: 'info migrate_capabilities', sameInstance: true },
    { line: 'info migrate_parameters', sameInstance: true },
    'info version',
    'info memdev',
    // help and its listings
    'help migrate',
    'help migrate_set_parameter',
    'help info migrate',
    'help "info" "migrate"',
    'help stop',
    'help c',
    'help ?',
    'help quit',
    'help migrate extra words',
    'help bogus',
    'help info bogus',
    'help "abc',
    'help a b c d e f g h i j k l m n o p',
    'help a b c d e f g h i j k l m n o p q',
    { line: 'help', compare: { subset: 15 } },
    { line: '?', compare: { subset: 15 } },
    { line: 'help  ', compare: { subset: 15 } },
    { line: 'info', compare: { subset: 6 } },
    { line: 'help info', compare: { subset: 6 } },
    // unknown commands and bad arguments
    'bogus',
    '  bogus   x',
    'MIGRATE tcp:127.0.0.1:4444',
    '"migrate_cancel"',
    'migrate_cancel"x"',
    'bogus/x',
    'info bogus',
    'info   bogus',
    'info/migrate',
    'info migrate extra',
    '  info  migrate x',
    'info status x',
    'stop x',
    'cont x',
    'migrate_cancel x',
    '',
    '   ',
    'migrate',
    '  migrate',
    'migrate -d',
    'migrate -d -r',
    'migrate -x tcp:127.0.0.1:4444',
    'migrate -',
    'migrate -d -d x',
    'migrate -r -d x',
    'migrate exec:cat > /dev/null',
    'migrate "exec:cat',
    'migrate "exec:\\q"',
    'migrate foo:bar',
    'migrate tcp:127.0.0.1',
    'migrate tcp:[::1]',
    'migrate unix:',
    'migrate/x',
    'migrate "file:/tmp/x,offset=abc"',
    'migrate -r "exec:cat > /dev/null"',
    'migrate_incoming',
    'migrate_incoming foo:bar',
    'migrate_incoming tcp:127.0.0.1:0',
    'migrate_cancel',
    // postcopy's commands, outside a postcopy: QEMU's refusals
    'help migrate_start_postcopy',
    'help migrate_pause',
    'help migrate_recover',
    'migrate_start_postcopy',
    'migrate_start_postcopy x',
    'migrate_pause',
    'migrate_recover',
    'migrate_recover tcp:127.0.0.1:0',
    'migrate_recover "foo',
    {
      qmp: 'migrate-set-capabilities',
      args: { capabilities: [{ capability: 'postcopy-ram', state: true }] },
    },
    'migrate_start_postcopy',
    'migrate_pause',
    // capabilities
    'migrate_set_capability',
    'migrate_set_capability xbzrle',
    'migrate_set_capability bogus on',
    'migrate_set_capability xbzrle maybe',
    'migrate_set_capability xbzrle On',
    'migrate_set_capability xbzrle "on"',
    'migrate_set_capability xbzrle on x',
    'migrate_set_capability  "xbzrle"    on',
    'migrate_set_capability postcopy-ram on',
    'migrate_set_capability multifd on',
    'migrate_set_capability zero-copy-send on',
    'migrate_set_capability postcopy-ram off',
    'migrate_set_capability events\ton',
    'info migrate_capabilities',
    // parameters: names, sizes with suffixes, bandwidths in MiB/s, ranges, enums, bools
    'migrate_set_parameter',
    'migrate_set_parameter max-bandwidth',
    'migrate_set_parameter bogus 1',
    'migrate_set_parameter block-bitmap-mapping x',
    'migrate_set_parameter max-bandwidth bogus',
    'migrate_set_parameter max-bandwidth 10',
    'migrate_set_parameter max-bandwidth -1',
    'migrate_set_parameter max-bandwidth 8192P',
    'migrate_set_parameter max-bandwidth 8191P',
    'migrate_set_parameter avail-switchover-bandwidth 1.5G',
    'migrate_set_parameter downtime-limit 10k',
    'migrate_set_parameter downtime-limit 3000000',
    'migrate_set_parameter downtime-limit 99999999999999999999',
    'migrate_set_parameter downtime-limit ""',
    'migrate_set_parameter announce-rounds 1.5',
    'migrate_set_parameter announce-step 0',
    'migrate_set_parameter announce-initial 0x40',
    'migrate_set_parameter xbzrle-cache-size 128M',
    'migrate_set_parameter xbzrle-cache-size 1000',
    'migrate_set_parameter xbzrle-cache-size -1',
    'migrate_set_parameter xbzrle-cache-size 8E',
    'migrate_set_parameter cpu-throttle-initial 100',
    'migrate_set_parameter cpu-throttle-initial 300',
    'migrate_set_parameter cpu-throttle-initial -1',
    'migrate_set_parameter cpu-throttle-initial abc',
    'migrate_set_parameter cpu-throttle-initial 08',
    'migrate_set_parameter cpu-throttle-initial 010',
    'migrate_set_parameter cpu-throttle-increment " 5"',
    'migrate_set_parameter cpu-throttle-tailslow Y',
    'migrate_set_parameter cpu-throttle-tailslow y',
    'migrate_set_parameter max-cpu-throttle 50',
    'migrate_set_parameter x-checkpoint-delay 5000000000',
    'migrate_set_parameter multifd-channels 256',
    'migrate_set_parameter multifd-channels 0',
    'migrate_set_parameter multifd-compression bogus',
    'migrate_set_parameter multifd-compression zlib',
    'migrate_set_parameter multifd-zlib-level 1-3',
    'migrate_set_parameter zero-page-detection legacy',
    'migrate_set_parameter mode bogus',
    'migrate_set_parameter tls-creds "a\\qb"',
    'migrate_set_parameter tls-authz "a\\"b"',
    'migrate_set_parameter vcpu-dirty-limit 0',
    'migrate_set_parameter x-vcpu-dirty-limit-period 2000',
    'migrate_set_parameter max-postcopy-bandwidth 1k',
    'migrate_set_parameter direct-io maybe',
    { line: 'info migrate_parameters', sameInstance: true },
    {
      qmp: 'migrate-set-parameters',
      args: {
        'block-bitmap-mapping': [
          { 'node-name': 'node0', alias: 'n0', bitmaps: [{ name: 'bitmap0', alias: 'b0' }] },
        ],
      },
    },
    'info migrate_parameters',
    // run states
    'stop',
    'info status',
    'cont',
    's',
    'info status',
    'c',
    // a completed exec migration; human-monitor-command cannot wait for it
    'migrate "exec:cat > /dev/null"',
    { until: ['completed'] },
    { line: 'info migrate', compare: 'times', sameInstance: true },
    { line: 'info status', sameInstance: true },
    'migrate "exec:cat > /dev/null"',
    'migrate_cancel',
    'cont',
    'info status',
    // a failed one
    'migrate -d tcp:127.0.0.1:1',
    { until: ['failed'] },
    { line: 'info migrate', sameInstance: true },
  ]);
});

test('prelaunch (-S): info status, cont, stop, quit', async (t) => {
  const bin = requireQemu(t, '10.0');
  if (!bin) return;
  const p = await startPair(bin, ['-S']);
  t.after(() => Promise.all([p.a.stop(), p.b.stop()]));
  await interleaved(p, [
    'info status',
    'stop',
    'info status',
    'cont',
    'info status',
    'stop',
    'info status',
    'quit x',
    'quit',
    { expectExit: true },
  ]);
});

test('destination (-incoming defer): migrate refused, migrate_incoming once, socket address', async (t) => {
  const bin = requireQemu(t, '10.0');
  if (!bin) return;
  const port = await freePort();
  await sequential(
    bin,
    ['-incoming', 'defer'],
    [
      'info status',
      'info migrate',
      'migrate "exec:cat > /dev/null"',
      'migrate -d tcp:127.0.0.1:1',
      'migrate_cancel',
      'migrate_incoming foo:bar',
      'migrate_incoming tcp:127.0.0.1',
      'migrate_incoming "exec:cat',
      'stop',
      'cont',
      'info status',
      'migrate_set_capability events on',
      `migrate_incoming tcp:127.0.0.1:${port}`,
      'info migrate',
      `migrate_incoming tcp:127.0.0.1:${port}`,
      'migrate_incoming "exec:cat > /dev/null"',
      'migrate_set_capability multifd on',
      'migrate_cancel',
      'info migrate',
      'info status',
    ],
  );
});

test('destination (-incoming URI on the command line): migrate_incoming already started', async (t) => {
  const bin = requireQemu(t, '10.0');
  if (!bin) return;
  const port = await freePort();
  await sequential(
    bin,
    ['-incoming', `tcp:127.0.0.1:${port}`],
    ['info status', 'info migrate', `migrate_incoming tcp:127.0.0.1:${port}`],
  );
});

test('active and cancelled migration of a RAM guest: info migrate with RAM and XBZRLE lines', async (t) => {
  const bin = requireQemu(t, '10.0');
  if (!bin) return;
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-hmp-ram-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const w of ['a', 'b']) writeMixedImage(join(dir, `${w}.img`), 64 << 20);
  const p = await startPair(bin, [], (w) => guestArgs(join(dir, `${w}.img`), 64));
  t.after(() => Promise.all([p.a.stop(), p.b.stop()]));
  await interleaved(p, [
    'info memdev',
    'migrate_set_capability xbzrle on',
    // `sleep` never reads: the pipe fills, the migration thread blocks and its counters stop.
    'migrate -d "exec:sleep 10"',
    { until: ['active'] },
    { sleep: 1000 },
    { line: 'info migrate', compare: 'times', sameInstance: true },
    'info status',
    'migrate_set_capability xbzrle off',
    'migrate_set_parameter downtime-limit 1k',
    'migrate_cancel',
    { until: ['cancelled'] },
    { line: 'info migrate', compare: 'times', sameInstance: true },
    'info status',
  ]);
});

// Our lines (not counting the serveHmp keystrokes) must reach the brief's minimum.
test('at least 60 command lines compared', async (t) => {
  if (!requireQemu(t, '10.0')) return;
  t.diagnostic(`${compared} command lines compared with QEMU 10.0`);
  assert.ok(compared >= 60, `${compared} lines compared`);
});

/** Sends keystroke chunks and records every byte that comes back. */
async function typeInto(sock: Socket, chunks: (string | Buffer)[]): Promise<Buffer> {
  let out = Buffer.alloc(0);
  let closed = false;
  let lastData = Date.now();
  sock.on('data', (d: Buffer) => {
    out = Buffer.concat([out, d]);
    lastData = Date.now();
  });
  sock.on('close', () => {
    closed = true;
  });
  const settle = async (cond: () => boolean, quietMs: number) => {
    const deadline = Date.now() + 15_000;
    while (!(closed || (cond() && Date.now() - lastData >= quietMs))) {
      if (Date.now() > deadline) throw new Error(`no prompt; got ${JSON.stringify(out.toString('latin1'))}`);
      await sleep(10);
    }
  };
  const prompt = () => out.toString('latin1').endsWith('(qemu) ');
  await settle(prompt, 50);
  for (const c of chunks) {
    const before = out.length;
    sock.write(c);
    const enter = (typeof c === 'string' ? Buffer.from(c, 'latin1') : c).some((b) => b === 10 || b === 13);
    if (enter) await settle(() => out.length > before && prompt(), 50);
    else await settle(() => true, 150);
  }
  await settle(() => closed, 0);
  return out;
}

test('serveHmp: same keystrokes as QEMU -monitor unix:..., same bytes back', async (t) => {
  const bin = requireQemu(t, '10.0');
  if (!bin) return;
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-hmp-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const qemuMon = join(dir, 'qemu-mon.sock');
  const ourMon = join(dir, 'our-mon.sock');
  const a = await startQemu(bin, ['-monitor', `unix:${qemuMon},server=on,wait=off`]);
  const b = await startQemu(bin, []);
  t.after(() => Promise.all([a.stop(), b.stop()]));
  const hmp = new Hmp(backendFor(b), { version: versionOf(b) });
  const server: Server = createServer((s) => serveHmp(s, hmp, { version: versionOf(b) }));
  await new Promise<void>((res) => server.listen(ourMon, () => res()));
  t.after(() => new Promise<void>((res) => server.close(() => res())));

  const keys: (string | Buffer)[] = [
    'info status\r',
    'help migrate\r',
    'bogus\n',
    'abc\x08\x08x\x1b[D\x1b[Cq\r', // editing: backspace, left, right
    'info migrate_c\t', // one completion: inserted with a space
    '\r',
    'migrate_set_parameter max-\t', // several: listed in columns, common prefix inserted
    'b\t',
    '10\r',
    'migrate_set_capability postcopy-\t',
    '\x15', // ^U
    'migrate_set_capability xbz\t',
    'o\t',
    'n\r',
    '\x1b[A', // history
    '\x1b[A',
    '\x1b[B',
    '\r',
    'ab cd\x17\x17\r', // ^W twice
    'xyz\x01\x1b[3~\x05\r', // ^A, Delete, ^E
    'xy\x0c', // ^L clears the screen and redraws
    '\x15\r',
    Buffer.from('\xc3\xa9\r', 'latin1'), // UTF-8 is bytes to readline
    'stop\r',
    'info status\r',
    'c\r',
    'migrate "exec:cat > /dev/null"\r', // waits for the migration before the next prompt
    'info status\r',
    'migrate -d tcp:127.0.0.1:1\r',
    'help info migrate\r',
    'quit\r',
  ];
  const [qemuBytes, ourBytes] = await Promise.all([
    typeInto(connect(qemuMon), keys),
    typeInto(connect(ourMon), keys),
  ]);
  const banner = `QEMU ${versionOf(b)} monitor - type 'help' for more information\r\n(qemu) `;
  assert.ok(qemuBytes.toString('latin1').startsWith(banner));
  // Compare as text (latin1 maps bytes one to one), pointing at the first difference.
  const ours = ourBytes.toString('latin1');
  const theirs = qemuBytes.toString('latin1');
  let at = 0;
  while (at < ours.length && ours[at] === theirs[at]) at++;
  const around = (s: string) => JSON.stringify(s.slice(Math.max(0, at - 120), at + 120));
  assert.ok(
    ours === theirs,
    `first difference at byte ${at}:\n qemu: ${around(theirs)}\n ours: ${around(ours)}`,
  );
  assert.ok(qemuBytes.toString('latin1').includes('VM status: paused (postmigrate)\r\n'));
});
