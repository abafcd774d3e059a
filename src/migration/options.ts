/**
 * Migration capabilities and parameters (migration/options.c): defaults, the checks a change
 * must pass (migrate_caps_check, migrate_params_check) and those `migrate` / `migrate-incoming`
 * make of them; one VM's current sets, which a refused change leaves as they were; and what
 * qmigrate refuses, never ignores (docs/options.md lists every option, mode and transport).
 */
import { genericError, QapiError } from '../qapi/errors.js';
import { schema } from '../qapi/schema.js';
import type {
  BitmapMigrationNodeAlias,
  MigrateSetParameters,
  MigrationAddress,
  MigrationCapability,
  MigrationCapabilityStatus,
  MigrationParameters,
  MigrationStatus,
  RunState,
} from '../qapi/types.js';
import { checkUnixPath, inetPort, SocketError } from '../util/sockets.js';
import type { ParsedInput } from './channel-rules.js';
import { isRunning } from './status.js';

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

/** The largest `downtime-limit`, in ms (MAX_MIGRATE_DOWNTIME in migration/options.c). */
export const MAX_MIGRATE_DOWNTIME = 2000 * 1000;

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
  if (big(p['downtime-limit']) > BigInt(MAX_MIGRATE_DOWNTIME)) {
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

// ---- against the transport and the command --------------------------------------------

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

/**
 * The option combinations `migrate` refuses once the migration state allows it (migrate_prepare
 * in migration/migration.c): mapped-ram with TLS or compression, a CPR mode with postcopy,
 * background snapshots or COLO.
 * @throws {QapiError}
 */
export function checkMigrateOptions(caps: Readonly<Capabilities>, params: Readonly<Parameters>): void {
  const mappedRam = caps['mapped-ram'];
  if (mappedRam && params['tls-creds'] !== '') throw genericError('Cannot use TLS with mapped-ram');
  if (mappedRam && params['multifd-compression'] !== 'none') {
    throw genericError('Cannot use compression with mapped-ram');
  }
  if (params.mode !== 'normal') {
    if (caps['postcopy-ram'] || caps['dirty-bitmaps']) throw genericError('Cannot use postcopy with CPR');
    if (caps['background-snapshot']) throw genericError('Cannot use background snapshot with CPR');
    if (caps['x-colo']) throw genericError('Cannot use COLO with CPR');
  }
}

// ---- one VM's options -----------------------------------------------------------------

export class MigrationOptions {
  #caps: Capabilities = defaultCapabilities();
  #params: Parameters = defaultParameters();

  get caps(): Readonly<Capabilities> {
    return this.#caps;
  }

  get params(): Readonly<Parameters> {
    return this.#params;
  }

  /** @throws {QapiError} with QEMU's text; nothing changes then. */
  setCapabilities(list: readonly MigrationCapabilityStatus[], ctx: Omit<CapabilityContext, 'params'>): void {
    this.#caps = mergeCapabilities(this.#caps, list, { ...ctx, params: this.#params });
  }

  /** @throws {QapiError} with QEMU's text; nothing changes then. */
  setParameters(p: MigrateSetParameters): void {
    this.#params = mergeParameters(this.#params, p, this.#caps);
  }

  queryCapabilities(): MigrationCapabilityStatus[] {
    return MIGRATION_CAPABILITIES.map((capability) => ({ capability, state: this.#caps[capability] }));
  }

  queryParameters(): MigrationParameters {
    return { ...this.#params };
  }
}

// ---- what qmigrate does not implement ---------------------------------------------------

/**
 * Capabilities that ask for something qmigrate does not do, with why. Both sides refuse them
 * unless `sourceOnly` (QEMU reads those on the source only; a destination ignores them too).
 */
const NOT_IMPLEMENTED: readonly { cap: MigrationCapability; why: string; sourceOnly?: true }[] = [
  { cap: 'xbzrle', why: 'XBZRLE page encoding is not implemented' },
  { cap: 'auto-converge', why: 'the guest workload is not throttled', sourceOnly: true },
  { cap: 'x-colo', why: 'COLO is not implemented' },
  {
    cap: 'dirty-bitmaps',
    why: 'block dirty bitmap migration (and the postcopy it implies) is not implemented',
  },
  { cap: 'x-ignore-shared', why: 'shared RAM is always sent' },
  { cap: 'background-snapshot', why: 'background snapshots are not implemented' },
  { cap: 'zero-copy-send', why: 'Node cannot send with MSG_ZEROCOPY' },
  {
    cap: 'postcopy-preempt',
    why: 'postcopy preempt (a second channel for requested pages) is not implemented',
  },
  { cap: 'switchover-ack', why: 'the switchover handshake is not implemented' },
  { cap: 'mapped-ram', why: 'the mapped-ram file layout is not implemented' },
];

export type Side = 'source' | 'destination';

/**
 * The capabilities and parameters qmigrate cannot honour, as one side sees them; without a
 * side, those refused on both.
 * @throws {QapiError} naming the first one set.
 */
export function checkCapabilitySupport(
  caps: Readonly<Capabilities>,
  params: Readonly<Parameters>,
  side?: Side,
): void {
  const on = NOT_IMPLEMENTED.find((n) => caps[n.cap] && !(n.sourceOnly && side !== 'source'));
  if (on) throw genericError(`Capability '${on.cap}' is not supported by qmigrate: ${on.why}`);
  const compression = params['multifd-compression'];
  // Without multifd QEMU reads no compression setting either.
  if (caps.multifd && compression !== 'none') {
    throw genericError(`multifd-compression '${compression}' is not supported by qmigrate (only 'none')`);
  }
}

/** What a command's checks need to know about the VM beyond its options. */
export interface SupportContext {
  caps: Readonly<Capabilities>;
  params: Readonly<Parameters>;
  /** RAM blocks not shared with another process, by idstr: QEMU's CPR blockers. */
  unsharedRam?: readonly string[];
}

const notSupported = (what: string, why: string) =>
  genericError(`${what} is not supported by qmigrate: ${why}`);

/**
 * What `migrate` asks for that qmigrate cannot do, checked after QEMU 10.0's own rules and
 * before anything changes. The order follows QEMU's where QEMU refuses too (its CPR blocker
 * and cpr channel texts).
 * @throws {QapiError}
 */
export function checkOutgoingSupport(parsed: ParsedInput, ctx: SupportContext): void {
  const { caps, params } = ctx;
  if (params.mode === 'cpr-transfer') {
    const blocked = ctx.unsharedRam?.[0];
    if (blocked !== undefined) {
      throw genericError(
        `Memory region ${blocked} is not compatible with CPR. share=on is required for memory-backend objects, and aux-ram-share=on is required.`,
      );
    }
    const cpr = parsed.cpr?.addr;
    if (cpr && !(cpr.transport === 'socket' && cpr.type === 'unix')) {
      throw genericError('bad cpr channel address; must be unix');
    }
    throw notSupported(
      "Migration mode 'cpr-transfer'",
      'it hands guest RAM over as file descriptors on the cpr channel, which Node cannot send',
    );
  }
  if (params.mode === 'cpr-reboot') {
    throw notSupported(
      "Migration mode 'cpr-reboot'",
      'the source would migrate the guest live instead of stopping it first',
    );
  }
  // QEMU 10.0 accepts a cpr channel in the other modes and never opens it.
  if (parsed.cpr) {
    throw genericError(
      `A 'cpr' channel is used only in migration mode 'cpr-transfer' (the mode is '${params.mode}')`,
    );
  }
  checkCapabilitySupport(caps, params, 'source');
  const addr = parsed.main.addr;
  // postcopy-ram opens the return path too: its page requests and recovery travel there.
  const rp = caps['return-path'] ? 'return-path' : caps['postcopy-ram'] ? 'postcopy-ram' : undefined;
  if (rp && addr.transport === 'file') {
    // QEMU opens it anyway and fails reading the file: "Unable to read from file: Bad file descriptor".
    throw genericError(`Capability '${rp}' needs a transport that carries replies; a file cannot`);
  }
  if (rp && addr.transport === 'exec') {
    // QEMU 10.0 with postcopy-ram reads the child's output as the return path; with
    // `exec:cat > /dev/null` its postcopy stays postcopy-active for good, the guest stopped.
    throw notSupported(`Capability '${rp}' over exec`, "the child's output is not read");
  }
  checkTlsOptions(params);
  checkSocketOptions(addr, 'source');
}

/**
 * What `migrate-incoming` asks for that qmigrate cannot do, checked after QEMU 10.0's rules
 * and before anything changes.
 * @throws {QapiError}
 */
export function checkIncomingSupport(parsed: ParsedInput, ctx: SupportContext): void {
  const { caps, params } = ctx;
  if (params.mode === 'cpr-transfer') {
    throw notSupported(
      "Migration mode 'cpr-transfer'",
      'it takes guest RAM over as file descriptors on the cpr channel, which Node cannot receive',
    );
  }
  // cpr-reboot: a QEMU 10.0 destination loads the stream exactly as in mode normal.
  checkCapabilitySupport(caps, params, 'destination');
  checkTlsOptions(params);
  checkSocketOptions(parsed.main.addr, 'destination');
}

/** tls-hostname and tls-authz only refine TLS; QEMU ignores them while tls-creds is empty. */
function checkTlsOptions(params: Readonly<Parameters>): void {
  if (params['tls-creds'] !== '') return;
  for (const p of ['tls-hostname', 'tls-authz'] as const) {
    if (params[p] !== '') {
      throw genericError(`Parameter '${p}' is set but 'tls-creds' is empty: without TLS it would be ignored`);
    }
  }
}

const isIpv4Literal = (host: string) => /^[\d.]+$/.test(host);
const isIpLiteral = (host: string) => isIpv4Literal(host) || host.includes(':');

/**
 * Socket options qmigrate's transport does not apply. QEMU reads `to` and `numeric` only when
 * listening, so a source ignores them as QEMU does; on a listener the family options with an
 * IP address change nothing but what QEMU refuses too (checkListenAddress).
 */
function checkSocketOptions(addr: MigrationAddress, side: Side): void {
  // abstract/tight and keep-alive are applied by util/sockets.ts (and keepalive is on for
  // every accepted migration connection).
  if (addr.transport !== 'socket' || addr.type !== 'inet') return;
  if (addr.mptcp) throw notSupported("Socket option 'mptcp'", 'Node has no IPPROTO_MPTCP');
  if (side === 'destination' && addr.to !== undefined) {
    throw notSupported("Socket option 'to'", 'it listens on the one port given');
  }
  if (addr.ipv4 === undefined && addr.ipv6 === undefined) return;
  // QEMU fails this one asynchronously on a source; qmigrate says so before starting.
  if (side === 'source' && addr.ipv4 === false && addr.ipv6 === false) {
    throw genericError('Cannot disable IPv4 and IPv6 at same time');
  }
  // A source resolves with the family asked for (util/sockets.ts). A listener applies one
  // family restriction only: IPv6 only on every address.
  if (side === 'source') return;
  const v6only = addr.host === '' && addr.ipv6 === true && addr.ipv4 === false;
  if (!isIpLiteral(addr.host) && !v6only && !(addr.ipv4 === false && addr.ipv6 === false)) {
    throw notSupported(
      "Socket option 'ipv4' or 'ipv6' without an IP address",
      'name resolution is not restricted to one address family',
    );
  }
}

/**
 * The checks QEMU 10.0 makes when it resolves the address it listens on, after the incoming
 * state has moved to `setup` (so a failure leaves it there, as in QEMU).
 * @throws {QapiError} with QEMU's text.
 */
export function checkListenAddress(addr: MigrationAddress): void {
  if (addr.transport !== 'socket') return;
  try {
    // The listener's own refusals (util/sockets.ts), here too so that `qmigrate check` has them.
    if (addr.type === 'unix') checkUnixPath(addr);
    if (addr.type === 'inet') inetPort(addr);
  } catch (e) {
    if (!(e instanceof SocketError)) throw e;
    throw new QapiError(e.message, 'GenericError', { cause: e });
  }
  if (addr.type !== 'inet') return;
  if (addr.ipv4 === false && addr.ipv6 === false)
    throw genericError('Cannot disable IPv4 and IPv6 at same time');
  const where = `${addr.host}:${addr.port}`;
  if (addr.numeric && addr.host !== '' && !isIpLiteral(addr.host)) {
    throw genericError(`address resolution failed for ${where}: Name or service not known`);
  }
  // The family QEMU asks the resolver for (inet_ai_family_from_address) against the literal.
  const onlyV6 = addr.ipv4 === false || (addr.ipv6 === true && addr.ipv4 !== true);
  const onlyV4 = addr.ipv6 === false || (addr.ipv4 === true && addr.ipv6 !== true);
  const v4 = isIpv4Literal(addr.host);
  const v6 = addr.host.includes(':');
  if ((v4 && onlyV6) || (v6 && onlyV4)) {
    throw genericError(`address resolution failed for ${where}: Address family for hostname not supported`);
  }
}
