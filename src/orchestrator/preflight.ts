/**
 * The checks before any byte moves, with QEMU's own queries only (query-version,
 * query-commands, query-status, query-migrate, query-memdev, query-migrate-capabilities,
 * query-migrate-parameters): what libvirt's migration cookie and KubeVirt's `LiveMigratable`
 * check, said as one line per difference and side.
 */
import type { MigrationInfo, VersionInfo } from '../qapi/types.js';
import type { QmpClient } from '../qmp/client.js';
import { PreflightError } from './errors.js';
import { MUST_AGREE_CAPABILITIES, SOURCE_ONLY_CAPABILITIES, SOURCE_ONLY_PARAMETERS } from './plan.js';
import type { MigratePlan } from './types.js';

export type Side = 'source' | 'destination';

/** What one side told the preflight. */
export interface SideFacts {
  version: VersionInfo;
  /** `major.minor.micro`. */
  versionText: string;
  /** Whether `migrate` / `migrate-incoming` take `channels` (QEMU 8.2+), else `uri`. */
  channels: boolean;
  runState: string;
  migration: MigrationInfo;
  /** query-memdev's RAM backends (id, bytes); undefined when the peer has no query-memdev. */
  memdevs?: { id: string; size: number }[];
  capabilities: Record<string, boolean>;
  parameters: Record<string, unknown>;
  /** The commands the side has (query-commands); undefined when not asked (older callers' facts). */
  commands?: string[];
}

export interface PreflightFacts {
  source: SideFacts;
  destination: SideFacts;
}

/** Migration states in which QEMU 10.0's `migrate` accepts a new migration. */
const IDLE = new Set(['none', 'completed', 'failed', 'cancelled']);

/**
 * Asks one side everything the preflight compares.
 * @throws {QmpClientError} when a query fails (the monitor went away).
 */
export async function gatherFacts(qmp: QmpClient, options: { timeoutMs?: number } = {}): Promise<SideFacts> {
  const o = { timeout: options.timeoutMs ?? 10_000 };
  const [version, commands, status, migration, caps, params, features] = await Promise.all([
    qmp.queryVersion(o),
    qmp.queryCommands(o),
    qmp.queryStatus(o),
    qmp.queryMigrate(o),
    qmp.queryMigrateCapabilities(o),
    qmp.queryMigrateParameters(o),
    qmp.features(),
  ]);
  const hasMemdev = commands.some((c) => c.name === 'query-memdev');
  const memdevs = hasMemdev
    ? ((await qmp.executeRaw('query-memdev', undefined, o)) as { id?: string; size: number | bigint }[]).map(
        (m, i) => ({ id: m.id ?? `#${i}`, size: Number(m.size) }),
      )
    : undefined;
  const v = version.qemu;
  return {
    version,
    versionText: `${v.major}.${v.minor}.${v.micro}`,
    channels: features.channels,
    runState: status.status,
    migration,
    memdevs,
    capabilities: Object.fromEntries(caps.map((c) => [c.capability, c.state])),
    parameters: params as Record<string, unknown>,
    commands: commands.map((c) => c.name),
  };
}

/**
 * Checks that `plan` can migrate from the source to the destination: the destination waits
 * in `-incoming defer` (run state `inmigrate`, no incoming migration yet), the source is not
 * itself waiting and has no migration in progress, QEMU reports no migration blocker, the RAM
 * blocks (query-memdev: id and size) are the same on both, and the capabilities and
 * parameters that must agree will, once the plan's own are set. Every difference is found;
 * they are thrown together, one line each, the most important first (states, then blockers,
 * RAM, capabilities, parameters). RAM is compared only where both peers have query-memdev.
 * @returns the facts of both sides, for planCommands and the report.
 * @throws {PreflightError} with one line per problem.
 * @throws {QmpClientError} when a query fails.
 */
export async function preflight(
  source: QmpClient,
  destination: QmpClient,
  plan: MigratePlan,
  options: { timeoutMs?: number } = {},
): Promise<PreflightFacts> {
  const [s, d] = await Promise.all([gatherFacts(source, options), gatherFacts(destination, options)]);
  const problems = comparePreflight({ source: s, destination: d }, plan);
  if (problems.length) throw new PreflightError(problems);
  return { source: s, destination: d };
}

/** The problems preflight() throws, from facts already gathered (pure; for tests and tools). */
export function comparePreflight(facts: PreflightFacts, plan: MigratePlan): string[] {
  return [
    ...stateProblems(facts),
    ...blockerProblems(facts.source),
    ...ramProblems(facts),
    ...capabilityProblems(facts, plan),
    ...parameterProblems(facts, plan),
    ...formProblems(facts, plan),
    ...tlsProblems(facts, plan),
    ...postcopyProblems(facts, plan),
  ];
}

/**
 * With `postcopy-ram`: both sides know the capability and the source can switch
 * (migrate-start-postcopy); a switch policy without the capability is refused.
 */
function postcopyProblems({ source: s, destination: d }: PreflightFacts, plan: MigratePlan): string[] {
  const on = plan.capabilities['postcopy-ram'] === true;
  if (!on) {
    if (plan.postcopy || plan.onTimeout === 'postcopy')
      return ["a switch to postcopy needs capability 'postcopy-ram' on both sides"];
    return [];
  }
  const out: string[] = [];
  for (const [side, f] of [
    ['destination', d],
    ['source', s],
  ] as const) {
    if (!('postcopy-ram' in f.capabilities))
      out.push(
        `${side} (QEMU ${f.versionText}) has no 'postcopy-ram' capability: it cannot migrate in postcopy`,
      );
  }
  if (s.commands && !s.commands.includes('migrate-start-postcopy'))
    out.push(`source (QEMU ${s.versionText}) has no migrate-start-postcopy: it cannot switch to postcopy`);
  return out;
}

/**
 * The checks before recovering a paused postcopy migration (a `resume` plan): both sides in
 * `postcopy-paused`, the destination with migrate-recover. Thrown as preflight() throws.
 * @throws {PreflightError} with one line per problem.
 * @throws {QmpClientError} when a query fails.
 */
export async function preflightResume(
  source: QmpClient,
  destination: QmpClient,
  options: { timeoutMs?: number } = {},
): Promise<PreflightFacts> {
  const [s, d] = await Promise.all([gatherFacts(source, options), gatherFacts(destination, options)]);
  const problems = compareResume({ source: s, destination: d });
  if (problems.length) throw new PreflightError(problems);
  return { source: s, destination: d };
}

/** The problems preflightResume() throws, from facts already gathered (pure). */
export function compareResume({ source: s, destination: d }: PreflightFacts): string[] {
  const out: string[] = [];
  for (const [side, f] of [
    ['source', s],
    ['destination', d],
  ] as const) {
    const st = f.migration.status ?? 'none';
    if (st !== 'postcopy-paused')
      out.push(
        `${side}'s migration is '${st}', not 'postcopy-paused': there is no paused postcopy migration to resume`,
      );
  }
  if (d.commands && !d.commands.includes('migrate-recover'))
    out.push(
      `destination (QEMU ${d.versionText}) has no migrate-recover: it cannot resume a postcopy migration`,
    );
  return out;
}

/** With TLS, each side must be able to create the credentials object and point tls-creds at it. */
function tlsProblems({ source: s, destination: d }: PreflightFacts, plan: MigratePlan): string[] {
  if (!plan.tls) return [];
  const out: string[] = [];
  for (const [side, f] of [
    ['destination', d],
    ['source', s],
  ] as const) {
    const peer = `QEMU ${f.versionText}`;
    if (f.commands && !f.commands.includes('object-add'))
      out.push(`${side} (${peer}) has no object-add: qmigrate cannot create its TLS credentials there`);
    if (!('tls-creds' in f.parameters))
      out.push(`${side} (${peer}) has no 'tls-creds' migration parameter: it cannot migrate over TLS`);
  }
  return out;
}

function stateProblems({ source: s, destination: d }: PreflightFacts): string[] {
  const out: string[] = [];
  if (d.runState !== 'inmigrate')
    out.push(
      `destination is not waiting for a migration: its run state is '${d.runState}', not 'inmigrate' (start it with -incoming defer)`,
    );
  if (s.runState === 'inmigrate')
    out.push(
      `source is itself waiting for an incoming migration (run state 'inmigrate'); it has no guest to send`,
    );
  if (s.runState === 'postmigrate')
    // QEMU's migrate refuses it (migrate_prepare), but only after the destination was set up
    // and left listening, so that it cannot be used again without a restart.
    out.push(
      `source's guest has already migrated away (run state 'postmigrate'): QEMU will not migrate it again until 'cont'`,
    );
  const sm = s.migration.status ?? 'none';
  if (!IDLE.has(sm)) out.push(`source already has a migration in progress (status '${sm}')`);
  const dm = d.migration.status ?? 'none';
  if (dm !== 'none' && d.runState === 'inmigrate')
    out.push(
      `destination already has an incoming migration (status '${dm}'); start it with -incoming defer, not an address`,
    );
  return out;
}

function blockerProblems(s: SideFacts): string[] {
  return (s.migration['blocked-reasons'] ?? []).map((r) => `source cannot migrate: ${r}`);
}

/** `1024 MiB`, `2 GiB`, or bytes where the size is no whole MiB. */
export function formatSize(bytes: number): string {
  const MiB = 1024 * 1024;
  if (bytes % MiB !== 0) return `${bytes} bytes`;
  return `${bytes / MiB} MiB`;
}

function ramProblems({ source: s, destination: d }: PreflightFacts): string[] {
  if (!s.memdevs || !d.memdevs) return [];
  const out: string[] = [];
  const dst = new Map(d.memdevs.map((m) => [m.id, m.size]));
  const src = new Map(s.memdevs.map((m) => [m.id, m.size]));
  for (const [id, size] of src) {
    const other = dst.get(id);
    if (other === undefined)
      out.push(
        `destination has no RAM block '${id}' (source's is ${formatSize(size)}; destination has ${list(dst)})`,
      );
    else if (other !== size)
      out.push(`destination RAM block '${id}' is ${formatSize(other)}, source's is ${formatSize(size)}`);
  }
  for (const [id, size] of dst) {
    if (!src.has(id))
      out.push(`destination has a RAM block '${id}' (${formatSize(size)}) that the source lacks`);
  }
  return out;
}

function list(m: Map<string, number>): string {
  return m.size ? [...m.keys()].map((k) => `'${k}'`).join(', ') : 'none';
}

/** A capability's state once the plan has set its own (the plan sets events and the rest). */
function effectiveCapability(f: SideFacts, plan: MigratePlan, side: Side, name: string): boolean {
  const set = plan.capabilities[name];
  const sent = set !== undefined && !(side === 'destination' && SOURCE_ONLY_CAPABILITIES.has(name));
  return sent ? set : (f.capabilities[name] ?? false);
}

function capabilityProblems({ source: s, destination: d }: PreflightFacts, plan: MigratePlan): string[] {
  const out: string[] = [];
  for (const name of MUST_AGREE_CAPABILITIES) {
    if (!(name in s.capabilities) && !(name in d.capabilities)) continue;
    const a = effectiveCapability(s, plan, 'source', name);
    const b = effectiveCapability(d, plan, 'destination', name);
    if (a !== b)
      out.push(
        `capability '${name}' is ${onOff(b)} on the destination and ${onOff(a)} on the source; it must be the same on both (set it with --capability ${name}=${a ? 'on' : 'off'})`,
      );
  }
  return out;
}

function onOff(b: boolean): string {
  return b ? 'on' : 'off';
}

function parameterProblems({ source: s, destination: d }: PreflightFacts, plan: MigratePlan): string[] {
  const multifd = effectiveCapability(s, plan, 'source', 'multifd');
  if (!multifd) return [];
  const out: string[] = [];
  for (const name of ['multifd-channels', 'multifd-compression']) {
    if (SOURCE_ONLY_PARAMETERS.has(name)) continue;
    const a = plan.parameters[name] ?? s.parameters[name];
    const b = plan.parameters[name] ?? d.parameters[name];
    if (a !== undefined && b !== undefined && a !== b)
      out.push(
        `parameter '${name}' is ${String(b)} on the destination and ${String(a)} on the source; with multifd it must be the same`,
      );
  }
  return out;
}

function formProblems({ source: s, destination: d }: PreflightFacts, plan: MigratePlan): string[] {
  const chans = plan.channels;
  if (!chans || (chans.length === 1 && chans[0]?.['channel-type'] === 'main')) return [];
  const out: string[] = [];
  for (const [side, f] of [
    ['destination', d],
    ['source', s],
  ] as const) {
    if (!f.channels)
      out.push(
        `${side} is QEMU ${f.versionText}, which takes no 'channels' (8.2+); give a single main channel or --uri`,
      );
  }
  return out;
}
