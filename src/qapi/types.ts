// Generated from src/qapi/schema.json by `npm run gen` (src/qapi/gen-types.ts). Do not edit.

/** QAPI 64-bit integers (int, int64, uint64, size): a number when exact, else a bigint. */
export type Integer64 = number | bigint;

/** Either a string or an explicit JSON null, used where null must mean something different from an absent member. */
export type StrOrNull = string | null;

/** A struct wrapping a single string value. */
export interface QapiString {
  str: string;
}

/** Host and port (service) strings of an Internet socket address. */
export interface InetSocketAddressBase {
  host: string;
  port: string;
}

/** An Internet socket address or port range, with address-family and socket options. */
export interface InetSocketAddress extends InetSocketAddressBase {
  numeric?: boolean;
  to?: number;
  ipv4?: boolean;
  ipv6?: boolean;
  'keep-alive'?: boolean;
  mptcp?: boolean;
}

/** A Unix domain socket address, optionally in the Linux abstract namespace. */
export interface UnixSocketAddress {
  path: string;
  abstract?: boolean;
  tight?: boolean;
}

/** A vsock address made of a context id and a port, both given as strings. */
export interface VsockSocketAddress {
  cid: string;
  port: string;
}

/** A socket passed as a file descriptor, given by monitor fd name or by decimal number. */
export interface FdSocketAddress {
  str: string;
}

/** The kinds of socket address a SocketAddress can hold. */
export type SocketAddressType = 'inet' | 'unix' | 'vsock' | 'fd';

export interface SocketAddressBase {
  type: SocketAddressType;
}

/** A socket address of any supported kind, selected by the type member. */
export type SocketAddress =
  | ({ type: 'inet' } & InetSocketAddress)
  | ({ type: 'unix' } & UnixSocketAddress)
  | ({ type: 'vsock' } & VsockSocketAddress)
  | ({ type: 'fd' } & FdSocketAddress);

/** RAM transfer counters and rates of the current or last migration. */
export interface MigrationStats {
  transferred: Integer64;
  remaining: Integer64;
  total: Integer64;
  duplicate: Integer64;
  normal: Integer64;
  'normal-bytes': Integer64;
  'dirty-pages-rate': Integer64;
  mbps: number;
  'dirty-sync-count': Integer64;
  'postcopy-requests': Integer64;
  'page-size': Integer64;
  'multifd-bytes': Integer64;
  'pages-per-second': Integer64;
  'precopy-bytes': Integer64;
  'downtime-bytes': Integer64;
  'postcopy-bytes': Integer64;
  'dirty-sync-missed-zero-copy': Integer64;
}

/** Statistics of the XBZRLE page cache used during migration. */
export interface XBZRLECacheStats {
  'cache-size': Integer64;
  bytes: Integer64;
  pages: Integer64;
  'cache-miss': Integer64;
  'cache-miss-rate': number;
  'encoding-rate': number;
  overflow: Integer64;
}

/** The states a migration can be in. */
export type MigrationStatus = 'none' | 'setup' | 'cancelling' | 'cancelled' | 'active' | 'postcopy-active' | 'postcopy-paused' | 'postcopy-recover-setup' | 'postcopy-recover' | 'completed' | 'failed' | 'colo' | 'pre-switchover' | 'device' | 'wait-unplug';

/** Bytes sent by VFIO devices during migration. */
export interface VfioStats {
  transferred: Integer64;
}

/** Status and statistics of the current or most recent migration. */
export interface MigrationInfo {
  status?: MigrationStatus;
  ram?: MigrationStats;
  vfio?: VfioStats;
  'xbzrle-cache'?: XBZRLECacheStats;
  'total-time'?: Integer64;
  'expected-downtime'?: Integer64;
  downtime?: Integer64;
  'setup-time'?: Integer64;
  'cpu-throttle-percentage'?: Integer64;
  'error-desc'?: string;
  'blocked-reasons'?: string[];
  'postcopy-blocktime'?: number;
  'postcopy-vcpu-blocktime'?: number[];
  'socket-address'?: SocketAddress[];
  'dirty-limit-throttle-time-per-round'?: Integer64;
  'dirty-limit-ring-full-time'?: Integer64;
}

/** Optional migration behaviours that can be switched on or off. */
export type MigrationCapability = 'xbzrle' | 'rdma-pin-all' | 'auto-converge' | 'zero-blocks' | 'events' | 'postcopy-ram' | 'x-colo' | 'release-ram' | 'return-path' | 'pause-before-switchover' | 'multifd' | 'dirty-bitmaps' | 'postcopy-blocktime' | 'late-block-activate' | 'x-ignore-shared' | 'validate-uuid' | 'background-snapshot' | 'zero-copy-send' | 'postcopy-preempt' | 'switchover-ack' | 'dirty-limit' | 'mapped-ram';

/** A migration capability paired with whether it is enabled. */
export interface MigrationCapabilityStatus {
  capability: MigrationCapability;
  state: boolean;
}

export interface MigrateSetCapabilitiesArguments {
  capabilities: MigrationCapabilityStatus[];
}

/** Compression methods available for multifd migration in this build. */
export type MultiFDCompression = 'none' | 'zlib' | 'zstd';

/** The overall mode in which the migrate command operates. */
export type MigMode = 'normal' | 'cpr-reboot' | 'cpr-transfer';

/** Where, if anywhere, zero pages are detected during migration. */
export type ZeroPageDetection = 'none' | 'legacy' | 'multifd';

/** Changes applied to a dirty bitmap while it is migrated. */
export interface BitmapMigrationBitmapAliasTransform {
  persistent?: boolean;
}

/** Maps one dirty bitmap name to the alias used for it in the migration stream. */
export interface BitmapMigrationBitmapAlias {
  name: string;
  alias: string;
  transform?: BitmapMigrationBitmapAliasTransform;
}

/** Maps a block node and its bitmaps to aliases for dirty bitmap migration. */
export interface BitmapMigrationNodeAlias {
  'node-name': string;
  alias: string;
  bitmaps: BitmapMigrationBitmapAlias[];
}

/** Migration parameters to change; absent members keep their current value. */
export interface MigrateSetParameters {
  'announce-initial'?: Integer64;
  'announce-max'?: Integer64;
  'announce-rounds'?: Integer64;
  'announce-step'?: Integer64;
  'throttle-trigger-threshold'?: number;
  'cpu-throttle-initial'?: number;
  'cpu-throttle-increment'?: number;
  'cpu-throttle-tailslow'?: boolean;
  'tls-creds'?: StrOrNull;
  'tls-hostname'?: StrOrNull;
  'tls-authz'?: StrOrNull;
  'max-bandwidth'?: Integer64;
  'avail-switchover-bandwidth'?: Integer64;
  'downtime-limit'?: Integer64;
  'x-checkpoint-delay'?: number;
  'multifd-channels'?: number;
  'xbzrle-cache-size'?: Integer64;
  'max-postcopy-bandwidth'?: Integer64;
  'max-cpu-throttle'?: number;
  'multifd-compression'?: MultiFDCompression;
  'multifd-zlib-level'?: number;
  'multifd-qatzip-level'?: number;
  'multifd-zstd-level'?: number;
  'block-bitmap-mapping'?: BitmapMigrationNodeAlias[];
  'x-vcpu-dirty-limit-period'?: Integer64;
  'vcpu-dirty-limit'?: Integer64;
  mode?: MigMode;
  'zero-page-detection'?: ZeroPageDetection;
  'direct-io'?: boolean;
}

/** The current values of all migration parameters. */
export interface MigrationParameters {
  'announce-initial'?: Integer64;
  'announce-max'?: Integer64;
  'announce-rounds'?: Integer64;
  'announce-step'?: Integer64;
  'throttle-trigger-threshold'?: number;
  'cpu-throttle-initial'?: number;
  'cpu-throttle-increment'?: number;
  'cpu-throttle-tailslow'?: boolean;
  'tls-creds'?: string;
  'tls-hostname'?: string;
  'tls-authz'?: string;
  'max-bandwidth'?: Integer64;
  'avail-switchover-bandwidth'?: Integer64;
  'downtime-limit'?: Integer64;
  'x-checkpoint-delay'?: number;
  'multifd-channels'?: number;
  'xbzrle-cache-size'?: Integer64;
  'max-postcopy-bandwidth'?: Integer64;
  'max-cpu-throttle'?: number;
  'multifd-compression'?: MultiFDCompression;
  'multifd-zlib-level'?: number;
  'multifd-qatzip-level'?: number;
  'multifd-zstd-level'?: number;
  'block-bitmap-mapping'?: BitmapMigrationNodeAlias[];
  'x-vcpu-dirty-limit-period'?: Integer64;
  'vcpu-dirty-limit'?: Integer64;
  mode?: MigMode;
  'zero-page-detection'?: ZeroPageDetection;
  'direct-io'?: boolean;
}

export interface MigrationEvent {
  status: MigrationStatus;
}

export interface MigrationPassEvent {
  pass: Integer64;
}

export interface MigrateContinueArguments {
  state: MigrationStatus;
}

/** The transports a migration stream can use. */
export type MigrationAddressType = 'socket' | 'exec' | 'rdma' | 'file';

/** A file and the byte offset at which the migration stream starts in it. */
export interface FileMigrationArgs {
  filename: string;
  offset: Integer64;
}

/** A program and its arguments to which the migration stream is piped. */
export interface MigrationExecCommand {
  args: string[];
}

export interface MigrationAddressBase {
  transport: MigrationAddressType;
}

/** A migration endpoint, selected by its transport. */
export type MigrationAddress =
  | ({ transport: 'socket' } & SocketAddress)
  | ({ transport: 'exec' } & MigrationExecCommand)
  | ({ transport: 'rdma' } & InetSocketAddress)
  | ({ transport: 'file' } & FileMigrationArgs);

/** The roles a migration channel can play. */
export type MigrationChannelType = 'main' | 'cpr';

/** One migration channel: its role and its endpoint address. */
export interface MigrationChannel {
  'channel-type': MigrationChannelType;
  addr: MigrationAddress;
}

export interface MigrateArguments {
  uri?: string;
  channels?: MigrationChannel[];
  detach?: boolean;
  resume?: boolean;
}

export interface MigrateIncomingArguments {
  uri?: string;
  channels?: MigrationChannel[];
  'exit-on-error'?: boolean;
}

export interface MigrateRecoverArguments {
  uri: string;
}

/** The possible run states of the virtual machine. */
export type RunState = 'debug' | 'inmigrate' | 'internal-error' | 'io-error' | 'paused' | 'postmigrate' | 'prelaunch' | 'finish-migrate' | 'restore-vm' | 'running' | 'save-vm' | 'shutdown' | 'suspended' | 'watchdog' | 'guest-panicked' | 'colo';

/** Whether the guest is running and its detailed run state. */
export interface StatusInfo {
  running: boolean;
  status: RunState;
}

/** The NUMA policy of a host memory backend. */
export type HostMemPolicy = 'default' | 'preferred' | 'bind' | 'interleave';

/** One memory backend object: its id, size in bytes and properties. */
export interface Memdev {
  id?: string;
  size: Integer64;
  merge: boolean;
  dump: boolean;
  prealloc: boolean;
  share: boolean;
  reserve?: boolean;
  'host-nodes': number[];
  policy: HostMemPolicy;
}

export interface HumanMonitorCommandArguments {
  'command-line': string;
  'cpu-index'?: Integer64;
}

export interface GetfdArguments {
  fdname: string;
}

export interface ClosefdArguments {
  fdname: string;
}

/** The fd set and descriptor number assigned by add-fd. */
export interface AddfdInfo {
  'fdset-id': Integer64;
  fd: Integer64;
}

export interface AddFdArguments {
  'fdset-id'?: Integer64;
  opaque?: string;
}

export interface PmemsaveArguments {
  val: Integer64;
  size: Integer64;
  filename: string;
}

/** Optional QMP protocol features a client may enable. */
export type QMPCapability = 'oob';

export interface QmpCapabilitiesArguments {
  enable?: QMPCapability[];
}

/** A major.minor.micro version number. */
export interface VersionTriple {
  major: Integer64;
  minor: Integer64;
  micro: Integer64;
}

/** The QEMU version plus a downstream package string. */
export interface VersionInfo {
  qemu: VersionTriple;
  package: string;
}

/** The name of one available QMP command. */
export interface CommandInfo {
  name: string;
}

/** The end of a TLS session a credentials object serves. */
export type QCryptoTLSCredsEndpoint = 'client' | 'server';

/** Whether an authorization rule, or an authz-list's default, allows or denies. */
export type QAuthZListPolicy = 'deny' | 'allow';

/** How an authorization rule's match string is compared with an identity. */
export type QAuthZListFormat = 'exact' | 'glob';

/** One rule of an authz-list: the identities it matches and what it decides. */
export interface QAuthZListRule {
  match: string;
  policy: QAuthZListPolicy;
  format?: QAuthZListFormat;
}

/** Properties of an authz-list object: its rules, first match wins, and the default policy. */
export interface AuthZListProperties {
  policy?: QAuthZListPolicy;
  rules?: QAuthZListRule[];
}

/** Properties of an authz-simple object: the one identity it allows. */
export interface AuthZSimpleProperties {
  identity: string;
}

/** Properties common to TLS credentials objects. */
export interface TlsCredsProperties {
  'verify-peer'?: boolean;
  dir?: string;
  endpoint?: QCryptoTLSCredsEndpoint;
  priority?: string;
}

/** Properties of a tls-creds-psk object: keys.psk in dir, the client's username. */
export interface TlsCredsPskProperties extends TlsCredsProperties {
  username?: string;
}

/** Properties of a tls-creds-x509 object: the PEM files in dir, checked at creation. */
export interface TlsCredsX509Properties extends TlsCredsProperties {
  'sanity-check'?: boolean;
  passwordid?: string;
}

/** The QOM types object-add can create in qmigrate (QEMU 10.0 has more; the others are refused as unknown). */
export type ObjectType = 'authz-list' | 'authz-simple' | 'tls-creds-psk' | 'tls-creds-x509';

export interface ObjectOptionsBase {
  'qom-type': ObjectType;
  id: string;
}

/** The options of object-add: the type, the id, and the type's properties. */
export type ObjectOptions =
  | ({ 'qom-type': 'authz-list' } & AuthZListProperties & {  id: string; })
  | ({ 'qom-type': 'authz-simple' } & AuthZSimpleProperties & {  id: string; })
  | ({ 'qom-type': 'tls-creds-psk' } & TlsCredsPskProperties & {  id: string; })
  | ({ 'qom-type': 'tls-creds-x509' } & TlsCredsX509Properties & {  id: string; });

export interface ObjectDelArguments {
  id: string;
}

/** The kind of entity a SchemaInfo entry describes. */
export type SchemaMetaType = 'builtin' | 'enum' | 'array' | 'object' | 'alternate' | 'command' | 'event';

/** JSON value kinds, with int split from number and value meaning anything. */
export type JSONType = 'string' | 'number' | 'int' | 'boolean' | 'null' | 'object' | 'array' | 'value';

/** Extra introspection data for a builtin type. */
export interface SchemaInfoBuiltin {
  'json-type': JSONType;
}

/** One value of an enumeration type, with its features. */
export interface SchemaInfoEnumMember {
  name: string;
  features?: string[];
}

/** Extra introspection data for an enumeration type. */
export interface SchemaInfoEnum {
  members: SchemaInfoEnumMember[];
  /** @deprecated */
  values: string[];
}

/** Extra introspection data for an array type. */
export interface SchemaInfoArray {
  'element-type': string;
}

/** One member of an object type. */
export interface SchemaInfoObjectMember {
  name: string;
  type: string;
  default?: unknown;
  features?: string[];
}

/** The variant object type used for one value of a union's tag. */
export interface SchemaInfoObjectVariant {
  case: string;
  type: string;
}

/** Extra introspection data for an object type. */
export interface SchemaInfoObject {
  members: SchemaInfoObjectMember[];
  tag?: string;
  variants?: SchemaInfoObjectVariant[];
}

/** One of the types an alternate may take. */
export interface SchemaInfoAlternateMember {
  type: string;
}

/** Extra introspection data for an alternate type. */
export interface SchemaInfoAlternate {
  members: SchemaInfoAlternateMember[];
}

/** Extra introspection data for a command. */
export interface SchemaInfoCommand {
  'arg-type': string;
  'ret-type': string;
  'allow-oob'?: boolean;
}

/** Extra introspection data for an event. */
export interface SchemaInfoEvent {
  'arg-type': string;
}

export interface SchemaInfoBase {
  name: string;
  'meta-type': SchemaMetaType;
  features?: string[];
}

/** One entity of the QMP schema, with extra members depending on its meta-type. */
export type SchemaInfo =
  | ({ 'meta-type': 'builtin' } & SchemaInfoBuiltin & {  name: string; features?: string[]; })
  | ({ 'meta-type': 'enum' } & SchemaInfoEnum & {  name: string; features?: string[]; })
  | ({ 'meta-type': 'array' } & SchemaInfoArray & {  name: string; features?: string[]; })
  | ({ 'meta-type': 'object' } & SchemaInfoObject & {  name: string; features?: string[]; })
  | ({ 'meta-type': 'alternate' } & SchemaInfoAlternate & {  name: string; features?: string[]; })
  | ({ 'meta-type': 'command' } & SchemaInfoCommand & {  name: string; features?: string[]; })
  | ({ 'meta-type': 'event' } & SchemaInfoEvent & {  name: string; features?: string[]; });

/** Every command: its argument object and its return value. */
export interface Commands {
  /** Report the status and progress of migration. */
  'query-migrate': { args: Record<string, never>; returns: MigrationInfo };
  /** Turn a list of migration capabilities on or off. */
  'migrate-set-capabilities': { args: MigrateSetCapabilitiesArguments; returns: Record<string, never> };
  /** List every migration capability together with its current state. */
  'query-migrate-capabilities': { args: Record<string, never>; returns: MigrationCapabilityStatus[] };
  /** Change one or more migration parameters. */
  'migrate-set-parameters': { args: MigrateSetParameters; returns: Record<string, never> };
  /** Report the current migration parameters. */
  'query-migrate-parameters': { args: Record<string, never>; returns: MigrationParameters };
  /** Switch a running migration over to postcopy mode. */
  'migrate-start-postcopy': { args: Record<string, never>; returns: Record<string, never> };
  /** Cancel the migration in progress, succeeding even when none is running. */
  migrate_cancel: { args: Record<string, never>; returns: Record<string, never> };
  /** Resume a migration that is paused in the given state. */
  'migrate-continue': { args: MigrateContinueArguments; returns: Record<string, never> };
  /** Start migrating the running guest to a destination given by URI or channel list. */
  migrate: { args: MigrateArguments; returns: Record<string, never> };
  /** Begin listening for an incoming migration on a QEMU started with -incoming defer. */
  'migrate-incoming': { args: MigrateIncomingArguments; returns: Record<string, never> };
  /** Give a new URI over which a paused postcopy migration can recover. */
  'migrate-recover': { args: MigrateRecoverArguments; returns: Record<string, never> };
  /** Pause a migration that is in postcopy mode. */
  'migrate-pause': { args: Record<string, never>; returns: Record<string, never> };
  /** Report the run state of the virtual machine. */
  'query-status': { args: Record<string, never>; returns: StatusInfo };
  /** List the memory backend objects. */
  'query-memdev': { args: Record<string, never>; returns: Memdev[] };
  /** Halt execution of all guest vCPUs. */
  stop: { args: Record<string, never>; returns: Record<string, never> };
  /** Resume execution of all guest vCPUs. */
  cont: { args: Record<string, never>; returns: Record<string, never> };
  /** Run a human monitor (HMP) command line and return its text output. */
  'human-monitor-command': { args: HumanMonitorCommandArguments; returns: string };
  /** Store a file descriptor received over the monitor socket under a name. */
  getfd: { args: GetfdArguments; returns: Record<string, never> };
  /** Close a file descriptor previously stored under a name. */
  closefd: { args: ClosefdArguments; returns: Record<string, never> };
  /** Place a file descriptor received over the monitor socket into an fd set. */
  'add-fd': { args: AddFdArguments; returns: AddfdInfo };
  /** Write a range of guest physical memory to a file. */
  pmemsave: { args: PmemsaveArguments; returns: Record<string, never> };
  /** Leave capabilities negotiation mode, optionally enabling QMP capabilities. */
  qmp_capabilities: { args: QmpCapabilitiesArguments; returns: Record<string, never> };
  /** Report the QEMU version. */
  'query-version': { args: Record<string, never>; returns: VersionInfo };
  /** List the QMP commands this server accepts. */
  'query-commands': { args: Record<string, never>; returns: CommandInfo[] };
  /** Make QEMU exit. */
  quit: { args: Record<string, never>; returns: Record<string, never> };
  /** Create a QOM object. */
  'object-add': { args: ObjectOptions; returns: Record<string, never> };
  /** Remove a QOM object. */
  'object-del': { args: ObjectDelArguments; returns: Record<string, never> };
  /** Describe the QMP wire interface as a list of SchemaInfo entries. */
  'query-qmp-schema': { args: Record<string, never>; returns: SchemaInfo[] };
}

/** Every event: its data member. */
export interface Events {
  /** Sent whenever the migration status changes. */
  MIGRATION: MigrationEvent;
  /** Sent by the migration source each time it starts a new pass over dirty memory. */
  MIGRATION_PASS: MigrationPassEvent;
  /** Sent when guest execution stops. */
  STOP: Record<string, never>;
  /** Sent when guest execution resumes. */
  RESUME: Record<string, never>;
}

export type CommandName = keyof Commands;
export type EventName = keyof Events;
