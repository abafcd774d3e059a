/**
 * Two "hosts" for tests: two network namespaces joined by a veth pair, with a private /30 of
 * 10.0.0.0/8 that exists only inside them (the host's own interfaces, addresses and routes are
 * never touched). Needs root and iproute2's `ip`; without them tests skip loudly (fail under
 * QMIGRATE_REQUIRE_QEMU=1, as CI sets it). Namespaces go in t.after and on process exit/signal.
 */
import { execFileSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import type { TestContext } from 'node:test';
import { atExit } from './at-exit.js';
import { skipLoudly } from './qemu.js';

/** One end: its namespace, its veth interface there and its address on the link. */
export interface NetnsHost {
  readonly ns: string;
  readonly ifname: string;
  readonly addr: string;
}

export interface TwoHosts {
  readonly src: NetnsHost;
  readonly dst: NetnsHost;
  /** Runs `ip netns exec NS ARGS` to completion; its stdout. @throws when it fails. */
  exec(host: NetnsHost, args: string[]): string;
  /** `ip link set IF down` inside the host's namespace: the link stops carrying packets. */
  linkDown(host: NetnsHost): void;
  linkUp(host: NetnsHost): void;
  /** Deletes both namespaces (their veth pair goes with them); idempotent. */
  remove(): void;
}

function ip(args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
}

/** Why two hosts cannot be made here, or undefined when they can. */
function missing(): string | undefined {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  try {
    ip(['-V']);
  } catch {
    return "iproute2's `ip` not found; run `npm run setup:packages`";
  }
  return undefined;
}

let counter = 0;

function deleteNs(ns: string): void {
  try {
    ip(['netns', 'del', ns]);
  } catch {
    // Already gone (deleted by hand, or never fully made).
  }
}

/** True when process `pid` exists (ours or another user's). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Deletes the namespaces of test processes that are gone: one killed by SIGKILL (or a crash)
 * runs no handler, and its namespaces would stay for good, one day in the way of a process
 * that gets the same pid.
 */
function sweepOrphans(): void {
  for (const line of ip(['netns', 'list']).split('\n')) {
    const m = /^(qmig-(\d+)-\d+-(?:src|dst))\b/.exec(line);
    if (m && !alive(Number(m[2]))) deleteNs(m[1]!);
  }
}

/**
 * True when two hosts can be made here (root, Linux, `ip`); otherwise skips the test loudly,
 * or under QMIGRATE_REQUIRE_QEMU=1 (CI) throws.
 */
export function requireTwoHosts(t: TestContext): boolean {
  const why = missing();
  if (why) skipLoudly(t, why);
  return !why;
}

/** Every IPv4 prefix the host has as an address or a route, as [network, bits]. */
function hostPrefixes(): [number, number][] {
  const out: [number, number][] = [];
  const addrs = JSON.parse(ip(['-j', '-4', 'addr', 'show'])) as {
    addr_info?: { local: string; prefixlen: number }[];
  }[];
  for (const l of addrs) for (const a of l.addr_info ?? []) out.push([toInt(a.local), a.prefixlen]);
  const routes = JSON.parse(ip(['-j', '-4', 'route', 'show', 'table', 'all'])) as { dst: string }[];
  for (const r of routes) {
    if (r.dst === 'default') continue;
    const [net, bits] = r.dst.split('/');
    out.push([toInt(net!), bits === undefined ? 32 : Number(bits)]);
  }
  return out;
}

function toInt(a: string): number {
  return a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

function toDotted(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
}

/** True when the prefixes [a, abits] and [b, bbits] share an address. */
function overlaps(a: number, abits: number, b: number, bbits: number): boolean {
  const bits = Math.min(abits, bbits);
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return (a & mask) >>> 0 === (b & mask) >>> 0;
}

/** A random /30 of 10.0.0.0/8 that no host address or route overlaps. */
function freeSubnet(): number {
  const used = hostPrefixes();
  for (let i = 0; i < 100; i++) {
    const net = (toInt('10.0.0.0') + randomInt(1 << 22) * 4) >>> 0;
    if (!used.some(([n, b]) => overlaps(net, 30, n, b))) return net;
  }
  throw new Error('no free /30 in 10.0.0.0/8 on this host');
}

/**
 * Makes two namespaces `qmig-<pid>-<n>-src` and `-dst` joined by a veth pair (veth0 in src,
 * veth1 in dst) on a fresh /30, with `lo` up in both. Undefined when the test skipped (no
 * root or no `ip`). Removed in t.after, and on exit or SIGINT/SIGTERM/SIGHUP if it gets there;
 * each call first deletes those of `qmig-` test processes that no longer exist.
 */
export function twoHosts(t: TestContext): TwoHosts | undefined {
  if (!requireTwoHosts(t)) return undefined;
  sweepOrphans();
  const base = `qmig-${process.pid}-${counter++}`;
  const net = freeSubnet();
  const src: NetnsHost = { ns: `${base}-src`, ifname: 'veth0', addr: toDotted(net + 1) };
  const dst: NetnsHost = { ns: `${base}-dst`, ifname: 'veth1', addr: toDotted(net + 2) };
  // On exit or a signal too: no namespace of ours may stay.
  const unhook = atExit(() => remove());
  const remove = () => {
    deleteNs(src.ns);
    deleteNs(dst.ns);
    unhook();
  };
  t.after(remove);
  for (const h of [src, dst]) {
    // A namespace of this name is an earlier process's with the same pid, killed too hard to
    // delete its own (this process has not used the name).
    deleteNs(h.ns);
    ip(['netns', 'add', h.ns]);
    ip(['-n', h.ns, 'link', 'set', 'lo', 'up']);
  }
  // Made inside src with its peer put straight into dst: the pair never appears on the host.
  ip(['-n', src.ns, 'link', 'add', src.ifname, 'type', 'veth', 'peer', 'name', dst.ifname, 'netns', dst.ns]);
  for (const h of [src, dst]) {
    ip(['-n', h.ns, 'addr', 'add', `${h.addr}/30`, 'dev', h.ifname]);
    ip(['-n', h.ns, 'link', 'set', h.ifname, 'up']);
  }
  return {
    src,
    dst,
    exec: (h, args) =>
      execFileSync('ip', ['netns', 'exec', h.ns, ...args], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: 30_000,
      }),
    linkDown: (h) => ip(['-n', h.ns, 'link', 'set', h.ifname, 'down']),
    linkUp: (h) => {
      ip(['-n', h.ns, 'link', 'set', h.ifname, 'up']);
    },
    remove,
  };
}
