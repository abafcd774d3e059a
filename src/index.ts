/**
 * qmigrate's public API. The QAPI layer: the schema's types, the argument checker, the URI
 * codec and the command-level migration rules, all with QEMU 10.0's semantics and texts.
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
