/**
 * Migration capabilities and parameters of one VM (migration/options.c): the current sets,
 * changed only through the QAPI layer's rules so that a refused change leaves them as they
 * were, and the query forms `query-migrate-capabilities` / `query-migrate-parameters` return.
 * Also what qmigrate does not implement: each such option is refused where it is used, never
 * ignored (docs/options.md lists every capability, parameter, mode and transport).
 */
import { genericError, QapiError } from '../qapi/errors.js';
import {
  type Capabilities,
  type CapabilityContext,
  defaultCapabilities,
  defaultParameters,
  MIGRATION_CAPABILITIES,
  mergeCapabilities,
  mergeParameters,
  type Parameters,
  type ParsedInput,
} from '../qapi/migration-rules.js';
import type {
  MigrateSetParameters,
  MigrationAddress,
  MigrationCapability,
  MigrationCapabilityStatus,
  MigrationParameters,
} from '../qapi/types.js';
import { checkUnixPath, inetPort, SocketError } from '../util/sockets.js';

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
  { cap: 'postcopy-ram', why: 'postcopy is not implemented' },
  { cap: 'x-colo', why: 'COLO is not implemented' },
  {
    cap: 'dirty-bitmaps',
    why: 'block dirty bitmap migration (and the postcopy it implies) is not implemented',
  },
  { cap: 'x-ignore-shared', why: 'shared RAM is always sent' },
  { cap: 'background-snapshot', why: 'background snapshots are not implemented' },
  { cap: 'zero-copy-send', why: 'Node cannot send with MSG_ZEROCOPY' },
  { cap: 'postcopy-preempt', why: 'postcopy is not implemented' },
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

/**
 * QEMU's TLS step on a channel, which QEMU runs once the channel is connected (source) or
 * has arrived (destination), before a byte of the stream. qmigrate has no TLS credential
 * objects yet (`object-add` comes later), so any `tls-creds` names one that does not exist.
 * @returns QEMU 10.0's error for the channel, or undefined without TLS.
 */
export function tlsChannelError(params: Readonly<Parameters>): QapiError | undefined {
  const creds = params['tls-creds'];
  return creds === '' ? undefined : genericError(`No TLS credentials with id '${creds}'`);
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
  if (caps['return-path'] && addr.transport === 'file') {
    // QEMU opens it anyway and fails reading the file: "Unable to read from file: Bad file descriptor".
    throw genericError("Capability 'return-path' needs a transport that carries replies; a file cannot");
  }
  if (caps['return-path'] && addr.transport === 'exec') {
    throw notSupported("Capability 'return-path' over exec", "the child's output is not read");
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
  if (params['tls-creds'] !== '') return; // refused on the channel, with QEMU's text
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
