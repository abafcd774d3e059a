/**
 * qmigrate's public API, the package's main entry: the typed QMP client, the QMP server and
 * its dispatcher, and the QAPI layer under them (the schema and its types, the argument
 * checker, JSON as QEMU reads it, the URI codec, the migration command rules), with QEMU
 * 10.0's semantics and texts. The migration engine and `qmigrate vm` are run by the CLI.
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
