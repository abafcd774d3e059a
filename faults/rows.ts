/**
 * The rows of `npm run faults` and what one rep of each does: pair x transport x fault, each
 * rep a fresh destination against a source kept alive for the row, with every promise checked
 * (source final state, run state and RAM; destination never running; no crash; every wait
 * bounded). The faults mirror QEMU's migration qtests (tests/qtest/migration/*) in spirit.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { runMigration } from '../src/orchestrator/migrate.js';
import type { MigrationCapabilityStatus } from '../src/qapi/types.js';
import { startBlackhole } from '../test/helpers/blackhole.js';
import { finalMigration, HangError, type Kind, Proc, until } from './peers.js';
import { FaultProxy, type ProxyPlan, QmpRelay, type Where } from './proxy.js';

export type Transport = 'tcp' | 'unix' | 'multifd4' | 'tls' | 'exec' | 'file';

export interface Row {
  id: string;
  group: 'socket' | 'cancel' | 'qmp' | 'exec' | 'file';
  src: Kind;
  /** undefined: no destination VM (a listener of the matrix's own). */
  dst?: Kind;
  transport: Transport;
  fault: string;
  /** What the source (file rows: the loader) may end in without a violation. */
  expect: string[];
}

export interface Rep {
  outcome: string;
  /** ms from the start of the migration to the final state. */
  ms: number;
  violations: string[];
  /** The long-lived process's pid, open fds and RSS after the rep. */
  sample?: { pid: number; fds: number; rss: number };
}

/** What every row shares: the scratch dir, the guest image and its digest, certificates. */
export interface Env {
  dir: string;
  mib: number;
  image: string;
  digest: string;
  /** Bytes the stream of the image takes, about (the non-zero pages). */
  streamBytes: number;
  pki: { server: string; client: string };
}

const SOCKET_FAULTS = [
  'dst-kill-10',
  'dst-kill-50',
  'dst-kill-90',
  'src-kill',
  'cut-close',
  'cut-reset',
  'stall-cancel',
  'stall-timeout',
];
const PAIRS: [Kind, Kind][] = [
  ['qmigrate', 'qmigrate'],
  ['qmigrate', 'qemu'],
  ['qemu', 'qmigrate'],
];
const FAILED = ['failed', 'cancelled'];
/** Bound on the wait for a migration's final state (ms): about 100x a rep's own time. */
const FINAL_MS = 15_000;

/** Every row, in report order. */
export function allRows(): Row[] {
  const rows: Row[] = [];
  const pairId = (s: Kind, d?: Kind) => `${s}->${d ?? 'listener'}`;
  const add = (r: Omit<Row, 'id'>) =>
    rows.push({ ...r, id: `${r.group}/${r.transport}/${r.fault}/${pairId(r.src, r.dst)}` });
  for (const transport of ['tcp', 'unix', 'multifd4', 'tls'] as const)
    for (const fault of SOCKET_FAULTS)
      for (const [src, dst] of PAIRS) {
        const expect = fault === 'stall-cancel' || fault === 'stall-timeout' ? ['cancelled'] : ['failed'];
        add({ group: 'socket', src, dst, transport, fault, expect });
      }
  for (const state of ['setup', 'active', 'pre-switchover', 'device', 'cancelling']) {
    const real = state !== 'setup' && state !== 'device';
    for (const [src, dst] of real ? PAIRS : PAIRS.slice(1))
      add({
        group: 'cancel',
        src,
        dst: real ? dst : undefined,
        transport: 'unix',
        fault: `cancel-${state}`,
        expect: ['cancelled'],
      });
  }
  for (const fault of ['race-migrate', 'incoming-twice', 'client-gone-migrate', 'client-gone-query'])
    for (const [src, dst] of PAIRS)
      add({ group: 'qmp', src, dst, transport: 'unix', fault, expect: ['completed'] });
  for (const fault of ['exec-child-exits-50', 'exec-child-killed-50'])
    for (const src of ['qmigrate', 'qemu'] as const)
      add({ group: 'exec', src, transport: 'exec', fault, expect: FAILED });
  for (const fault of ['truncate', 'corrupt'])
    for (const [src, dst] of PAIRS)
      add({
        group: 'file',
        src,
        dst,
        transport: 'file',
        fault,
        expect: fault === 'truncate' ? ['failed'] : ['failed', 'completed'],
      });
  return rows;
}

/**
 * A process that ended by itself: a crash, unless it is a destination that exited with 0 or 1
 * (QEMU's exit after a failed incoming migration with exit-on-error on). A source never exits.
 */
function crashed(p: Proc): string | undefined {
  if (p.alive() || p.killedByUs) return undefined;
  const { exitCode: code, signalCode: signal } = p.child;
  const quiet = p.name.startsWith('dst') && !signal && (code === 0 || code === 1);
  if (quiet) return undefined;
  return tag(p, `crash: ${p.name} exited ${signal ?? code}: ${p.stderr.trim().slice(0, 300)}`);
}

/** The prefix of a violation that is QEMU 10.0's own, not qmigrate's: counted apart. */
export const QEMU_OWN = 'QEMU 10.0: ';

/** `text`, marked as QEMU's when the process at fault is a QEMU. */
function tag(p: Proc | Kind, text: string): string {
  return (typeof p === 'string' ? p : p.kind) === 'qemu' ? `${QEMU_OWN}${text}` : text;
}

/** Whose fault an error of a rep is: QEMU's when it names a QEMU process or its monitor. */
function blame(row: Row, message: string): Kind | 'matrix' {
  if (message.includes('(qemu)')) return 'qemu';
  // A row whose only VM is a QEMU (its peer a listener or child of the matrix's): any refusal
  // or error comes from QEMU (e.g. 10.0's `duplicate yank instance` for a migrate soon after
  // a cancel in setup).
  if (row.src === 'qemu' && (row.dst ?? 'qemu') === 'qemu') return 'qemu';
  if (message.includes("source's monitor")) return row.src;
  if (message.includes("destination's monitor") && row.dst) return row.dst;
  return /\((qmigrate)\)/.test(message) ? 'qmigrate' : 'matrix';
}

/** One row's run: the long-lived source, a fresh destination per rep, the cleanup. */
export class RowRun {
  readonly row: Row;
  readonly env: Env;
  src?: Proc;
  #n = 0;
  #cleanups: (() => Promise<void> | void)[] = [];
  /** Set by the row's setup: a listener of the matrix's own, for the setup/device cancel rows. */
  listenerUri?: string;
  saved?: Buffer;
  /** When the rep's migration started and reached its final state (Date.now()). */
  t0?: number;
  t1?: number;

  constructor(row: Row, env: Env) {
    this.row = row;
    this.env = env;
  }

  get multifd(): boolean {
    return this.row.transport === 'multifd4';
  }

  get tls(): boolean {
    return this.row.transport === 'tls';
  }

  /** Capabilities both sides get (events always). */
  caps(): MigrationCapabilityStatus[] {
    const c: MigrationCapabilityStatus[] = [{ capability: 'events', state: true }];
    if (this.multifd) c.push({ capability: 'multifd', state: true });
    // Without a return path a source completes once the end of the stream is in its socket
    // (QEMU 10.0 as well): a destination killed after that loses the guest on both sides.
    if (this.row.group === 'socket') c.push({ capability: 'return-path', state: true });
    return c;
  }

  async #configure(p: Proc, side: 'src' | 'dst'): Promise<void> {
    await p.qmp.migrateSetCapabilities({ capabilities: this.caps() });
    if (this.multifd) await p.qmp.migrateSetParameters({ 'multifd-channels': 4 });
    if (this.tls) await p.qmp.migrateSetParameters({ 'tls-creds': 'tls0' });
    if (side === 'src' && this.row.group === 'cancel') await this.#cancelSetup(p);
  }

  /** The row's source: the kept one, or a new one (`fresh`, or after the kept one died). */
  async source(fresh = false): Promise<Proc> {
    if (this.src && (fresh || !this.src.alive())) {
      await this.src.kill();
      this.src = undefined;
    }
    if (this.src) return this.src;
    const tls = this.tls
      ? ['-object', `tls-creds-x509,id=tls0,dir=${this.env.pki.client},endpoint=client`]
      : [];
    const p = await Proc.start(
      this.row.src,
      this.env.dir,
      `src${this.#n++}`,
      this.env.image,
      this.env.mib,
      tls,
    );
    this.src = p;
    await this.#configure(p, 'src');
    return p;
  }

  /** A fresh destination in `-incoming defer`, configured as the source. */
  async dest(kind: Kind): Promise<Proc> {
    const name = `dst${this.#n++}`;
    const img = join(this.env.dir, `${name}.img`);
    writeFileSync(img, '');
    const tls = this.tls
      ? ['-object', `tls-creds-x509,id=tls0,dir=${this.env.pki.server},endpoint=server,verify-peer=on`]
      : [];
    const p = await Proc.start(kind, this.env.dir, name, img, this.env.mib, ['-incoming', 'defer', ...tls]);
    this.#repProcs.push(p);
    this.#cleanups.push(async () => {
      await p.kill();
      rmSync(img, { force: true });
    });
    await this.#configure(p, 'dst');
    return p;
  }

  async #cancelSetup(p: Proc): Promise<void> {
    const f = this.row.fault;
    if (f === 'cancel-active') await p.qmp.migrateSetParameters({ 'max-bandwidth': 64 << 20 });
    if (f === 'cancel-pre-switchover' || f === 'cancel-device') {
      const caps: MigrationCapabilityStatus[] = [{ capability: 'pause-before-switchover', state: true }];
      if (f === 'cancel-device') caps.push({ capability: 'return-path', state: true });
      await p.qmp.migrateSetCapabilities({ capabilities: caps });
    }
  }

  /** Row-wide set-up: a listener of the matrix's own where the row needs one. */
  async setup(): Promise<void> {
    const f = this.row.fault;
    if (f === 'cancel-setup') {
      const t = { after: (fn: () => Promise<void>) => this.#rowCleanups.push(fn) } as unknown as TestContext;
      const hole = await startBlackhole(t, 'tcp');
      this.listenerUri = `tcp:127.0.0.1:${hole.port}`;
    } else if (f === 'cancel-device') {
      // Reads the whole stream and never answers on the return path: the source waits in device.
      const path = join(this.env.dir, `mute-${this.#n++}.sock`);
      const conns: Socket[] = [];
      const server = createServer((s) => {
        conns.push(s);
        s.on('error', () => {});
        s.resume();
      });
      await new Promise<void>((r) => server.listen(path, r));
      this.#rowCleanups.push(async () => {
        for (const s of conns) s.destroy();
        await new Promise<void>((r) => server.close(() => r()));
      });
      this.listenerUri = `unix:${path}`;
    } else if (this.row.group === 'file') {
      this.saved = await this.#save();
    }
  }

  #rowCleanups: (() => Promise<void> | void)[] = [];

  /** The source saves its guest once for the row; the file rows load damaged copies of it. */
  async #save(): Promise<Buffer> {
    const s = await this.source();
    const path = join(this.env.dir, `saved-${this.#n++}.mig`);
    await s.qmp.migrate({ uri: `file:${path}` });
    const info = await finalMigration(s, 60_000);
    if (info.status !== 'completed') throw new Error(`saving the guest failed: ${JSON.stringify(info)}`);
    const buf = readFileSync(path);
    rmSync(path, { force: true });
    await s.kill();
    this.src = undefined;
    return buf;
  }

  /**
   * After an error nobody was named in: the processes whose monitor does not answer within
   * 2 s. QEMU's when only QEMU processes are silent.
   */
  async #silent(): Promise<Kind | 'matrix'> {
    const silent: Proc[] = [];
    for (const p of [this.src, ...this.#repProcs]) {
      if (!p?.alive()) continue;
      const ok = await p.qmp.queryStatus({ timeout: 2000 }).then(
        () => true,
        () => false,
      );
      if (!ok) silent.push(p);
    }
    if (silent.length === 0) return 'matrix';
    return silent.every((p) => p.kind === 'qemu') ? 'qemu' : 'qmigrate';
  }

  #repProcs: Proc[] = [];

  /** Ends what one rep started (destinations, proxies). */
  async endRep(): Promise<void> {
    this.#repProcs = [];
    const list = this.#cleanups.splice(0);
    for (const f of list.reverse()) await f();
  }

  /** Ends everything of the row. */
  async end(): Promise<void> {
    await this.endRep();
    for (const f of this.#rowCleanups.splice(0).reverse()) await f();
    await this.src?.kill();
  }

  onRepEnd(f: () => Promise<void> | void): void {
    this.#cleanups.push(f);
  }

  /** Where the destination listens this rep, and where the proxy does. */
  async listen(d: Proc): Promise<{ target: Where; proxyAt: Where; uri: string }> {
    const n = this.#n++;
    if (this.row.transport === 'unix') {
      const path = join(this.env.dir, `in-${n}.sock`);
      await d.qmp.migrateIncoming({ uri: `unix:${path}`, 'exit-on-error': false });
      this.onRepEnd(() => rmSync(path, { force: true }));
      const proxyPath = join(this.env.dir, `px-${n}.sock`);
      this.onRepEnd(() => rmSync(proxyPath, { force: true }));
      return { target: { path }, proxyAt: { path: proxyPath }, uri: `unix:${path}` };
    }
    await d.qmp.migrateIncoming({ uri: 'tcp:127.0.0.1:0', 'exit-on-error': false });
    const sa = (await d.qmp.queryMigrate())['socket-address']?.[0];
    if (sa?.type !== 'inet') throw new Error(`no listening address: ${JSON.stringify(sa)}`);
    const port = Number(sa.port);
    return {
      target: { host: '127.0.0.1', port },
      proxyAt: { host: '127.0.0.1', port: 0 },
      uri: `tcp:127.0.0.1:${port}`,
    };
  }

  /** The checks every surviving source gets: its final state, running, RAM intact. */
  async checkSource(s: Proc, status: string, v: string[]): Promise<void> {
    if (!this.row.expect.includes(status))
      v.push(tag(s, `source ended ${status}, not ${this.row.expect.join('/')}`));
    const c = crashed(s);
    if (c) return void v.push(c);
    const rs = (await s.qmp.queryStatus()).status;
    if (rs !== 'running') v.push(tag(s, `source run state ${rs}, not running`));
    if ((await s.ramDigest(this.env.dir, this.env.mib)) !== this.env.digest)
      v.push(tag(s, 'source RAM changed'));
  }

  /**
   * The checks on a destination once the fault is over: it ends `failed` (or exits, or was
   * killed by us) and never ran the guest, unless the migration was meant to complete.
   */
  async checkDest(d: Proc, completed: boolean, v: string[]): Promise<void> {
    if (d.alive()) {
      try {
        const info = await finalMigration(d, 15_000);
        if (!completed && info.status !== 'failed')
          v.push(tag(d, `destination ended ${info.status}, not failed`));
        const rs = (await d.qmp.queryStatus()).status;
        if (!completed && rs === 'running') v.push(tag(d, 'destination runs the guest'));
      } catch (e) {
        // A destination that exits after its failure (exit-on-error, as the orchestrator leaves
        // it) may close its monitor while we ask: its exit is judged below.
        if (e instanceof HangError) throw e;
        await bounded(d.exited, 2000, `${d.name} (${d.kind}) closed its monitor but did not exit`);
      }
    }
    if (!completed && d.resumed) v.push(tag(d, 'destination ran the guest (RESUME)'));
    const c = crashed(d);
    if (c) v.push(c);
  }

  /** One rep of the row; `i` is its index (and the file rows' seed). */
  async rep(i: number): Promise<Rep> {
    const start = Date.now();
    this.t0 = undefined;
    this.t1 = undefined;
    const v: string[] = [];
    let outcome = 'none';
    try {
      outcome = await REPS[this.row.group](this, i, v);
    } catch (e) {
      const msg = (e as Error).message;
      let who = blame(this.row, msg);
      if (who === 'matrix') who = await this.#silent();
      v.push(
        tag(who === 'qemu' ? 'qemu' : 'qmigrate', `${e instanceof HangError ? 'hang' : 'error'}: ${msg}`),
      );
      if (process.env.FAULTS_DEBUG) console.error(e);
      outcome = e instanceof HangError ? 'hang' : 'error';
      // A source that hung or lost its monitor is not trusted for the next rep.
      if (this.src) {
        // A monitor that closed may be a process that died: give its exit a moment to arrive.
        await bounded(this.src.exited, 1000, '').catch(() => {});
        const c = crashed(this.src);
        if (c) v.push(c);
        await this.src.kill();
        this.src = undefined;
      }
    }
    const ms = (this.t1 ?? Date.now()) - (this.t0 ?? start);
    await this.endRep();
    const s = this.src;
    const sample = s?.alive() ? { pid: s.pid, fds: s.fds(), rss: s.rss() } : undefined;
    return { outcome, ms, violations: v, sample };
  }
}

/** `p`, or a HangError after `ms`. */
export function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, rej) => {
    timer = setTimeout(() => rej(new HangError(`${what} in ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

type RepFn = (r: RowRun, i: number, v: string[]) => Promise<string>;

/** A migration through the proxy with a fault at a byte offset, or a stall ended by a timeout. */
async function socketRep(r: RowRun, _i: number, v: string[]): Promise<string> {
  const f = r.row.fault;
  if (f === 'stall-timeout') return stallTimeoutRep(r, v);
  const s = await r.source(f === 'src-kill');
  const d = await r.dest(r.row.dst!);
  const at = Math.floor((r.env.streamBytes * (Number(/(\d+)$/.exec(f)?.[1]) || 50)) / 100);
  const plan: ProxyPlan =
    f === 'cut-close'
      ? { at, action: 'close' }
      : f === 'cut-reset'
        ? { at, action: 'reset' }
        : f === 'stall-cancel'
          ? { at, action: 'stall' }
          : { at, action: 'hook', hook: () => void (f === 'src-kill' ? s : d).kill() };
  const { target, proxyAt } = await r.listen(d);
  const proxy = await FaultProxy.start(target, proxyAt, plan);
  r.onRepEnd(() => proxy.stop());
  r.t0 = Date.now();
  await s.qmp.migrate({ uri: proxy.uri });
  if (f === 'stall-cancel') {
    await until(`the source (${s.kind}) never reached the offset`, 20_000, async () => proxy.fired, Boolean);
    await s.qmp.migrateCancel();
  }
  if (f === 'src-kill') {
    await until(`the source (${s.kind}) never reached the offset`, 20_000, async () => proxy.fired, Boolean);
    await bounded(s.exited, 10_000, 'the killed source did not exit');
    r.src = undefined;
    await proxy.stop();
    await r.checkDest(d, false, v);
    r.t1 = Date.now();
    return 'source killed';
  }
  const info = await finalMigration(s, FINAL_MS);
  r.t1 = Date.now();
  await proxy.stop();
  await r.checkSource(s, info.status ?? '', v);
  if (f.startsWith('dst-kill') && proxy.fired)
    await bounded(d.exited, 10_000, 'the killed destination did not exit');
  else await r.checkDest(d, info.status === 'completed', v);
  return info.status ?? '';
}

/**
 * A destination that stops reading at half the stream (the proxy stalls), ended by `qmigrate
 * migrate`'s `--timeout 1 --on-timeout cancel`: the library call runMigration, driving the
 * source through a QMP relay that sends its `migrate` to the proxy.
 */
async function stallTimeoutRep(r: RowRun, v: string[]): Promise<string> {
  const s = await r.source();
  const d = await r.dest(r.row.dst!);
  const dir = r.env.dir;
  let proxy: FaultProxy | undefined;
  const relay = await QmpRelay.start(join(dir, `relay-${d.name}.qmp`), s.qmp2Path, async (to) => {
    const at: Where =
      'path' in to ? { path: join(dir, `px-${d.name}.sock`) } : { host: '127.0.0.1', port: 0 };
    proxy = await FaultProxy.start(to, at, { at: r.env.streamBytes >> 1, action: 'stall' });
    return proxy.where;
  });
  r.onRepEnd(() => relay.stop());
  r.onRepEnd(() => proxy?.stop());
  const capabilities: Record<string, boolean> = Object.fromEntries(
    r.caps().map((c) => [c.capability, c.state]),
  );
  const parameters: Record<string, unknown> = {};
  if (r.multifd) parameters['multifd-channels'] = 4;
  if (r.tls) parameters['tls-creds'] = 'tls0';
  const uri = r.row.transport === 'unix' ? `unix:${join(dir, `st-${d.name}.sock`)}` : 'tcp:127.0.0.1:0';
  r.t0 = Date.now();
  const job = runMigration(
    {
      from: { kind: 'unix', path: relay.path },
      to: { kind: 'unix', path: d.qmp2Path },
      uri,
      capabilities,
      parameters,
      timeoutS: 1,
      onTimeout: 'cancel',
    },
    { pollMs: 50, connectTimeoutMs: 5000, cancelWaitMs: 10_000 },
  );
  const report = await bounded(job.result, 30_000, 'runMigration did not return');
  const info = await finalMigration(s, 10_000);
  r.t1 = Date.now();
  if (report.endedBy !== 'timeout-cancel')
    v.push(
      `runMigration ended by ${report.endedBy ?? report.status}, not the timeout: ${report.reason ?? ''}`,
    );
  if (!proxy?.fired) v.push('the stream never reached the stall');
  await r.checkSource(s, info.status ?? '', v);
  await proxy?.stop();
  await r.checkDest(d, false, v);
  return info.status ?? '';
}

/** migrate_cancel in one migration state. */
async function cancelRep(r: RowRun, _i: number, v: string[]): Promise<string> {
  const f = r.row.fault;
  const s = await r.source();
  let d: Proc | undefined;
  let uri = r.listenerUri;
  let proxy: FaultProxy | undefined;
  if (r.row.dst) {
    d = await r.dest(r.row.dst);
    const l = await r.listen(d);
    uri = l.uri;
    if (f === 'cancel-cancelling') {
      proxy = await FaultProxy.start(l.target, l.proxyAt, { at: r.env.streamBytes >> 1, action: 'stall' });
      r.onRepEnd(() => proxy!.stop());
      uri = proxy.uri;
    }
  }
  r.t0 = Date.now();
  await s.qmp.migrate({ uri: uri! });
  const state = f.replace('cancel-', '');
  if (state === 'device') {
    await waitStatus(s, 'pre-switchover');
    await s.qmp.migrateContinue({ state: 'pre-switchover' });
  }
  if (state === 'cancelling') {
    await until(`the source (${s.kind}) never reached the offset`, 20_000, async () => proxy!.fired, Boolean);
    const [a, b] = await Promise.allSettled([s.qmp.migrateCancel(), s.qmp.migrateCancel()]);
    for (const x of [a, b]) if (x.status === 'rejected') v.push(tag(s, `second cancel refused: ${x.reason}`));
  } else {
    await waitStatus(s, state);
    await s.qmp.migrateCancel();
  }
  const info = await finalMigration(s, FINAL_MS);
  r.t1 = Date.now();
  await proxy?.stop();
  await r.checkSource(s, info.status ?? '', v);
  if (d) await r.checkDest(d, info.status === 'completed', v);
  return info.status ?? '';
}

function waitStatus(s: Proc, want: string): Promise<unknown> {
  return until(
    `source (${s.kind}) never reached ${want}`,
    20_000,
    async () => (await s.qmp.queryMigrate()).status,
    (x) => {
      if (x === 'completed' || x === 'failed' || x === 'cancelled')
        throw new Error(`source (${s.kind}) ended ${x} before ${want}`);
      return x === want;
    },
  );
}

/** QMP faults the migration should survive: it completes, and the source is started again. */
async function qmpRep(r: RowRun, _i: number, v: string[]): Promise<string> {
  const f = r.row.fault;
  const s = await r.source();
  const d = await r.dest(r.row.dst!);
  const { uri } = await r.listen(d);
  const notes: string[] = [];
  if (f === 'incoming-twice') {
    await d.qmp.migrateIncoming({ uri, 'exit-on-error': false }).then(
      () => notes.push('second accepted'),
      (e) => notes.push(`second refused: ${(e as Error).message}`),
    );
  }
  const before = s.setups;
  r.t0 = Date.now();
  if (f === 'race-migrate') {
    const res = await Promise.allSettled([s.qmp.migrate({ uri }), s.qmp.migrate({ uri })]);
    const ok = res.filter((x) => x.status === 'fulfilled').length;
    if (ok !== 1) v.push(tag(s, `${ok} of two racing migrate calls accepted`));
    for (const x of res)
      if (x.status === 'rejected') notes.push(`second refused: ${(x.reason as Error).message}`);
  } else if (f === 'client-gone-migrate') {
    await dropClient(s.qmp2Path, { execute: 'migrate', arguments: { uri } });
  } else {
    await s.qmp.migrate({ uri });
    if (f === 'client-gone-query') await dropClient(s.qmp2Path, { execute: 'query-migrate' });
  }
  if (f === 'client-gone-migrate') {
    // QEMU drops the requests of a client that closed before they ran (monitor/qmp.c cleans
    // its request queue on CHR_EVENT_CLOSED): the migration may never start, which is fine.
    const started = await until('', 3000, async () => s.setups > before, Boolean).catch((e) => {
      if (e instanceof HangError) return undefined;
      throw e;
    });
    if (!started) return 'no migration';
  }
  const info = await finalMigration(s, FINAL_MS);
  r.t1 = Date.now();
  if (info.status === 'completed') {
    await r.checkDest(d, true, v);
    if ((await d.qmp.queryStatus()).status !== 'running')
      v.push(tag(d, 'destination not running after completed'));
    await s.qmp.cont();
    await r.checkSource(s, 'completed', v);
  } else {
    await r.checkSource(s, info.status ?? '', v);
  }
  // The refusal's text is part of the outcome, so that qmigrate's and QEMU's show side by side.
  return notes.length ? `completed (${notes.join('; ')})` : 'completed';
}

/**
 * A QMP client that negotiates on the second monitor, sends `cmd` and closes before the reply.
 */
async function dropClient(path: string, cmd: unknown): Promise<void> {
  const sock = netConnect(path);
  sock.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new HangError('no QMP greeting in 10 s')), 10_000);
    let buf = '';
    let step = 0;
    sock.on('data', (d) => {
      buf += d;
      if (step === 0 && buf.includes('"QMP"')) {
        step = 1;
        sock.write('{"execute":"qmp_capabilities"}\n');
      } else if (step === 1 && buf.includes('"return"')) {
        step = 2;
        sock.write(`${JSON.stringify(cmd)}\n`);
        clearTimeout(timer);
        // Gone before any reply: the command is in the monitor's socket, the client is not.
        setImmediate(() => {
          sock.destroy();
          resolve();
        });
      }
    });
  });
}

/** The exec child dies mid-stream: it exits after half the stream, or is SIGKILLed there. */
async function execRep(r: RowRun, _i: number, v: string[]): Promise<string> {
  const s = await r.source();
  const half = r.env.streamBytes >> 1;
  const pidFile = join(r.env.dir, `exec-${Date.now()}.pid`);
  r.onRepEnd(() => {
    try {
      process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
    } catch {}
    rmSync(pidFile, { force: true });
  });
  const killed = r.row.fault === 'exec-child-killed-50';
  const script = killed
    ? `echo $$ > ${pidFile}; head -c ${half} > /dev/null; exec sleep 600`
    : `head -c ${half} > /dev/null`;
  r.t0 = Date.now();
  await s.qmp.migrate({
    channels: [{ 'channel-type': 'main', addr: { transport: 'exec', args: ['/bin/sh', '-c', script] } }],
  });
  if (killed) {
    await until(
      `the exec child of the source (${s.kind}) never read half the stream`,
      20_000,
      async () => {
        const info = await s.qmp.queryMigrate();
        if (info.status !== 'active' && info.status !== 'setup') return true;
        return (
          info.status === 'active' && Number(info.ram?.transferred ?? 0) >= half * 0.9 && existsSync(pidFile)
        );
      },
      Boolean,
    );
    try {
      process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
    } catch {}
  }
  const info = await finalMigration(s, FINAL_MS);
  r.t1 = Date.now();
  await r.checkSource(s, info.status ?? '', v);
  return info.status ?? '';
}

/** Small seeded generator (mulberry32): rep i damages the file at seed i's offsets. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A saved stream truncated or corrupted at seeded offsets, loaded by a fresh destination. */
async function fileRep(r: RowRun, i: number, v: string[]): Promise<string> {
  const rnd = seeded(i);
  const saved = r.saved!;
  let buf: Buffer;
  if (r.row.fault === 'truncate') buf = saved.subarray(0, Math.floor(rnd() * saved.length));
  else {
    buf = Buffer.from(saved);
    // Three bytes, each XORed with a non-zero value: the stream differs for sure.
    for (let k = 0; k < 3; k++) {
      const at = Math.floor(rnd() * buf.length);
      buf[at] = buf[at]! ^ (1 + Math.floor(rnd() * 255));
    }
  }
  const path = join(r.env.dir, `load-${i}.mig`);
  writeFileSync(path, buf);
  r.onRepEnd(() => rmSync(path, { force: true }));
  const d = await r.dest(r.row.dst!);
  r.t0 = Date.now();
  await d.qmp.migrateIncoming({ uri: `file:${path}`, 'exit-on-error': false });
  const info = await finalMigration(d, FINAL_MS);
  r.t1 = Date.now();
  const status = info.status ?? '';
  if (!r.row.expect.includes(status))
    v.push(tag(d, `destination ended ${status}, not ${r.row.expect.join('/')}`));
  await r.checkDest(d, status === 'completed', v);
  return status;
}

const REPS: Record<Row['group'], RepFn> = {
  socket: socketRep,
  cancel: cancelRep,
  qmp: qmpRep,
  exec: execRep,
  file: fileRep,
};
