// `qmigrate vm` at start, next to QEMU 10.0: -h/-help/--help, -version, -machine help, a
// memory-backend-file whose file cannot be used, no monitor at all (runs until a signal),
// and -run-with exit-with-parent=on (QEMU 10.1's option: the VM ends with its parent).
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
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
import { fileURLToPath } from 'node:url';
import { type QemuBinary, requireQemu } from '../helpers/qemu.js';
import { runQmigrate, spawnQmigrate } from '../helpers/qmigrate.js';

function tmp(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-vmstart-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Runs QEMU 10.0 to completion with `args` (after its -L). */
function runQemu(bin: QemuBinary, args: string[]) {
  const r = spawnSync(bin.path, [...bin.args, ...args], { env: bin.env, encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function spawnQemu(t: TestContext, bin: QemuBinary, args: string[]): ChildProcess {
  const child = spawn(bin.path, [...bin.args, ...args], {
    env: bin.env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  t.after(() => child.kill('SIGKILL'));
  return child;
}

/** QEMU's error line that names `what`, with the program name taken off. */
function errorLine(stderr: string, what: RegExp): string | undefined {
  return stderr
    .split('\n')
    .find((l) => what.test(l))
    ?.replace(/^(qemu-system-x86_64|qmigrate): /, '');
}

const lines = (text: string) => text.split('\n').filter((l) => l !== '');

test('-h, -help and --help print QEMU 10.0’s help lines for the options qmigrate takes', async (t) => {
  const qemu = requireQemu(t, '10.0');
  if (!qemu) return;
  const ref = runQemu(qemu, ['-h']);
  assert.equal(ref.code, 0);
  const theirs = new Set(lines(ref.stdout));
  const h = await runQmigrate(['vm', '-h']);
  assert.equal(h.code, 0, h.stderr);
  assert.equal(h.stderr, '');
  for (const flag of ['-help', '--help']) {
    const r = await runQmigrate(['vm', '-machine', 'none', flag, '-bogus']);
    assert.equal(r.code, 0, `${flag}: ${r.stderr}`);
    assert.equal(r.stdout, h.stdout, `${flag} prints the same help`);
  }
  // Everything not word for word QEMU's is qmigrate's header and its own options.
  const own = lines(h.stdout).filter((l) => !theirs.has(l));
  assert.deepEqual(own, [
    own[0], // the version line, checked below
    'Copyright (c) 2026 the qmigrate authors',
    'usage: qmigrate vm [options]',
    "A RAM-only guest for live migration in QEMU 10.0's stream format, driven like",
    'qemu-system-x86_64 -machine none. These are the options it takes:',
    '-m [size=]megs',
    '-run-with [exit-with-parent=on|off]',
    '                exit-with-parent=on causes qmigrate to exit if its parent',
    "                  process exits (QEMU 10.1's option)",
    '-object memory-backend-ram,id=id,size=size[,share=on|off]',
    '-object memory-backend-file,id=id,size=size,mem-path=path[,share=on|off]',
    "                guest RAM; with share=on the file holds the guest's RAM once",
    '                the process ends (not after a failed incoming migration)',
    '-object qmigrate-workload,id=id,rate=pages',
    "                qmigrate's guest: writes 'rate' pages per second while it",
    '                runs (rate=0: as fast as it can)',
    '-object tls-creds-x509,id=id,dir=path[,endpoint=client|server][,verify-peer=on|off]',
    '-object tls-creds-psk,id=id,dir=path[,endpoint=client|server][,username=name]',
    '-object authz-simple,id=id,identity=dn',
    '-object {"qom-type":"authz-list","id":"id","policy":"deny","rules":[...]}',
    "                TLS objects as QEMU's, for tls-creds and tls-authz",
    'Accepted for compatibility, without effect here: -accel, -L, -serial, -vga,',
    '-no-shutdown, -no-reboot, -no-user-config.',
  ]);
  assert.match(own[0]!, /^QEMU emulator version 10\.0\.2 \(qmigrate \d+\.\d+\.\d+\)$/);
  assert.match(
    lines(ref.stdout)[0]!,
    /^QEMU emulator version 10\.0\.2 \(.+\)$/,
    'QEMU’s first line has that shape',
  );
  // QEMU reads options in order: an error before -h wins.
  const bad = await runQmigrate(['vm', '-bogus', '-h']);
  assert.equal(bad.code, 1);
  assert.equal(runQemu(qemu, ['-bogus', '-h']).code, 1);
});

test('-version prints the version lines and exits 0', async () => {
  const r = await runQmigrate(['vm', '-version']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /^QEMU emulator version 10\.0\.2 \(qmigrate \d+\.\d+\.\d+\)\n/);
});

test('-machine help, -M help, -machine ? and -machine none,help answer as QEMU 10.0', async (t) => {
  const qemu = requireQemu(t, '10.0');
  if (!qemu) return;
  for (const args of [
    ['-machine', 'help'],
    ['-M', 'help'],
    ['-machine', '?'],
    ['-machine', 'foo,help'],
    ['-machine', 'none,help'],
    ['-M', 'none,?'],
  ]) {
    const ref = runQemu(qemu, args);
    const r = await runQmigrate(['vm', ...args]);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.code, ref.code);
    const ours = lines(r.stdout);
    const theirs = lines(ref.stdout);
    assert.equal(ours[0], theirs[0], args.join(' '));
    assert.ok(ours.length > 1);
    for (const l of ours) assert.ok(theirs.includes(l), `${args.join(' ')}: QEMU does not print ${l}`);
  }
  // `type=help` is a machine named "help", which neither knows.
  const r = await runQmigrate(['vm', '-machine', 'type=help']);
  const ref = runQemu(qemu, ['-machine', 'type=help']);
  assert.equal(r.code, 1);
  assert.equal(ref.code, 1);
  assert.equal(errorLine(r.stderr, /unsupported/), errorLine(ref.stderr, /unsupported/));
});

test('a memory-backend-file whose directory does not exist is refused at start, as by QEMU 10.0', async (t) => {
  const qemu = requireQemu(t, '10.0');
  if (!qemu) return;
  const dir = tmp(t);
  const cases: { name: string; opts: string }[] = [
    { name: 'no such directory', opts: `mem-path=${join(dir, 'nodir', 'f')},share=on` },
    { name: 'no such directory, share=off', opts: `mem-path=${join(dir, 'nodir', 'f')},share=off` },
    { name: 'a file smaller than the backend', opts: `mem-path=${join(dir, 'small')},share=on` },
  ];
  writeFileSync(join(dir, 'small'), 'hi');
  for (const c of cases) {
    const args = [
      '-machine',
      'none,memory-backend=m0',
      `-object`,
      `memory-backend-file,id=m0,size=64M,${c.opts}`,
    ];
    const ref = runQemu(qemu, ['-display', 'none', '-nodefaults', ...args]);
    const r = await runQmigrate(['vm', ...args]);
    assert.equal(ref.code, 1, `${c.name}: QEMU ${ref.stderr}`);
    assert.equal(r.code, 1, c.name);
    const what = /backing store/;
    assert.ok(errorLine(ref.stderr, what), `${c.name}: QEMU said ${ref.stderr}`);
    assert.equal(errorLine(r.stderr, what), errorLine(ref.stderr, what), c.name);
  }
  assert.equal(statSync(join(dir, 'small')).size, 2, 'the small file is left alone');
  assert.ok(!existsSync(join(dir, 'nodir')));
});

test('a new backing file is created at start with the backend’s size; a directory keeps nothing', async (t) => {
  const qemu = requireQemu(t, '10.0');
  if (!qemu) return;
  const dir = tmp(t);
  for (const who of ['qemu', 'qmigrate'] as const) {
    const file = join(dir, `${who}.img`);
    const inDir = join(dir, `${who}-dir`);
    mkdirSync(inDir);
    const args = [
      '-machine',
      'none',
      '-object',
      `memory-backend-file,id=m0,size=8M,mem-path=${file},share=on`,
      '-object',
      `memory-backend-file,id=m1,size=8M,mem-path=${inDir},share=on`,
    ];
    const child =
      who === 'qemu'
        ? spawnQemu(t, qemu, ['-display', 'none', '-nodefaults', ...args])
        : spawnQmigrate(['vm', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    t.after(() => child.kill('SIGKILL'));
    const exited = new Promise<number | null>((r) => child.once('exit', r));
    for (const end = Date.now() + 60_000; !existsSync(file) || statSync(file).size === 0; await sleep(25)) {
      assert.ok(Date.now() < end, `${who} did not create ${file}`);
    }
    assert.equal(statSync(file).size, 8 << 20, who);
    await sleep(300);
    child.kill('SIGTERM');
    assert.equal(await exited, 0, who);
    assert.deepEqual(readdirSync(inDir), [], `${who} left a file in the mem-path directory`);
  }
});

test('with no monitor, qmigrate vm runs until a signal, as QEMU 10.0 does', async (t) => {
  const qemu = requireQemu(t, '10.0');
  if (!qemu) return;
  for (const who of ['qemu', 'qmigrate'] as const) {
    const args = ['-machine', 'none', '-display', 'none', '-nodefaults'];
    const child =
      who === 'qemu'
        ? spawnQemu(t, qemu, args)
        : spawnQmigrate(['vm', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    t.after(() => child.kill('SIGKILL'));
    let stderr = '';
    child.stderr?.on('data', (d) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((r) => child.once('exit', r));
    const early = await Promise.race([exited, sleep(2500, 'running')]);
    assert.equal(early, 'running', `${who} exited at once (${early}): ${stderr}`);
    child.kill('SIGTERM');
    assert.equal(await exited, 0, who);
    assert.match(stderr, /terminating on signal 15/, who);
  }
});

/** Whether the process is gone (a zombie nobody has reaped yet counts as gone). */
function gone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(50)) if (gone(pid)) return true;
  return gone(pid);
}

const entry = fileURLToPath(new URL('../../src/cli/bin.ts', import.meta.url));

test('-run-with exit-with-parent=on: the VM ends when its parent is killed outright', async (t) => {
  // A parent that starts the VM, reports its pid, and then is SIGKILLed.
  const script = `
    const { spawn } = require('node:child_process');
    const vm = spawn(process.execPath, ['--import', 'tsx', ${JSON.stringify(entry)}, 'vm', '-machine', 'none',
      '-run-with', 'exit-with-parent=on'], { stdio: 'ignore', detached: true });
    console.log(vm.pid);
    setInterval(() => {}, 1000);`;
  const parent = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => parent.kill('SIGKILL'));
  const pid = Number(
    await new Promise<string>((r) => parent.stdout.once('data', (d) => r(String(d).trim()))),
  );
  t.after(() => {
    if (!gone(pid)) process.kill(pid, 'SIGKILL');
  });
  await sleep(2000); // let the VM come up
  assert.ok(!gone(pid), 'the VM did not start');
  parent.kill('SIGKILL');
  assert.ok(await waitGone(pid, 10_000), 'the VM outlived its parent');
});

test('exit-with-parent=on, when the parent named in QMIGRATE_PARENT_PID is gone already', async (t) => {
  const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', entry, 'vm', '-machine', 'none', '-run-with', 'exit-with-parent=on'],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, QMIGRATE_PARENT_PID: String(dead) } },
  );
  t.after(() => child.kill('SIGKILL'));
  const code = await Promise.race([
    new Promise<number | null>((r) => child.once('exit', r)),
    sleep(15_000, 'still running'),
  ]);
  assert.equal(code, 0);
});

test('-run-with takes exit-with-parent only, and QEMU 10.0’s text for an unknown key', async (t) => {
  const qemu = requireQemu(t, '10.0');
  if (!qemu) return;
  const r = await runQmigrate(['vm', '-machine', 'none', '-run-with', 'foo=bar']);
  const ref = runQemu(qemu, ['-machine', 'none', '-nodefaults', '-display', 'none', '-run-with', 'foo=bar']);
  assert.equal(r.code, 1);
  assert.equal(ref.code, 1);
  assert.equal(errorLine(r.stderr, /run-with/), errorLine(ref.stderr, /run-with/));
  const chroot = await runQmigrate(['vm', '-machine', 'none', '-run-with', 'chroot=/']);
  assert.equal(chroot.code, 1);
  assert.match(chroot.stderr, /^qmigrate: -run-with chroot=\/: 'chroot' is not supported by qmigrate$/m);
});

test('a signal with stderr closed still exits 0, as QEMU 10.0 does', async (t) => {
  const qemu = requireQemu(t, '10.0');
  if (!qemu) return;
  for (const who of ['qemu', 'qmigrate'] as const) {
    const args = ['-machine', 'none', '-display', 'none', '-nodefaults'];
    const child =
      who === 'qemu'
        ? spawnQemu(t, qemu, args)
        : spawnQmigrate(['vm', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    t.after(() => child.kill('SIGKILL'));
    const exited = new Promise<number | null>((r) => child.once('exit', r));
    assert.equal(await Promise.race([exited, sleep(2500, 'running')]), 'running', `${who} did not start`);
    // Whoever read its stderr (a supervisor's log pipe) went away: "terminating on signal"
    // then meets EPIPE, which must not turn the exit into a failure.
    child.stderr?.destroy();
    child.kill('SIGTERM');
    assert.equal(await exited, 0, who);
  }
});
