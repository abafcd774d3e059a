/**
 * Two migration peers for the orchestrator's tests, each with a second QMP monitor for
 * runMigration (the first stays with the test): a source with `image` as its RAM and a
 * destination in `-incoming defer` (unless told otherwise).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import type { MigratePlan } from '../../src/orchestrator/types.js';
import { writeMixedImage, writeWorkloadImage } from '../helpers/guest.js';
import { type Peer, type PeerKind, startPeer } from '../helpers/peers.js';

export interface Lab {
  dir: string;
  src: Peer;
  dst: Peer;
  srcImg: string;
  dstImg: string;
  /** A plan from the source's second monitor to the destination's, over a unix socket. */
  plan: MigratePlan;
}

export interface LabOptions {
  srcMiB?: number;
  dstMiB?: number;
  srcExtra?: string[];
  dstExtra?: string[];
  /** Whether the destination starts with `-incoming defer` (default true). */
  defer?: boolean;
  /** A source guest that writes this many pages per second (qmigrate's workload object). */
  workloadRate?: number;
}

export async function startLab(
  t: TestContext,
  from: PeerKind,
  to: PeerKind,
  o: LabOptions = {},
): Promise<Lab | undefined> {
  const dir = mkdtempSync(join(tmpdir(), `qmigrate-orch-${from}-${to}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const srcImg = join(dir, 'src.img');
  const dstImg = join(dir, 'dst.img');
  const srcMiB = o.srcMiB ?? 64;
  if (o.workloadRate) writeWorkloadImage(srcImg, srcMiB << 20);
  else writeMixedImage(srcImg, srcMiB << 20, 5);
  const workload = o.workloadRate ? ['-object', `qmigrate-workload,id=w0,rate=${o.workloadRate}`] : [];
  writeFileSync(dstImg, Buffer.alloc(0));
  const mon = (name: string) => ['-qmp', `unix:${join(dir, `${name}-orch.qmp`)},server=on,wait=off`];
  const src = await startPeer(t, from, dir, 'src', srcImg, srcMiB, [
    ...mon('src'),
    ...workload,
    ...(o.srcExtra ?? []),
  ]);
  if (!src) return undefined;
  const incoming = (o.defer ?? true) ? ['-incoming', 'defer'] : [];
  const dstArgs = [...mon('dst'), ...incoming, ...(o.dstExtra ?? [])];
  const dst = await startPeer(t, to, dir, 'dst', dstImg, o.dstMiB ?? srcMiB, dstArgs);
  if (!dst) return undefined;
  const plan: MigratePlan = {
    from: { kind: 'unix', path: join(dir, 'src-orch.qmp') },
    to: { kind: 'unix', path: join(dir, 'dst-orch.qmp') },
    channels: [
      { 'channel-type': 'main', addr: { transport: 'socket', type: 'unix', path: join(dir, 'mig.sock') } },
    ],
    capabilities: {},
    parameters: { 'max-bandwidth': 0 },
    onTimeout: 'cancel',
  };
  return { dir, src, dst, srcImg, dstImg, plan };
}

/** Whether both guests' RAM (read with pmemsave, as QEMU sees it) is equal byte for byte. */
export async function ramEqual(lab: Lab, sizeMiB = 64): Promise<boolean> {
  const a = join(lab.dir, 'src.dump');
  const b = join(lab.dir, 'dst.dump');
  await lab.src.qmp.pmemsave({ val: 0, size: sizeMiB << 20, filename: a });
  await lab.dst.qmp.pmemsave({ val: 0, size: sizeMiB << 20, filename: b });
  return readFileSync(a).equals(readFileSync(b)) && readFileSync(a).equals(readFileSync(lab.srcImg));
}
