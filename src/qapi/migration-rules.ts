/**
 * The command-level rules of `migrate`, `migrate-incoming`, `migrate-set-capabilities` and
 * `migrate-set-parameters`, as pure functions over a snapshot of the migration state, in the
 * order and with the words of QEMU 10.0 (migration/migration.c: qmp_migrate,
 * qmp_migrate_incoming, migrate_prepare, migration_channels_and_transport_compatible;
 * migration/options.c: migrate_caps_check, migrate_params_check). The engine calls these
 * before it changes any state, so a refused command leaves everything as it was.
 */
import { genericError } from './errors.js';
import { schema } from './schema.js';
import type {
  BitmapMigrationNodeAlias,
  MigMode,
  MigrateSetParameters,
  MigrationAddress,
  MigrationCapability,
  MigrationCapabilityStatus,
  MigrationChannel,
  MigrationParameters,
  MigrationStatus,
  RunState,
} from './types.js';
import { uriToChannel } from './uri.js';

export type Capabilities = Record<MigrationCapability, boolean>;
/** Every parameter is present once the defaults are applied. */
export type Parameters = Required<Omit<MigrationParameters, 'block-bitmap-mapping'>> &
  Pick<MigrationParameters, 'block-bitmap-mapping'>;

export const MIGRATION_CAPABILITIES = schema.enumValues('MigrationCapability') as MigrationCapability[];

/** Every capability off, as QEMU starts. */
export function defaultCapabilities(): Capabilities {
  return Object.fromEntries(MIGRATION_CAPABILITIES.map((c) => [c, false])) as Capabilities;
}

/** QEMU 10.0's defaults (migration/options.c), as `query-migrate-parameters` shows them. */
export function defaultParameters(): Parameters {
  return {
    'announce-initial': 50,
    'announce-max': 550,
    'announce-rounds': 5,
    'announce-step': 100,
    'throttle-trigger-threshold': 50,
    'cpu-throttle-initial': 20,
    'cpu-throttle-increment': 10,
    'cpu-throttle-tailslow': false,
    'tls-creds': '',
    'tls-hostname': '',
    'tls-authz': '',
    'max-bandwidth': 134217728,
    'avail-switchover-bandwidth': 0,
    'downtime-limit': 300,
    'x-checkpoint-delay': 20000,
    'multifd-channels': 2,
    'xbzrle-cache-size': 67108864,
    'max-postcopy-bandwidth': 0,
    'max-cpu-throttle': 99,
    'multifd-compression': 'none',
    'multifd-zlib-level': 1,
    'multifd-qatzip-level': 1,
    'multifd-zstd-level': 1,
    'x-vcpu-dirty-limit-period': 1000,
    'vcpu-dirty-limit': 1,
    mode: 'normal',
    'zero-page-detection': 'multifd',
    'direct-io': false,
  };
}

/** The source states in which a migration counts as running (migration_is_running). */
export const RUNNING_STATES: readonly MigrationStatus[] = [
  'setup',
  'active',
  'postcopy-active',
  'postcopy-paused',
  'postcopy-recover-setup',
  'postcopy-recover',
  'pre-switchover',
  'device',
  'wait-unplug',
  'cancelling',
  'colo',
];

export const isRunning = (s: MigrationStatus) => RUNNING_STATES.includes(s);

// ---- channels and uri -----------------------------------------------------------------

export interface MigrationInput {
  uri?: string;
  channels?: MigrationChannel[];
}

export interface ParsedInput {
  main: MigrationChannel;
  /** Only for `migrate`: the cpr channel, when one was given. */
  cpr?: MigrationChannel;
}

/**
 * `uri` xor `channels`, channel counts and types, then the URI grammar.
 * QEMU 10.0 crashes on a list with no `main` entry (migrate) or takes a lone `cpr` entry as
 * `main` (migrate-incoming); both get the error QEMU meant to give instead.
 * @throws {QapiError} with QEMU 10.0's text for the first rule broken.
 */
export function parseMigrationInput(
  input: MigrationInput,
  command: 'migrate' | 'migrate-incoming',
  mode: MigMode = 'normal',
): ParsedInput {
  const channels = input.channels?.length ? input.channels : undefined;
  if ((input.uri === undefined) === (channels === undefined)) {
    throw genericError("need either 'uri' or 'channels' argument");
  }
  let parsed: ParsedInput;
  if (channels) {
    if (command === 'migrate-incoming' && channels.length > 1) {
      throw genericError("Channel list must have only one entry, for type 'main'");
    }
    const seen: Partial<Record<MigrationChannel['channel-type'], MigrationChannel>> = {};
    for (const c of channels) {
      if (seen[c['channel-type']])
        throw genericError(`Channel list has more than one ${c['channel-type']} entry`);
      seen[c['channel-type']] = c;
    }
    if (command === 'migrate' && mode === 'cpr-transfer' && !seen.cpr) {
      throw genericError("missing 'cpr' migration channel");
    }
    if (!seen.main) throw genericError('Channel list has no main entry');
    parsed = command === 'migrate' && seen.cpr ? { main: seen.main, cpr: seen.cpr } : { main: seen.main };
  } else {
    parsed = { main: uriToChannel(input.uri as string) };
  }
  for (const c of [parsed.main, parsed.cpr]) {
    // QEMU 10.0 hands an empty argv to g_spawn and dies; refuse it instead.
    if (c?.addr.transport === 'exec' && c.addr.args.length === 0) {
      throw genericError("exec migration needs a program to run: 'args' is empty");
    }
  }
  return parsed;
}

/** Whether a transport can carry several connections (multifd, postcopy-preempt). */
export function supportsMultiChannel(addr: MigrationAddress, caps: Capabilities): boolean {
  if (addr.transport === 'socket') return addr.type !== 'fd';
  return addr.transport === 'file' && caps['mapped-ram'];
}

/**
 * The transport against the configuration (migration_transport_compatible), on both source
 * and destination, with the capabilities in force now.
 * @throws {QapiError}
 */
export function checkTransport(addr: MigrationAddress, caps: Capabilities, params: Parameters): void {
  if (caps['mapped-ram'] && addr.transport !== 'file') {
    throw genericError('Migration requires seekable transport (e.g. file)');
  }
  if ((caps.multifd || caps['postcopy-preempt']) && !supportsMultiChannel(addr, caps)) {
    throw genericError('Migration requires multi-channel URIs (e.g. tcp)');
  }
  if (caps.multifd && caps['mapped-ram'] && params['direct-io'] && addr.transport !== 'file') {
    throw genericError('Migration requires a transport that allows for extra fds (e.g. file)');
  }
  if (params.mode === 'cpr-transfer' && addr.transport === 'file') {
    throw genericError('Migration requires streamable transport (eg unix)');
  }
}

// ---- command preconditions ------------------------------------------------------------

export interface MigrationSnapshot {
  /** Outgoing migration status. */
  status: MigrationStatus;
  runstate: RunState;
  caps: Capabilities;
  params: Parameters;
}

/**
 * `migrate`: everything checked before the state moves to `setup` (qmp_migrate's input
 * checks, then migrate_prepare).
 * @throws {QapiError}
 */
export function checkMigrate(args: MigrationInput & { resume?: boolean }, s: MigrationSnapshot): ParsedInput {
  const parsed = parseMigrationInput(args, 'migrate', s.params.mode);
  checkTransport(parsed.main.addr, s.caps, s.params);
  if (args.resume) {
    if (s.status !== 'postcopy-paused') throw genericError('Cannot resume if there is no paused migration');
    if (s.caps['release-ram']) {
      throw genericError('Postcopy recovery cannot work when release-ram capability is set');
    }
    return parsed;
  }
  if (isRunning(s.status)) throw genericError("There's a migration process in progress");
  if (s.runstate === 'inmigrate') throw genericError('Guest is waiting for an incoming migration');
  if (s.runstate === 'postmigrate') {
    throw genericError("Can't migrate the vm that was paused due to previous migration");
  }
  const mappedRam = s.caps['mapped-ram'];
  if (mappedRam && s.params['tls-creds'] !== '') throw genericError('Cannot use TLS with mapped-ram');
  if (mappedRam && s.params['multifd-compression'] !== 'none') {
    throw genericError('Cannot use compression with mapped-ram');
  }
  if (s.params.mode !== 'normal') {
    if (s.caps['postcopy-ram'] || s.caps['dirty-bitmaps']) throw genericError('Cannot use postcopy with CPR');
    if (s.caps['background-snapshot']) throw genericError('Cannot use background snapshot with CPR');
    if (s.caps['x-colo']) throw genericError('Cannot use COLO with CPR');
  }
  return parsed;
}

export interface IncomingSnapshot {
  /** A previous migrate-incoming (or a non-defer -incoming) succeeded. */
  incomingStarted: boolean;
  runstate: RunState;
  /** Incoming migration status. */
  incomingStatus: MigrationStatus;
  caps: Capabilities;
  params: Parameters;
}

/**
 * `migrate-incoming`: everything checked before the listener is set up.
 * @throws {QapiError}
 */
export function checkMigrateIncoming(args: MigrationInput, s: IncomingSnapshot): ParsedInput {
  if (s.incomingStarted) throw genericError('The incoming migration has already been started');
  if (s.runstate !== 'inmigrate') throw genericError("'-incoming' was not specified on the command line");
  const parsed = parseMigrationInput(args, 'migrate-incoming', s.params.mode);
  checkTransport(parsed.main.addr, s.caps, s.params);
  if (s.incomingStatus !== 'none' && s.incomingStatus !== 'postcopy-paused') {
    throw genericError(`Illegal migration incoming state: ${s.incomingStatus}`);
  }
  return parsed;
}

// ---- capabilities ---------------------------------------------------------------------

/** Facts about the host that QEMU probes when a capability is turned on. */
export interface HostSupport {
  /** Why postcopy cannot work on this host (checked on a destination), if it cannot. */
  postcopyUnsupported?: string;
  /** False where the kernel lacks userfaultfd write protection. */
  backgroundSnapshotKernel?: boolean;
  /** False where guest memory cannot be write-tracked. */
  backgroundSnapshotMemory?: boolean;
  /** QEMU with KVM and a dirty ring; qmigrate and TCG guests have none. */
  kvmDirtyRing?: boolean;
}

const BACKGROUND_SNAPSHOT_CONFLICTS: readonly MigrationCapability[] = [
  'postcopy-ram',
  'dirty-bitmaps',
  'postcopy-blocktime',
  'late-block-activate',
  'return-path',
  'multifd',
  'pause-before-switchover',
  'auto-converge',
  'release-ram',
  'rdma-pin-all',
  'xbzrle',
  'x-colo',
  'validate-uuid',
  'zero-copy-send',
];

export interface CapabilityContext {
  status: MigrationStatus;
  runstate: RunState;
  incomingStarted: boolean;
  params: Parameters;
  host?: HostSupport;
}

/**
 * `migrate-set-capabilities`: applies the list in order to a copy and checks the result once.
 * @returns the new capability set; the caller's object is not changed.
 * @throws {QapiError}
 */
export function mergeCapabilities(
  current: Capabilities,
  requested: readonly MigrationCapabilityStatus[],
  ctx: CapabilityContext,
): Capabilities {
  if (isRunning(ctx.status)) throw genericError("There's a migration process in progress");
  const next = { ...current };
  for (const r of requested) next[r.capability] = r.state;
  const host = ctx.host ?? {};
  if (next['postcopy-ram']) {
    if (!current['postcopy-ram'] && ctx.runstate === 'inmigrate' && host.postcopyUnsupported) {
      throw genericError(`Postcopy is not supported: ${host.postcopyUnsupported}`);
    }
    if (next['x-ignore-shared']) throw genericError('Postcopy is not compatible with ignore-shared');
    if (next.multifd) throw genericError('Postcopy is not yet compatible with multifd');
  }
  if (next['background-snapshot']) {
    if (host.backgroundSnapshotKernel === false) {
      throw genericError('Background-snapshot is not supported by host kernel');
    }
    const clash = BACKGROUND_SNAPSHOT_CONFLICTS.find((c) => next[c]);
    if (clash) throw genericError(`Background-snapshot is not compatible with ${clash}`);
    if (host.backgroundSnapshotMemory === false) {
      throw genericError('Background-snapshot is not compatible with guest memory configuration');
    }
  }
  if (
    next['zero-copy-send'] &&
    (!next.multifd ||
      next.xbzrle ||
      ctx.params['multifd-compression'] !== 'none' ||
      ctx.params['tls-creds'] !== '')
  ) {
    throw genericError('Zero copy only available for non-compressed non-TLS multifd migration');
  }
  if (next['postcopy-preempt']) {
    if (!next['postcopy-ram']) throw genericError('Postcopy preempt requires postcopy-ram');
    if (ctx.incomingStarted) throw genericError('Postcopy preempt must be set before incoming starts');
  }
  if (next.multifd && ctx.incomingStarted) throw genericError('Multifd must be set before incoming starts');
  if (next['switchover-ack'] && !next['return-path']) {
    throw genericError("Capability 'switchover-ack' requires capability 'return-path'");
  }
  if (next['dirty-limit']) {
    if (next['auto-converge']) {
      throw genericError('dirty-limit conflicts with auto-converge either of then available currently');
    }
    if (!host.kvmDirtyRing) {
      throw genericError("dirty-limit requires KVM with accelerator property 'dirty-ring-size' set");
    }
  }
  if (next.multifd && next.xbzrle) throw genericError('Multifd is not compatible with xbzrle');
  if (next['mapped-ram']) {
    if (next.xbzrle) throw genericError('Mapped-ram migration is incompatible with xbzrle');
    if (next['postcopy-ram']) throw genericError('Mapped-ram migration is incompatible with postcopy');
  }
  return next;
}

// ---- parameters -----------------------------------------------------------------------

const range = (name: string, what: string) => genericError(`Parameter '${name}' expects ${what}`);
const big = (v: number | bigint) => BigInt(v);

/**
 * `migrate-set-parameters`: merges the given members into the current set and checks the
 * merged set (migrate_params_test_apply + migrate_params_check), so a bad value stored
 * earlier blocks unrelated updates, as in QEMU.
 * @returns the new parameter set; the caller's object is not changed.
 * @throws {QapiError}
 */
export function mergeParameters(
  current: Parameters,
  requested: MigrateSetParameters,
  caps: Capabilities,
): Parameters {
  const next: Parameters = { ...current };
  for (const [k, v] of Object.entries(requested) as [keyof MigrateSetParameters, unknown][]) {
    if (v === undefined) continue;
    (next as Record<string, unknown>)[k] = v === null ? '' : v;
  }
  const p = next;
  const between = (v: number | bigint, lo: number, hi: number) =>
    big(v) >= BigInt(lo) && big(v) <= BigInt(hi);
  if (!between(p['throttle-trigger-threshold'], 1, 100)) {
    throw range('throttle_trigger_threshold', 'an integer in the range of 1 to 100');
  }
  if (!between(p['cpu-throttle-initial'], 1, 99)) {
    throw range('cpu_throttle_initial', 'an integer in the range of 1 to 99');
  }
  if (!between(p['cpu-throttle-increment'], 1, 99)) {
    throw range('cpu_throttle_increment', 'an integer in the range of 1 to 99');
  }
  // max-bandwidth and avail-switchover-bandwidth are checked against SIZE_MAX, which a
  // uint64 on a 64-bit host cannot exceed: the check never fires, as in QEMU.
  if (big(p['downtime-limit']) > 2000000n) {
    throw range('downtime_limit', 'an integer in the range of 0 to (2000 * 1000) ms');
  }
  if (p['multifd-channels'] < 1) throw range('multifd_channels', 'a value between 1 and 255');
  if (p['multifd-zlib-level'] > 9) throw range('multifd_zlib_level', 'a value between 0 and 9');
  if (!between(p['multifd-qatzip-level'], 1, 9))
    throw range('multifd_qatzip_level', 'a value between 1 and 9');
  if (p['multifd-zstd-level'] > 20) throw range('multifd_zstd_level', 'a value between 0 and 20');
  const xbz = big(p['xbzrle-cache-size']);
  if (xbz < 4096n || (xbz & (xbz - 1n)) !== 0n) {
    throw range('xbzrle_cache_size', 'a power of two no less than the target page size');
  }
  if (p['max-cpu-throttle'] < p['cpu-throttle-initial'] || p['max-cpu-throttle'] > 99) {
    throw range('max_cpu_throttle', 'an integer in the range of cpu_throttle_initial to 99');
  }
  if (big(p['announce-initial']) > 100000n) throw range('announce_initial', 'a value between 0 and 100000');
  if (big(p['announce-max']) > 100000n) throw range('announce_max', 'a value between 0 and 100000');
  if (big(p['announce-rounds']) > 1000n) throw range('announce_rounds', 'a value between 0 and 1000');
  if (!between(p['announce-step'], 1, 10000)) throw range('announce_step', 'a value between 0 and 10000');
  const mappingError = p['block-bitmap-mapping'] && bitmapMappingError(p['block-bitmap-mapping']);
  if (mappingError) throw genericError(`Invalid mapping given for block-bitmap-mapping: ${mappingError}`);
  if (caps['zero-copy-send'] && (p['multifd-compression'] !== 'none' || p['tls-creds'] !== '')) {
    throw genericError('Zero copy only available for non-compressed non-TLS multifd migration');
  }
  if (!between(p['x-vcpu-dirty-limit-period'], 1, 1000)) {
    throw range('x-vcpu-dirty-limit-period', 'a value between 1 and 1000');
  }
  if (big(p['vcpu-dirty-limit']) < 1n)
    throw genericError("Parameter 'vcpu_dirty_limit' must be greater than 1 MB/s");
  return next;
}

/** QEMU's id_wellformed(): an ASCII letter, then letters, digits, '-', '.' and '_'. */
const ID_WELLFORMED = /^[A-Za-z][A-Za-z0-9._-]*$/;
const bytes = (s: string) => Buffer.byteLength(s, 'utf8');

/**
 * QEMU 10.0's check of `block-bitmap-mapping` (migration/block-dirty-bitmap.c), which builds
 * the name-to-alias map and then the alias-to-name map; each pass checks every entry in order
 * and stops at the first fault, so the first pass reports names mapped twice and the second
 * aliases used twice. Lengths are in bytes of UTF-8.
 * @returns what is wrong, or undefined.
 */
function bitmapMappingError(map: readonly BitmapMigrationNodeAlias[]): string | undefined {
  for (const byName of [true, false]) {
    const nodes = new Set<string>();
    for (const n of map) {
      const node = n['node-name'];
      if (!ID_WELLFORMED.test(n.alias)) return `The node alias '${n.alias}' is not well-formed`;
      if (bytes(n.alias) > 255) return `The node alias '${n.alias}' is longer than 255 bytes`;
      if (bytes(node) > 31) return `The node name '${node}' is longer than 31 bytes`;
      const key = byName ? node : n.alias;
      if (nodes.has(key))
        return byName ? `The node name '${key}' is mapped twice` : `The node alias '${key}' is used twice`;
      nodes.add(key);
      const bitmaps = new Set<string>();
      for (const b of n.bitmaps) {
        if (bytes(b.alias) > 255) return `The bitmap alias '${b.alias}' is longer than 255 bytes`;
        if (bytes(b.name) > 1023) return `The bitmap name '${b.name}' is longer than 1023 bytes`;
        const bkey = byName ? b.name : b.alias;
        if (bitmaps.has(bkey)) {
          return byName
            ? `The bitmap '${node}'/'${bkey}' is mapped twice`
            : `The bitmap alias '${n.alias}'/'${bkey}' is used twice`;
        }
        bitmaps.add(bkey);
      }
    }
  }
  return undefined;
}

// ---- the smaller commands -------------------------------------------------------------

/** `migrate-continue state=S`: only from state S (pause-before-switchover). */
export function checkMigrateContinue(state: MigrationStatus, current: MigrationStatus): void {
  if (state !== current) throw genericError(`Migration not in expected state: ${current}`);
}

const POSTCOPY_STATES: readonly MigrationStatus[] = [
  'postcopy-active',
  'postcopy-paused',
  'postcopy-recover-setup',
  'postcopy-recover',
];

/** `migrate_cancel`: refused only while postcopy runs; a no-op otherwise. */
export function checkMigrateCancel(current: MigrationStatus): void {
  if (POSTCOPY_STATES.includes(current)) throw genericError('Postcopy migration in progress, cannot cancel.');
}

/** `migrate-start-postcopy`. */
export function checkStartPostcopy(caps: Capabilities, current: MigrationStatus): void {
  if (!caps['postcopy-ram'] && !caps['dirty-bitmaps']) {
    throw genericError('Enable postcopy with migrate_set_capability before the start of migration');
  }
  if (current === 'none') throw genericError('Postcopy must be started after migration has been started');
}

/** `migrate-pause`, on either side. */
export function checkMigratePause(outgoing: MigrationStatus, incoming: MigrationStatus): void {
  const ok = (s: MigrationStatus) => s === 'postcopy-active' || s === 'postcopy-recover';
  if (!ok(outgoing) && !ok(incoming)) {
    throw genericError(
      'migrate-pause is currently only supported during postcopy-active or postcopy-recover state',
    );
  }
}

/** `migrate-recover` on a destination. */
export function checkMigrateRecover(incoming: MigrationStatus): void {
  if (incoming !== 'postcopy-paused')
    throw genericError('Migrate recover can only be run when postcopy is paused.');
}
