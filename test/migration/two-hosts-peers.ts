// Peers for the two-host tests (two-hosts-*.test.ts): the source in one network namespace, the
// destination in the other (test/helpers/netns.ts), their monitors on unix socket paths the
// test reaches from the host, the stream over tcp across the veth between them.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { atExit } from '../helpers/at-exit.js';
import { writeMixedImage } from '../helpers/guest.js';
import { type TwoHosts, twoHosts } from '../helpers/netns.js';
import { type Peer, type PeerKind, startPeer } from '../helpers/peers.js';

export interface OnTwoHosts {
  net: TwoHosts;
  dir: string;
  srcImg: string;
  src: Peer;
  dst: Peer;
}

/** A scratch directory removed after the test. */
export function scratch(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-2hosts-'));
  const remove = () => rmSync(dir, { recursive: true, force: true });
  // On a signal too, which ends the process without its t.after hooks.
  const unhook = atExit(remove);
  t.after(() => {
    remove();
    unhook();
  });
  return dir;
}

/**
 * Starts a `from` source (a `sizeMiB` guest of mixed pages) in one namespace and a `to`
 * destination in `-incoming defer` in the other, both with files in a scratch `dir`.
 * Undefined when the test skipped.
 */
export async function onTwoHosts(
  t: TestContext,
  from: PeerKind,
  to: PeerKind,
  sizeMiB: number,
  /** Extra options of each peer, made once the namespaces (and their addresses) exist. */
  options: (net: TwoHosts, dir: string) => { src?: string[]; dst?: string[] } = () => ({}),
): Promise<OnTwoHosts | undefined> {
  const net = twoHosts(t);
  if (!net) return undefined;
  const dir = scratch(t);
  const extra = options(net, dir);
  const srcImg = join(dir, 'src.img');
  writeMixedImage(srcImg, sizeMiB << 20, 21);
  const src = await startPeer(t, from, dir, 'src', srcImg, sizeMiB, extra.src, { netns: net.src.ns });
  if (!src) return undefined;
  assertIn(src, net.src.ns);
  const dst = await freshDestination(t, net, to, dir, 'dst', sizeMiB, extra.dst);
  if (!dst) return undefined;
  return { net, dir, srcImg, src, dst };
}

/** A destination in `-incoming defer` in the dst namespace, its RAM the empty file `name.img`. */
export async function freshDestination(
  t: TestContext,
  net: TwoHosts,
  kind: PeerKind,
  dir: string,
  name: string,
  sizeMiB: number,
  extra: string[] = [],
): Promise<Peer | undefined> {
  writeFileSync(join(dir, `${name}.img`), '');
  const dst = await startPeer(
    t,
    kind,
    dir,
    name,
    join(dir, `${name}.img`),
    sizeMiB,
    ['-incoming', 'defer', ...extra],
    { netns: net.dst.ns },
  );
  if (dst) assertIn(dst, net.dst.ns);
  return dst;
}

/** The peer's process is in namespace `ns` (so its sockets are that "host"'s). */
function assertIn(peer: Peer, ns: string): void {
  const got = execFileSync('ip', ['netns', 'identify', String(peer.child.pid)], { encoding: 'utf8' });
  assert.equal(got.trim(), ns, `${peer.kind} runs in ${ns}`);
}

/**
 * Makes `dst` listen on tcp at its own address (port 0, read back) and starts the migration
 * from `src` to there. @returns the uri the source was given.
 */
export async function migrateAcross(net: TwoHosts, src: Peer, dst: Peer): Promise<string> {
  await dst.qmp.migrateIncoming({ uri: `tcp:${net.dst.addr}:0` });
  const sa = (await dst.qmp.queryMigrate())['socket-address']?.[0];
  assert.ok(sa?.type === 'inet', JSON.stringify(sa));
  assert.equal(sa.host, net.dst.addr, 'the destination listens on its own namespace address');
  const uri = `tcp:${net.dst.addr}:${sa.port}`;
  await src.qmp.migrate({ uri });
  return uri;
}
