/**
 * The commands a migration plan sends to each side, in order: what `qmigrate migrate
 * --dry-run` prints and what runMigration() runs. Which side reads which capability and
 * parameter follows QEMU 10.0's migration/options.c and where migration/*.c reads them.
 */
import { ArgumentError } from '../errors.js';
import type { MigrationAddress, MigrationChannel, SocketAddress } from '../qapi/types.js';
import { addressToEquivalentUri, uriToChannel } from '../qapi/uri.js';
import type { MigratePlan, MigrationTls, PlannedCommand } from './types.js';

/** The credentials objects' id when the plan names none. */
export const DEFAULT_TLS_ID = 'qmigrate-tls0';

/**
 * Capabilities only the source reads (QEMU 10.0: the sender's throttling, page release,
 * switchover pause, zero-copy and snapshot paths); the destination is not sent them.
 */
export const SOURCE_ONLY_CAPABILITIES: ReadonlySet<string> = new Set([
  'auto-converge',
  'release-ram',
  'pause-before-switchover',
  'zero-copy-send',
  'background-snapshot',
  'dirty-limit',
  'validate-uuid',
  'rdma-pin-all',
]);

/** Capabilities only the destination reads (its block activation and postcopy timing). */
export const DESTINATION_ONLY_CAPABILITIES: ReadonlySet<string> = new Set([
  'late-block-activate',
  'postcopy-blocktime',
]);

/**
 * Capabilities that must be equal on both sides or the stream cannot be loaded: QEMU 10.0
 * validates x-ignore-shared and mapped-ram in the stream's configuration record
 * (savevm.c should_validate_capability); multifd decides whether the destination waits for
 * multifd channels; postcopy-ram, postcopy-preempt and switchover-ack need the destination's
 * half of their handshakes.
 */
export const MUST_AGREE_CAPABILITIES: readonly string[] = [
  'multifd',
  'mapped-ram',
  'x-ignore-shared',
  'postcopy-ram',
  'postcopy-preempt',
  'switchover-ack',
];

/**
 * Parameters only the source reads: its rate limits, downtime target, throttling and caches.
 * Every other parameter goes to both sides (multifd-channels and multifd-compression must be
 * equal: the destination waits for that many channels and decodes with that method).
 */
export const SOURCE_ONLY_PARAMETERS: ReadonlySet<string> = new Set([
  'max-bandwidth',
  'avail-switchover-bandwidth',
  'downtime-limit',
  'max-postcopy-bandwidth',
  'throttle-trigger-threshold',
  'cpu-throttle-initial',
  'cpu-throttle-increment',
  'cpu-throttle-tailslow',
  'max-cpu-throttle',
  'x-checkpoint-delay',
  'xbzrle-cache-size',
  'x-vcpu-dirty-limit-period',
  'vcpu-dirty-limit',
]);

/** What planCommands needs to know about the two peers; by default both take `channels`. */
export interface PlanFacts {
  /** Whether each side's `migrate` / `migrate-incoming` takes `channels` (QEMU 8.2+). */
  sourceChannels?: boolean;
  destinationChannels?: boolean;
  /**
   * Where the destination really listens (its query-migrate `socket-address`), which replaces
   * a tcp port 0 of the plan in the source's `migrate`.
   */
  listening?: readonly SocketAddress[];
}

/**
 * The commands for both sides, in the order they are sent: with TLS the credentials objects
 * (destination, then source), then the destination's capabilities,
 * parameters and `migrate-incoming`, then the source's capabilities, parameters and `migrate`.
 * `events` is switched on at both ends. A side without `channels` gets the equivalent `uri`.
 * @throws {ArgumentError} when the plan has both or neither of `channels` and `uri`, or a side
 *   that takes no `channels` is given an address no URI expresses.
 */
export function planCommands(plan: MigratePlan, facts: PlanFacts = {}): PlannedCommand[] {
  if ((plan.channels === undefined) === (plan.uri === undefined))
    throw new ArgumentError('a migration plan needs exactly one of channels and uri');
  const channels = plan.channels ?? [uriToChannel(plan.uri as string)];
  const out: PlannedCommand[] = [];
  // Both credentials objects first: a directory a host cannot read fails there, before the
  // destination listens (QEMU loads the files at object-add).
  for (const side of ['destination', 'source'] as const) {
    if (plan.tls) out.push({ side, execute: 'object-add', arguments: tlsObject(plan.tls, side) });
  }
  for (const side of ['destination', 'source'] as const) {
    const caps = capabilitiesFor(plan, side);
    out.push({ side, execute: 'migrate-set-capabilities', arguments: { capabilities: caps } });
    const params = parametersFor(plan, side);
    if (Object.keys(params).length) out.push({ side, execute: 'migrate-set-parameters', arguments: params });
    const sent = side === 'source' ? withListeningPort(channels, facts.listening) : channels;
    const useChannels =
      plan.uri === undefined &&
      (side === 'source' ? facts.sourceChannels : facts.destinationChannels) !== false;
    out.push({
      side,
      execute: side === 'source' ? 'migrate' : 'migrate-incoming',
      arguments: useChannels ? { channels: sent } : { uri: uriOf(sent, side) },
    });
  }
  return out;
}

/**
 * The commands that recover a postcopy migration paused on a broken link (a `resume` plan):
 * the destination's `migrate-recover` on the plan's address (it takes a uri only,
 * qapi/migration.json), then the source's `migrate` with `resume: true` to where it listens.
 * Nothing else: capabilities and parameters cannot change while the migration exists.
 * @throws {ArgumentError} as planCommands, and for channels other than one main channel.
 */
export function planResumeCommands(plan: MigratePlan, facts: PlanFacts = {}): PlannedCommand[] {
  if ((plan.channels === undefined) === (plan.uri === undefined))
    throw new ArgumentError('a migration plan needs exactly one of channels and uri');
  const channels = plan.channels ?? [uriToChannel(plan.uri as string)];
  const sent = withListeningPort(channels, facts.listening);
  const useChannels = plan.uri === undefined && facts.sourceChannels !== false;
  return [
    { side: 'destination', execute: 'migrate-recover', arguments: { uri: recoverUri(channels) } },
    {
      side: 'source',
      execute: 'migrate',
      arguments: useChannels
        ? { channels: sent, resume: true }
        : { uri: uriOf(sent, 'source'), resume: true },
    },
  ];
}

function capabilitiesFor(plan: MigratePlan, side: 'source' | 'destination') {
  const skip = side === 'source' ? DESTINATION_ONLY_CAPABILITIES : SOURCE_ONLY_CAPABILITIES;
  const caps = [{ capability: 'events', state: true }];
  for (const [capability, state] of Object.entries(plan.capabilities)) {
    if (capability !== 'events' && !skip.has(capability)) caps.push({ capability, state });
  }
  return caps;
}

function parametersFor(plan: MigratePlan, side: 'source' | 'destination'): Record<string, unknown> {
  const own =
    side === 'source'
      ? { ...plan.parameters }
      : Object.fromEntries(Object.entries(plan.parameters).filter(([k]) => !SOURCE_ONLY_PARAMETERS.has(k)));
  if (!plan.tls) return own;
  // tls-hostname is the client's: the destination's QEMU never reads it.
  const hostname =
    side === 'source' && plan.tls.hostname !== undefined ? { 'tls-hostname': plan.tls.hostname } : {};
  return { ...own, 'tls-creds': plan.tls.id ?? DEFAULT_TLS_ID, ...hostname };
}

/**
 * The tls-creds-x509 object of one side, as object-add takes it: QEMU's migration is the
 * client on the source and the server on the destination (migration/tls.c), and the server
 * asks for the source's certificate (verify-peer, which the client side has on by default).
 */
function tlsObject(tls: MigrationTls, side: 'source' | 'destination'): Record<string, unknown> {
  return {
    'qom-type': 'tls-creds-x509',
    id: tls.id ?? DEFAULT_TLS_ID,
    dir: side === 'source' ? tls.sourceDir : tls.destinationDir,
    endpoint: side === 'source' ? 'client' : 'server',
    'verify-peer': true,
  };
}

/**
 * What undoes the plan's TLS set-up on each side once the migration has ended: `tls-creds`
 * (and the source's `tls-hostname`) back to what they were, then object-del. Empty without
 * TLS. `before` holds each side's parameters as the preflight read them.
 */
export function cleanupCommands(
  plan: MigratePlan,
  before: { source?: Record<string, unknown>; destination?: Record<string, unknown> } = {},
): PlannedCommand[] {
  if (!plan.tls) return [];
  const id = plan.tls.id ?? DEFAULT_TLS_ID;
  const out: PlannedCommand[] = [];
  for (const side of ['source', 'destination'] as const) {
    const was = before[side] ?? {};
    const restore: Record<string, unknown> = { 'tls-creds': was['tls-creds'] ?? '' };
    if (side === 'source' && plan.tls.hostname !== undefined)
      restore['tls-hostname'] = was['tls-hostname'] ?? '';
    out.push({ side, execute: 'migrate-set-parameters', arguments: restore, phase: 'cleanup' });
    out.push({ side, execute: 'object-del', arguments: { id }, phase: 'cleanup' });
  }
  return out;
}

/** The plan's channels with a tcp port 0 replaced by the port the destination listens on. */
function withListeningPort(
  channels: readonly MigrationChannel[],
  listening: readonly SocketAddress[] | undefined,
): MigrationChannel[] {
  const port = listening?.find((a) => a.type === 'inet')?.port;
  return channels.map((c) => {
    const a = c.addr;
    if (port === undefined || a.transport !== 'socket' || a.type !== 'inet' || a.port !== '0') return c;
    return { ...c, addr: { ...a, port } as MigrationAddress };
  });
}

/** migrate-recover's uri: it takes no channels on any QEMU version. */
function recoverUri(channels: readonly MigrationChannel[]): string {
  const main = channels.length === 1 && channels[0]?.['channel-type'] === 'main' ? channels[0] : undefined;
  const uri = main && addressToEquivalentUri(main.addr);
  if (uri === undefined)
    throw new ArgumentError(
      'migrate-recover takes a uri, and these channels have no URI form; give one main channel',
    );
  return uri;
}

function uriOf(channels: readonly MigrationChannel[], side: string): string {
  const main = channels.length === 1 && channels[0]?.['channel-type'] === 'main' ? channels[0] : undefined;
  const uri = main && addressToEquivalentUri(main.addr);
  if (uri === undefined)
    throw new ArgumentError(
      `the ${side} takes no 'channels' (QEMU before 8.2), and these channels have no URI form; give one main channel`,
    );
  return uri;
}
