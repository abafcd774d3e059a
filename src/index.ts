/**
 * qmigrate's public API, the package's main entry: the typed QMP client, the QMP server and
 * its dispatcher, and the QAPI layer under them (the schema and its types, the argument
 * checker, JSON as QEMU reads it, the URI codec, the migration command rules), with QEMU
 * 10.0's semantics and texts; and the orchestrator, which drives a live migration between
 * two QMP endpoints (runMigration, under `qmigrate migrate`). The migration engine and
 * `qmigrate vm` are run by the CLI.
 */
export { ArgumentError, InternalError, QmigrateError } from './errors.js';
export { type MigrationInput, type ParsedInput, parseMigrationInput } from './migration/channel-rules.js';
export {
  checkMigrate,
  checkMigrateCancel,
  checkMigrateContinue,
  checkMigrateIncoming,
  checkMigratePause,
  checkMigrateRecover,
  checkStartPostcopy,
  type IncomingSnapshot,
  type MigrationSnapshot,
} from './migration/migration.js';
export {
  type Capabilities,
  type CapabilityContext,
  checkTransport,
  defaultCapabilities,
  defaultParameters,
  type HostSupport,
  MIGRATION_CAPABILITIES,
  mergeCapabilities,
  mergeParameters,
  type Parameters,
  supportsMultiChannel,
} from './migration/options.js';
export { isRunning, RUNNING_STATES } from './migration/status.js';
export { connectQmpEndpoint, formatQmpEndpoint, parseQmpEndpoint } from './orchestrator/endpoint.js';
export { MonitorLostError, PreflightError } from './orchestrator/errors.js';
export {
  type MigrationJob,
  type MigrationSample,
  planMigration,
  type RunMigrationOptions,
  runMigration,
} from './orchestrator/migrate.js';
export {
  DESTINATION_ONLY_CAPABILITIES,
  MUST_AGREE_CAPABILITIES,
  type PlanFacts,
  planCommands,
  SOURCE_ONLY_CAPABILITIES,
  SOURCE_ONLY_PARAMETERS,
} from './orchestrator/plan.js';
export {
  comparePreflight,
  gatherFacts,
  type PreflightFacts,
  preflight,
  type SideFacts,
} from './orchestrator/preflight.js';
export type * from './orchestrator/types.js';
export { checkCommand, checkType } from './qapi/check.js';
export { QapiError, type QmpErrorClass } from './qapi/errors.js';
export { JsonDouble, JsonSyntaxError, parseJson, stringifyJson } from './qapi/json.js';
export { Schema, schema } from './qapi/schema.js';
export type * from './qapi/types.js';
export {
  addressToEquivalentUri,
  addressToUri,
  parseMigrationUri,
  socketAddressToString,
  uriToChannel,
} from './qapi/uri.js';
export { type ConnectOptions, type Greeting, type QmpAddress, QmpClient } from './qmp/client.js';
export { Dispatcher, type Handler, type SessionContext } from './qmp/dispatch.js';
export * from './qmp/errors.js';
export { EventListener, type QmpEvent } from './qmp/events.js';
export type { ExecuteOptions } from './qmp/methods.js';
export { type ListenSpec, QmpServer, type QmpServerOptions } from './qmp/server.js';
export { SocketError } from './util/sockets.js';
